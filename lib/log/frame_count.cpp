#include "log/frame_count.hpp"

namespace shmbus::log {

FrameCount count_frames(const Ring& ring, std::uint64_t from, std::uint64_t to,
                        std::uint64_t max_frames) noexcept {
  FrameCount n;
  std::uint64_t p = from;
  for (std::uint64_t k = 0; k < max_frames && p < to && p % ring.alignment() == 0; ++k) {
    FrameHeader* f = ring.frame_at(p);
    // Acquire: the header's fields were written before the commit word. A
    // skipped frame (aborted, revoked) is walked over: its length is stable.
    const std::uint64_t word = atomic(f->commit).load(std::memory_order_acquire);
    if (!ring.settled(word, p)) break;
    const bool skipped = word != ring.commit_word(p);
    const std::uint32_t length = atomic(f->length).load(std::memory_order_relaxed);
    const FrameType type = atomic(f->type).load(std::memory_order_relaxed);
    if (length > ring.segment_left(p) - sizeof(FrameHeader)) break;
    const std::uint64_t next = p + ring.frame_bytes(length);
    if (next > to) break;
    if (type == FrameType::Data && !skipped) ++n.messages;
    n.bytes = next - from;
    p = next;
  }
  return n;
}

}  // namespace shmbus::log
