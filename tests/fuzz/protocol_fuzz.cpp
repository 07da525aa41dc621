// tests/fuzz/protocol_fuzz.cpp — control::decode (lib/control/protocol.cpp),
// the daemon's and the client's reader of control datagrams.
//
// Input: one byte of flags (bit 0: the socket said MSG_TRUNC, bit 1: Hello
// was said already, bit 2: decode as replies), then the datagram.
// What must hold: decode never reads outside the datagram (ASan), a decoded
// message re-encodes to a datagram that decodes again to the same message
// (compared through its encoding), and to the very bytes it came from
// (every field is read verbatim, so the encoding is canonical).
#include <cstdint>
#include <span>
#include <vector>

#include "control/protocol.hpp"
#include "fuzz_check.hpp"

using namespace shmbus::control;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool truncated = (data[0] & 1) != 0;
  const bool hello_done = (data[0] & 2) != 0;
  const bool replies = (data[0] & 4) != 0;
  const std::span<const std::byte> datagram(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  const Decoded d = decode(datagram, truncated, hello_done, replies);
  if (!d.ok) {
    FUZZ_CHECK(d.error.code != ErrorCode::Internal);  // every refusal says why
    return 0;
  }
  FUZZ_CHECK(!truncated);
  FUZZ_CHECK(datagram.size() >= kHeaderBytes);
  FUZZ_CHECK(datagram.size() <= (replies ? kMaxReply : kMaxMessage));
  const Message& m = d.message;
  FUZZ_CHECK(m.name.size() <= kMaxName);
  FUZZ_CHECK(m.text.size() <= kMaxText);
  for (const auto* ids : {&m.acl.producer_users, &m.acl.producer_groups, &m.acl.consumer_users,
                          &m.acl.consumer_groups})
    FUZZ_CHECK(ids->size() <= kMaxIds);

  const std::vector<std::byte> again = encode(m);
  const Decoded d2 = decode(again, false, hello_done, replies);
  FUZZ_CHECK(d2.ok);
  FUZZ_CHECK(encode(d2.message) == again);
  FUZZ_CHECK(std::equal(again.begin(), again.end(), datagram.begin(), datagram.end()));
  return 0;
}
