// tests/fuzz/ring_fuzz.cpp — Ring adoption (lib/log/ring.cpp Ring::open_fds,
// Ring::adopt): mapping a partition's ring and cursor files that the daemon
// passed over, or that anyone with write access to the bus directory may
// have damaged; then a walk over the frames of the adopted ring as a reader
// does (Ring::look, Ring::decode), log::count_frames, and the inline poll.
//
// Input: a 16-byte prefix
//   u32 ring_bytes, u32 cursor_bytes   the files' sizes (<= 16 MiB, <= 1 MiB)
//   u32 ring_prefix                     how many of the bytes that follow are the ring's
//   u32 partition                       the partition the caller asks for
// then the first bytes of the ring file and of the cursor file: each file is
// a memfd of its size, zeros after the bytes given (so a seed is a few KiB
// even though the smallest ring is 12 KiB).
// What must hold: an adopted ring's geometry is what check_options allows,
// its data, producer slots and cursor slots lie inside their files, every
// frame looked at either fits its segment or is called damaged, and no walk,
// decode or poll leaves them (ASan; a walk that strays past the mapping
// faults).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_check.hpp"
#include "log/frame_count.hpp"
#include "log/ring.hpp"
#include "shmbus/detail/poll_in_place.hpp"

using namespace shmbus;
using namespace shmbus::log;

