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
inline constexpr std::uint64_t kSkipBit = 2;     // flipped in a skipped frame's commit word
inline constexpr std::uint64_t kPendingBit = 4;  // flipped in a handed-out frame's commit word
inline constexpr std::uint64_t kCacheLineBytes = 64;

// Lock-free, so a load never writes (consumers map the ring read-only).
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint16_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::int64_t>::is_always_lock_free);

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

// Where a ring's frames are, as every reader of them needs it.
struct FrameGeometry {
  std::byte* frames = nullptr;  // the ring's frames (a consumer maps them read-only)
  std::uint64_t mask = 0;       // capacity - 1
  std::uint64_t salt = 0;
  std::uint64_t segment_bytes = 0;
  std::uint64_t alignment = 0;
};

// What the commit word at p says of the frame there (lib/log/layout.hpp):
//   Open       nothing settled: being claimed or written, abandoned, not yet
//              claimed in this lap, or overwritten by a newer one
//   Pending    handed out: the header is written, the payload may not be
//   Committed  ready to read
//   Skipped    aborted, or revoked by shmbusd: walk over it
enum class FrameState : std::uint8_t { Open, Pending, Committed, Skipped };

// One validated look at the frame at p, the single copy of "load the commit
// word, read the header once, check that the frame stays inside its segment,
// advance" that every walk over frames goes through (the inline poll, the
// consumer's library path, seeks, the reapers, shmbusd, stat, the fuzzers).
// The header is read only when the commit word says it is written (not
// Open), each field once: a damaged or late writer may change it under us,
// and what was checked must be what is used.
struct FrameLook {
  FrameState state = FrameState::Open;
  std::uint16_t type = 0;
  std::uint16_t flags = 0;
  std::uint32_t length = 0;  // of the body
  std::int64_t timestamp = 0;
  std::uint64_t next = 0;  // where the next frame starts; 0 when Open or damaged

  bool settled() const noexcept {
    return state == FrameState::Committed || state == FrameState::Skipped;
  }
  // A committed message (Pad, Skipped and control frames are walked over).
  bool data() const noexcept { return state == FrameState::Committed && type == kFrameTypeData; }
  // The header is there, but its length leaves the segment.
  bool damaged() const noexcept { return state != FrameState::Open && next == 0; }
};

// Looks at the frame f, which holds position p (a multiple of `alignment`,
// so the header lies inside what holds it: a ring, or a batch of a segment
// file read into memory, lib/log/segment_format.hpp). `order` is the commit
// word's load: acquire pairs with the producer's release of pending or ready.
template <std::memory_order order = std::memory_order_acquire>
inline FrameLook look_at_frame(std::byte* f, std::uint64_t p, std::uint64_t salt,
                               std::uint64_t segment_bytes, std::uint64_t alignment) noexcept {
  const std::uint64_t word = shared<std::uint64_t>(f).load(order) ^ salt ^ p;
  FrameLook l;
  if (word == 0)
    l.state = FrameState::Committed;
  else if (word == kSkipBit)
    l.state = FrameState::Skipped;
  else if (word == kPendingBit)
    l.state = FrameState::Pending;
  else
    return l;
  l.length = shared<std::uint32_t>(f + kFrameLengthAt).load(std::memory_order_relaxed);
  l.type = shared<std::uint16_t>(f + kFrameTypeAt).load(std::memory_order_relaxed);
  l.flags = shared<std::uint16_t>(f + kFrameFlagsAt).load(std::memory_order_relaxed);
  l.timestamp = shared<std::int64_t>(f + kFrameTimestampAt).load(std::memory_order_relaxed);
  if (kFrameHeaderBytes + l.length <= segment_left(p, segment_bytes))
    l.next = p + frame_bytes(l.length, alignment);
  return l;
}

// The frame at p in the ring g.
template <std::memory_order order = std::memory_order_acquire>
inline FrameLook look_at(const FrameGeometry& g, std::uint64_t p) noexcept {
  return look_at_frame<order>(g.frames + (p & g.mask), p, g.salt, g.segment_bytes, g.alignment);
}

}  // namespace shmbus::detail
