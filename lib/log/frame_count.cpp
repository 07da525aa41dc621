#include "log/frame_count.hpp"

namespace shmbus::log {

FrameCount count_frames(const Ring& ring, std::uint64_t from, std::uint64_t to,
                        std::uint64_t max_frames) noexcept {
  FrameCount n;
  std::uint64_t p = from;
  for (std::uint64_t k = 0; k < max_frames && p < to && p % ring.alignment() == 0; ++k) {
    // A skipped frame (aborted, revoked) is walked over, not counted.
    const detail::FrameLook f = ring.look(p);
    if (!f.settled() || f.damaged() || f.next > to) break;
    if (f.data()) ++n.messages;
    n.bytes = f.next - from;
    p = f.next;
  }
  return n;
}

std::optional<std::uint64_t> find_stamp(const Ring& ring, std::uint64_t from, std::uint64_t to,
                                        std::int64_t t) noexcept {
  for (std::uint64_t p = from; p < to && p % ring.alignment() == 0;) {
    const detail::FrameLook f = ring.look(p);
    if (!f.settled() || f.damaged() || f.next > to) break;
    if (f.data() && f.timestamp != 0 && f.timestamp >= t) return p;
    p = f.next;
  }
  return std::nullopt;
}

}  // namespace shmbus::log
