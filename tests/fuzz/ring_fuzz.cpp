// tests/fuzz/ring_fuzz.cpp — Ring adoption (lib/log/ring.cpp Ring::open_fds,
// Ring::adopt): mapping a partition's ring and cursor files that the daemon
// passed over, or that anyone with write access to the bus directory may
// have damaged; then a walk over the frames of the adopted ring as a reader
// does (commit word, length, Ring::decode), and log::count_frames.
//
// Input: a 16-byte prefix
//   u32 ring_bytes, u32 cursor_bytes   the files' sizes (<= 16 MiB, <= 1 MiB)
//   u32 ring_prefix                     how many of the bytes that follow are the ring's
//   u32 partition                       the partition the caller asks for
// then the first bytes of the ring file and of the cursor file: each file is
// a memfd of its size, zeros after the bytes given (so a seed is a few KiB
// even though the smallest ring is 12 KiB).
// What must hold: an adopted ring's geometry is what check_options allows,
// its data, producer slots and cursor slots lie inside their files, and no
// walk or decode leaves them (ASan; a walk that strays past the mapping
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

void walk(const Ring& r, std::uint32_t ring_bytes) {
  const auto* file = reinterpret_cast<const std::byte*>(r.ring_header());
  const auto* data = reinterpret_cast<const std::byte*>(r.frame_at(0));
  std::vector<std::byte> props(r.segment_bytes());
  for (std::uint64_t seg = 0; seg < r.capacity(); seg += r.segment_bytes()) {
    std::uint64_t p = seg;
    while (p < seg + r.segment_bytes()) {
      FrameHeader h;
      std::memcpy(&h, r.frame_at(p), sizeof h);
      if (!r.settled(h.commit, p)) break;
      const auto* body = reinterpret_cast<const std::byte*>(r.frame_at(p) + 1);
      const std::uint64_t room = r.segment_left(p) - sizeof(FrameHeader);
      Message m;
      if (r.decode(h, p, body, room, props.data(), m) == Status::Ok) {
        FUZZ_CHECK(fuzz::inside(m.payload.data(), m.payload.size(), body, room));
        FUZZ_CHECK(fuzz::inside(m.key.data(), m.key.size(), body, room));
        for (Property pr : m.properties) {
          FUZZ_CHECK(fuzz::inside(pr.name.data(), pr.name.size(), props.data(), props.size()));
          const std::string_view text = pr.value.string().value_or("");
          FUZZ_CHECK(fuzz::inside(text.data(), text.size(), props.data(), props.size()));
          FUZZ_CHECK(pr.value.encoded_size() <= props.size());
        }
      }
      const std::uint64_t n = r.frame_bytes(h.length);
      if (n > r.segment_left(p)) break;
      p += n;
    }
  }
  FUZZ_CHECK(data >= file && static_cast<std::uint64_t>(data - file) + r.capacity() == ring_bytes);
  const FrameCount c = count_frames(r, 0, r.capacity(), 1u << 16);
  FUZZ_CHECK(c.bytes <= r.capacity());
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
  walk(ring, ring_bytes);
  return 0;
}
