// shmbus/detail/offer_exclusive.hpp — the common case of Producer::offer,
// compiled into the caller: an exclusive producer's message with neither key
// nor properties, with room before the segment end and below the cached gate.
// Anything else (a shared topic's claim by fetch_add, a segment end to pad,
// back-pressure, an open claim, a frame too large) goes to the library; so
// does a clock anchor to take, by a call (anchor()) from inside step 4.
//
// Why in the header: as for Consumer::poll (poll_in_place.hpp), the call into
// the library is on every message's latency, between the application's
// offer and the commit word landing. Aeron's ExclusivePublication::offer is
// header code the same way.
//
// The stores are the producer column of lib/log/layout.hpp for an exclusive
// producer, in its order:
//
//   1 claim_position = p     (our slot: an exclusive producer's open claim is
//                             [claim_position, tail), so a reaper needs no length
//                             and there is no "claim ended" store; layout.hpp)
//   2 tail = p + n, release  (after 1: a reaper that sees the tail sees the claim;
//                             before 3-5: overwrite readers check it after copying)
//   3 payload
//   4 header: length, type Data, flags 0, then the timestamp (the counter,
//     read here, after the other stores, and extrapolated:
//     shmbus/detail/clock.hpp)
//   5 commit word = p ^ salt, release   (consumers acquire-load it: 3 and 4 first)
//   6 light fence, then load the futex waiter count; wake if non-zero (the
//     Dekker pairing with a consumer falling asleep, lib/shm/asymmetric_fence.hpp)
//   7 with ProducerOptions::pretouch_next_frame: prefetch for writing the
//     next frame's second line (a hint: it stores nothing)
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>

#include "shmbus/detail/clock.hpp"
#include "shmbus/detail/frame.hpp"
#include "shmbus/detail/light_fence.hpp"
#include "shmbus/status.hpp"

namespace shmbus::detail {

inline constexpr std::uint64_t kNoClaim = std::numeric_limits<std::uint64_t>::max();

// A producer's publishing state, shared by this header and the library
// (Producer::Impl keeps it; its address is fixed for the producer's life).
struct OfferState {
  // Fixed when the producer opens.
  std::byte* frames = nullptr;  // the ring's frames
  std::uint64_t mask = 0;       // capacity - 1
  std::uint64_t salt = 0;
  std::uint64_t segment_bytes = 0;
  std::uint64_t alignment = 0;
  std::uint64_t max_body = 0;
  std::uint64_t* tail = nullptr;
  std::uint64_t* claim_position = nullptr;          // our producer slot's
  std::uint32_t* waiters = nullptr;                 // consumers asleep on the futex
  const std::atomic<bool>* light_fences = nullptr;  // this process may use the light fence
  bool exclusive = false;
  bool block = false;
  bool timestamps = true;  // ProducerOptions::timestamps
  bool pretouch = false;   // ProducerOptions::pretouch_next_frame
  // Ours, changed by the library too.
  std::uint64_t local_tail = 0;    // exclusive producers: the tail we last stored
  std::uint64_t gating_limit = 0;  // `block`: frames ending at or below it need no look at cursors
  std::uint64_t open_claim = kNoClaim;  // position of the claim() not yet committed
  TscClock clock;                       // the library takes its anchors (lib/shm/clock.hpp)
};

// An exclusive producer's tail store, after its claim record (release: a
// reaper that sees the tail sees the record) and before the frame's bytes
// (overwrite readers check the tail after copying). The library's exclusive
// claims use it too.
inline void advance_tail(OfferState& s, std::uint64_t end) noexcept {
  s.local_tail = end;
  std::atomic_ref<std::uint64_t>(*s.tail).store(end, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_release);
}

// The second cache line of a frame longer than a line that starts at the
// tail: the line after the one holding the tail. Null when that line starts
// a segment: a frame longer than what is left before the segment end goes
// there, after a pad, and it would be that frame's first line, the one
// consumers spin on.
inline std::byte* next_frame_second_line(const OfferState& s) noexcept {
  const std::uint64_t line = (s.local_tail | (kCacheLineBytes - 1)) + 1;
  if ((line & (s.segment_bytes - 1)) == 0) return nullptr;
  return s.frames + (line & s.mask);
}

// Step 7, after a frame of `bytes` bytes (aligned, header included): a frame
// longer than a line foretells another.
inline void pretouch_next_frame(const OfferState& s, std::uint64_t bytes) noexcept {
  if (!s.pretouch || bytes <= kCacheLineBytes) return;
  std::byte* line = next_frame_second_line(s);
  if (line == nullptr) return;
#if defined(__x86_64__)
  asm volatile("prefetchw %0" : : "m"(*line));
#else
  __builtin_prefetch(line, 1, 3);
#endif
}

// Publishes `payload` when it is the common case; else returns rest().
// wake() wakes sleeping consumers; anchor() takes a new clock anchor and
// returns the time (shm::clock_now).
template <class Rest, class Wake, class Anchor>
inline Status offer_exclusive(OfferState& s, std::span<const std::byte> payload, Rest&& rest,
                              Wake&& wake, Anchor&& anchor) noexcept {
  const std::uint64_t p = s.local_tail;
  // Meaningless when the payload is larger than max_body; rest() takes that.
  const std::uint64_t n = frame_bytes(payload.size(), s.alignment);
  if (!s.exclusive || s.open_claim != kNoClaim || payload.size() > s.max_body ||
      n > segment_left(p, s.segment_bytes) || (s.block && p + n > s.gating_limit))
    return rest();
  std::atomic_ref<std::uint64_t>(*s.claim_position).store(p, std::memory_order_relaxed);
  advance_tail(s, p + n);
  std::byte* f = s.frames + (p & s.mask);
  if (!payload.empty()) std::memcpy(f + kFrameHeaderBytes, payload.data(), payload.size());
  const auto length = static_cast<std::uint32_t>(payload.size());
  const std::uint16_t flags = 0;
  std::memcpy(f + kFrameLengthAt, &length, 4);
  std::memcpy(f + kFrameTypeAt, &kFrameTypeData, 2);
  std::memcpy(f + kFrameFlagsAt, &flags, 2);
  // The counter is read after the other stores of the frame, not before:
  // rdtsc is microcoded and holds back the instructions after it (~50
  // cycles here), so read first it delayed the line's ownership request by
  // its whole latency (32 B round trip +10%); read here, it overlaps with
  // that request (+1%). Outside the clock's window, anchor() is the
  // library's new anchor: the frame is claimed by now, so no rest().
  std::int64_t timestamp = 0;
  if (s.timestamps && !extrapolate(s.clock, read_tsc(), timestamp)) timestamp = anchor();
  std::memcpy(f + kFrameTimestampAt, &timestamp, 8);
  // SYNC POINT: pairs with the consumer's acquire load of the commit word.
  if (commit_then_check_sleepers(*reinterpret_cast<std::uint64_t*>(f), p ^ s.salt, *s.light_fences,
                                 *s.waiters))
    wake();
  pretouch_next_frame(s, n);
  return Status::Ok;
}

}  // namespace shmbus::detail
