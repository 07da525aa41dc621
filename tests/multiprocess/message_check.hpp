// tests/multiprocess/message_check.hpp — self-checking test messages.
//
// Payload: { u32 producer, u32 body_bytes, u64 seq, u64 checksum } + body.
// The body is a function of (producer, seq), its size varies with seq, and the
// checksum (FNV-1a 64) covers it, so a consumer can check every message it
// gets: who sent it, that it is the next one from that sender, and its content.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace shmbus::testing {

struct CheckHeader {
  std::uint32_t producer;
  std::uint32_t body_bytes;
  std::uint64_t seq;
  std::uint64_t checksum;
};
static_assert(sizeof(CheckHeader) == 24);

inline std::uint64_t fnv1a(std::span<const std::byte> b) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::byte x : b) h = (h ^ static_cast<std::uint8_t>(x)) * 0x100000001b3ull;
  return h;
}

// Fills `out` with the message (producer, seq); body size in [0, max_body].
inline void make_message(std::uint32_t producer, std::uint64_t seq, std::uint32_t max_body,
                         std::vector<std::byte>& out) {
  std::uint64_t x = (seq + 1) * 0x9e3779b97f4a7c15ull ^ (std::uint64_t{producer} << 56);
  const auto body = static_cast<std::uint32_t>(x % (max_body + 1));
  out.resize(sizeof(CheckHeader) + body);
  for (std::uint32_t i = 0; i < body; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[sizeof(CheckHeader) + i] = static_cast<std::byte>(x);
  }
  CheckHeader h{producer, body, seq, fnv1a({out.data() + sizeof(CheckHeader), body})};
  std::memcpy(out.data(), &h, sizeof h);
}

// Checks a received payload; returns its header, or false when it is damaged.
inline bool check_message(std::span<const std::byte> payload, CheckHeader& h) {
  if (payload.size() < sizeof(CheckHeader)) return false;
  std::memcpy(&h, payload.data(), sizeof h);
  if (payload.size() != sizeof(CheckHeader) + h.body_bytes) return false;
  return fnv1a(payload.subspan(sizeof(CheckHeader))) == h.checksum;
}

}  // namespace shmbus::testing
