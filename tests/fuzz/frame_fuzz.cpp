// tests/fuzz/frame_fuzz.cpp — frame decoding (lib/log/ring.hpp Ring::decode,
// its inline common case and Ring::decode_headers: key, properties), the
// check every consumer makes of a frame whose bytes any producer (or damage)
// may have written.
//
// Input: one byte of mode (bit 0: decode with a private copy of the
// properties, as a copying reader does), a 24-byte FrameHeader, then the
// bytes after it: the body room (the rest of the segment, in place).
// What must hold: a frame decoded Ok has its key and payload inside the room,
// its properties inside the room (or the private copy), every property's name
// and value inside them, and as many properties as it says; key, properties
// and payload together are the frame's length. ASan sees any read past the
// input (libFuzzer's copy of it is exactly its size).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "fuzz_check.hpp"
#include "log/ring.hpp"

using namespace shmbus;
using namespace shmbus::log;

namespace {

// Ring::decode reads no shared memory, but it is a member: one small ring,
// made once, its files removed at once (the mapping stays).
const Ring& ring() {
  static const Ring r = [] {
    char dir[] = "/dev/shm/shmbus-frame-fuzz-XXXXXX";
    FUZZ_CHECK(::mkdtemp(dir) != nullptr);
    TopicOptions o;
    o.segment_bytes = 4096;
    o.segment_count = 2;
    o.max_producers = 1;
    o.max_consumers = 1;
    o.prefault = false;
    FUZZ_CHECK(Ring::create(dir, "fuzz", 0, o));
    auto opened = Ring::open(dir, "fuzz", 0, false, false);
    FUZZ_CHECK(opened);
    (void)::unlink(ring_path(dir, "fuzz", 0).c_str());
    (void)::unlink(cursor_path(dir, "fuzz", 0).c_str());
    (void)::rmdir(dir);
    return std::move(opened).value();
  }();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 + sizeof(FrameHeader)) return 0;
  const bool copy_props = (data[0] & 1) != 0;
  FrameHeader h;
  std::memcpy(&h, data + 1, sizeof h);
  const auto* body = reinterpret_cast<const std::byte*>(data + 1 + sizeof h);
  const std::size_t room = size - 1 - sizeof h;
  // Exactly the room: a copy of more bytes than the frame has is seen by ASan.
  auto copy = std::make_unique<std::byte[]>(room);
  std::byte* props = copy_props ? copy.get() : nullptr;

  Message m;
  const std::uint64_t p = h.commit & ~std::uint64_t{31};  // any aligned position
  if (ring().decode(h, p, body, room, props, m) != Status::Ok) return 0;
  FUZZ_CHECK(h.length <= room);
  FUZZ_CHECK(m.position == p);
  FUZZ_CHECK(m.timestamp_ns == h.timestamp);
  FUZZ_CHECK(fuzz::inside(m.payload.data(), m.payload.size(), body, room));
  FUZZ_CHECK(fuzz::inside(m.key.data(), m.key.size(), body, room));
  const std::byte* props_base = copy_props ? props : body;
  std::size_t used = m.payload.size() + ((h.flags & kHasKey) != 0 ? 2 + m.key.size() : 0);
  std::size_t props_bytes = 0;
  std::uint16_t seen = 0;
  for (Property pr : m.properties) {
    FUZZ_CHECK(fuzz::inside(pr.name.data(), pr.name.size(), props_base, room));
    const PropertyType t = pr.value.type();
    FUZZ_CHECK(t >= PropertyType::String && t <= PropertyType::Bytes);
    if (t == PropertyType::String || t == PropertyType::Bytes) {
      const std::string_view text =
          t == PropertyType::String
              ? *pr.value.string()
              : std::string_view(reinterpret_cast<const char*>(pr.value.bytes()->data()),
                                 pr.value.bytes()->size());
      FUZZ_CHECK(fuzz::inside(text.data(), text.size(), props_base, room));
    }
    if (t == PropertyType::Bool) FUZZ_CHECK(pr.value.boolean().has_value());
    props_bytes += kPropertyEntryHeaderBytes + pr.name.size() + pr.value.encoded_size();
    ++seen;
    FUZZ_CHECK(m.properties.find(pr.name).has_value());
  }
  FUZZ_CHECK(seen == m.properties.size());
  if ((h.flags & kHasProperties) != 0) used += 4 + 2 + props_bytes;
  FUZZ_CHECK(used == h.length);
  return 0;
}
