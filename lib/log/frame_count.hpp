// lib/log/frame_count.hpp — counting a partition's messages from outside,
// for monitoring (shmbus stat's msgs/s), at no cost to producers: the frames
// are walked in the reader's own mapping, header by header, from a frame
// boundary. Nothing on the hot path counts anything.
//
// The walk trusts nothing: it goes on only while the commit word says the
// frame at that position is committed or skipped (layout.hpp; a skipped
// frame is walked over, not counted), its length keeps it
// inside its segment, and the walk stays inside [from, to); it stops at the
// first frame that fails (not yet committed, or overwritten by a newer lap
// while we walked). Every read lies inside the mapping.
//
// Concurrency: any thread; reads shared memory only.
#pragma once

#include <cstdint>

#include "log/ring.hpp"

namespace shmbus::log {

struct FrameCount {
  std::uint64_t messages = 0;  // Data frames walked
  std::uint64_t bytes = 0;     // positions walked (Data and Pad frames)
};

// Walks at most `max_frames` frames from `from` (a frame boundary) towards `to`.
FrameCount count_frames(const Ring& ring, std::uint64_t from, std::uint64_t to,
                        std::uint64_t max_frames) noexcept;

}  // namespace shmbus::log
