// tests/unit/segment_frames.hpp — frames as a ring holds them, written by
// hand for the segment file tests (segment_format_test, segment_log_test).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "log/segment_format.hpp"
#include "shmbus/detail/frame.hpp"

namespace shmbus::log::testing_frames {

constexpr std::uint64_t kSalt = 0x9e3779b97f4a7c15ull | 1;
constexpr std::uint64_t kRingSegment = 4096;
constexpr std::uint64_t kAlignment = 64;
constexpr std::uint64_t kSpan = 1 << 20;

inline SegmentHeader segment_at(std::uint64_t base, std::uint64_t span = kSpan) {
  SegmentHeader h{};
  h.base = base;
  h.span = span;
  h.salt = kSalt;
  h.ring_segment = kRingSegment;
  h.alignment = kAlignment;
  h.partition = 3;
  seal(h);
  return h;
}

// Frames as a ring holds them from `position`: data frames with random
// bodies and stamps, a pad where one would not fit before a ring segment
// end, now and then a skipped one.
struct Frames {
  std::vector<std::byte> bytes;
  std::int64_t min_ts = 0, max_ts = 0;
  std::uint32_t count = 0;
};
inline void put_frame(std::vector<std::byte>& out, std::uint64_t p, std::uint16_t type,
                      std::uint32_t body, std::int64_t ts, bool skipped, std::mt19937_64& rng) {
  const std::uint64_t n = detail::frame_bytes(body, kAlignment);
  const std::size_t at = out.size();
  out.resize(at + n);
  for (std::size_t i = at + detail::kFrameHeaderBytes; i < out.size(); ++i)
    out[i] = static_cast<std::byte>(rng());
  const std::uint64_t word = p ^ kSalt ^ (skipped ? detail::kSkipBit : 0);
  std::memcpy(&out[at], &word, 8);
  std::memcpy(&out[at + detail::kFrameLengthAt], &body, 4);
  std::memcpy(&out[at + detail::kFrameTypeAt], &type, 2);
  const std::uint16_t flags = 0;
  std::memcpy(&out[at + detail::kFrameFlagsAt], &flags, 2);
  std::memcpy(&out[at + detail::kFrameTimestampAt], &ts, 8);
}
inline Frames make_frames(std::uint64_t position, std::size_t messages, std::mt19937_64& rng) {
  Frames f;
  std::uint64_t p = position;
  bool stamped = false;
  for (std::size_t i = 0; i < messages; ++i) {
    const auto body = static_cast<std::uint32_t>(rng() % 300);
    const std::uint64_t n = detail::frame_bytes(body, kAlignment);
    const std::uint64_t left = detail::segment_left(p, kRingSegment);
    if (n > left) {  // as a producer pads a segment end
      put_frame(f.bytes, p, 2, static_cast<std::uint32_t>(left - detail::kFrameHeaderBytes), 0,
                false, rng);
      p += left;
      ++f.count;
    }
    // Stamps that go backwards now and then (two producers' clocks).
    const std::int64_t ts = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(rng() % 1000000);
    const bool skipped = rng() % 17 == 0;
    put_frame(f.bytes, p, 1, body, ts, skipped, rng);
    if (!skipped) {
      f.min_ts = stamped ? std::min(f.min_ts, ts) : ts;
      f.max_ts = stamped ? std::max(f.max_ts, ts) : ts;
      stamped = true;
    }
    p += n;
    ++f.count;
  }
  return f;
}

}  // namespace shmbus::log::testing_frames
