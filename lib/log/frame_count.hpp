// lib/log/frame_count.hpp — counting a partition's messages from outside,
// for monitoring (shmbus stat's msgs/s), and finding the first one stamped
// at or after a time (ConsumerOptions::Start::Time), at no cost to
// producers: the frames
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
#include <optional>

#include "log/ring.hpp"

namespace shmbus::log {

struct FrameCount {
  std::uint64_t messages = 0;  // Data frames walked
  std::uint64_t bytes = 0;     // positions walked (Data and Pad frames)
};

// Walks at most `max_frames` frames from `from` (a frame boundary) towards `to`.
FrameCount count_frames(const Ring& ring, std::uint64_t from, std::uint64_t to,
                        std::uint64_t max_frames) noexcept;

// The position of the first message in [from, to) stamped at or after t;
// nullopt when there is none, or the walk stopped before one.
std::optional<std::uint64_t> find_stamp(const Ring& ring, std::uint64_t from, std::uint64_t to,
                                        std::int64_t t) noexcept;

}  // namespace shmbus::log