namespace {

constexpr std::uint32_t kMaxRing = 16u << 20;
constexpr std::uint32_t kMaxCursors = 1u << 20;

int memfd_with(const char* name, std::uint32_t bytes, const std::uint8_t* data, std::size_t n) {
  const int fd = ::memfd_create(name, MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(::ftruncate(fd, bytes) == 0);
  n = std::min<std::size_t>(n, bytes);
  FUZZ_CHECK(n == 0 || ::pwrite(fd, data, n, 0) == static_cast<ssize_t>(n));
  return fd;
}

// Walks each segment as every reader does (Ring::look, then decode).
void walk(const Ring& r) {
  std::vector<std::byte> props(r.segment_bytes());
  for (std::uint64_t seg = 0; seg < r.capacity(); seg += r.segment_bytes()) {
    std::uint64_t p = seg;
    while (p < seg + r.segment_bytes()) {
      const detail::FrameLook f = r.look(p);
      if (f.state == detail::FrameState::Open) break;
      if (f.damaged()) {
        FUZZ_CHECK(sizeof(FrameHeader) + f.length > r.segment_left(p));
        break;
      }
      FUZZ_CHECK(f.next > p && f.next <= seg + r.segment_bytes() && f.next % r.alignment() == 0);
      const auto* body = reinterpret_cast<const std::byte*>(r.frame_at(p) + 1);
      const std::uint64_t room = r.segment_left(p) - sizeof(FrameHeader);
      Message m;
      if (f.data() &&
          r.decode(Ring::header_of(f), p, body, f.length, props.data(), m) == Status::Ok) {
        FUZZ_CHECK(fuzz::inside(m.payload.data(), m.payload.size(), body, room));
        FUZZ_CHECK(fuzz::inside(m.key.data(), m.key.size(), body, room));
        for (Property pr : m.properties) {
          FUZZ_CHECK(fuzz::inside(pr.name.data(), pr.name.size(), props.data(), props.size()));
          const std::string_view text = pr.value.string().value_or("");
          FUZZ_CHECK(fuzz::inside(text.data(), text.size(), props.data(), props.size()));
          FUZZ_CHECK(pr.value.encoded_size() <= props.size());
        }
      }
      p = f.next;
    }
  }
  const FrameCount c = count_frames(r, 0, r.capacity(), 1u << 16);
  FUZZ_CHECK(c.bytes <= r.capacity());
}

// The inline poll (shmbus/detail/poll_in_place.hpp), from each segment start
// of a `block` ring, as a consumer holding a cursor there: what it delivers
// lies inside the segment it starts in, and it stops where the library must
// go on.
void poll_inline(const Ring& r) {
  std::uint64_t control = 7, cursor = 0;
  detail::PollState s;
  s.ring = r.geometry();
  s.block = true;
  s.control_word = &control;
  s.position_word = &cursor;
  s.mine = control;
  const auto* data = reinterpret_cast<const std::byte*>(r.frame_at(0));
  for (std::uint64_t seg = 0; seg < r.capacity(); seg += r.segment_bytes()) {
    s.position = s.published = seg;
    std::uint64_t delivered = 0;
    auto check = [&](const Message& m) {
      FUZZ_CHECK(m.position % r.alignment() == 0 && m.position >= seg);
      const auto* start = data + (m.position & (r.capacity() - 1));
      FUZZ_CHECK(m.payload.data() == start + sizeof(FrameHeader));
      FUZZ_CHECK(
          fuzz::inside(m.payload.data(), m.payload.size(), start, r.segment_left(m.position)));
      ++delivered;
    };
    const PollResult got = detail::poll_in_place(
        s, check, 1u << 16,
        [&](const detail::PollProgress& at) { return detail::finish_poll(s, at); });
    FUZZ_CHECK(got.count == delivered);
    FUZZ_CHECK(s.position >= seg && s.position <= seg + r.capacity());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 16) return 0;
  std::uint32_t head[4];
  std::memcpy(head, data, sizeof head);
  const auto [ring_bytes, cursor_bytes, ring_prefix, partition] = head;
  if (ring_bytes > kMaxRing || cursor_bytes > kMaxCursors) return 0;
  const std::uint8_t* rest = data + 16;
  const std::size_t left = size - 16;
  const std::size_t rn = std::min<std::size_t>(ring_prefix, left);

  const int ring_fd = memfd_with("ring", ring_bytes, rest, rn);
  const int cursor_fd = memfd_with("cursors", cursor_bytes, rest + rn, left - rn);
  auto r = Ring::open_fds(ring_fd, cursor_fd, "fuzz", partition, false, false);
  ::close(ring_fd);
  ::close(cursor_fd);
  if (!r) return 0;

  const Ring& ring = *r;
  FUZZ_CHECK(std::has_single_bit(ring.segment_bytes()) && ring.segment_bytes() >= 4096);
  FUZZ_CHECK(ring.capacity() % ring.segment_bytes() == 0);
  FUZZ_CHECK(ring.capacity() / ring.segment_bytes() >= 2);
  FUZZ_CHECK(std::has_single_bit(ring.alignment()) && ring.alignment() >= kMinFrameAlignment);
  FUZZ_CHECK(ring.max_producers() >= 1 && ring.max_consumers() >= 1);
  FUZZ_CHECK(ring.partitions() > partition);
  FUZZ_CHECK((ring.salt() & 1) == 1);
  const auto* file = reinterpret_cast<const std::byte*>(ring.ring_header());
  const auto* slots_end =
      reinterpret_cast<const std::byte*>(&ring.producer_slot(ring.max_producers() - 1) + 1);
  FUZZ_CHECK(slots_end <= reinterpret_cast<const std::byte*>(ring.frame_at(0)));
  FUZZ_CHECK(slots_end > file);
  const auto* cursors = reinterpret_cast<const std::byte*>(ring.cursor_header());
  const auto* cursor_end =
      reinterpret_cast<const std::byte*>(&ring.cursor_slot(ring.max_consumers() - 1) + 1);
  FUZZ_CHECK(cursor_end > cursors &&
             static_cast<std::uint64_t>(cursor_end - cursors) <= cursor_bytes);
  const auto* frames = reinterpret_cast<const std::byte*>(ring.frame_at(0));
  FUZZ_CHECK(frames >= file &&
             static_cast<std::uint64_t>(frames - file) + ring.capacity() == ring_bytes);
  walk(ring);
  poll_inline(ring);
  return 0;
}
