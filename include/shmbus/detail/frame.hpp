// shmbus/detail/frame.hpp — what the inline common cases of offer and poll
// (offer_exclusive.hpp, poll_in_place.hpp) know of a frame in the ring: the
// header's layout and the size arithmetic. lib/log/layout.hpp owns the
// protocol and checks these constants against its FrameHeader; lib/log's
// Ring uses the same arithmetic.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "shmbus/status.hpp"

namespace shmbus::detail {

//  offset  0: u64 commit word    (position XOR the ring's salt, stored last)
//          8: u32 length         (of the body: key, properties, payload)
//         12: u16 type           (Data 1, Pad 2; 0x8000-0xffff control frames)
//         14: u16 flags          (low byte must be understood: has key 1, has
//                                 properties 2; high byte advisory)
//         16: i64 timestamp      (CLOCK_REALTIME ns at publish, or 0)
//         24: body
//
// kFrameAbi names this layout and the inline state (OfferState, PollState)
// that applications compile in; the library refuses to open a producer or a
// consumer for code compiled against another value (check_frame_abi).
// Change it with any of them.
inline constexpr std::size_t kFrameHeaderBytes = 24;
inline constexpr std::size_t kFrameLengthAt = 8;
inline constexpr std::size_t kFrameTypeAt = 12;
inline constexpr std::size_t kFrameFlagsAt = 14;
inline constexpr std::size_t kFrameTimestampAt = 16;
inline constexpr std::uint32_t kFrameAbi = 4;
inline constexpr std::uint16_t kFrameTypeData = 1;
inline constexpr std::uint16_t kFrameMustUnderstandFlags = 0x00ff;
inline constexpr std::uint64_t kSkipBit = 2;  // flipped in a skipped frame's commit word
inline constexpr std::uint64_t kCacheLineBytes = 64;

// Lock-free, so a load never writes (consumers map the ring read-only).
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);

// Refuses (an Error saying what to rebuild) when `compiled`, the kFrameAbi
// of the headers the caller was compiled with, is not the library's.
Outcome check_frame_abi(std::uint32_t compiled);

template <class T>
inline std::atomic_ref<T> shared(std::byte* at) noexcept {
  return std::atomic_ref<T>(*reinterpret_cast<T*>(at));
}

// Bytes of a frame with a body of `body` bytes (alignment: a power of two).
constexpr std::uint64_t frame_bytes(std::uint64_t body, std::uint64_t alignment) noexcept {
  return (kFrameHeaderBytes + body + alignment - 1) & ~(alignment - 1);
}
// Bytes from position p to the end of its segment (segment_bytes: a power of two).
constexpr std::uint64_t segment_left(std::uint64_t p, std::uint64_t segment_bytes) noexcept {
  return segment_bytes - (p & (segment_bytes - 1));
}

}  // namespace shmbus::detail
