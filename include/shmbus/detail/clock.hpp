// shmbus/detail/clock.hpp — the realtime clock that stamps every frame,
// read inline on the producer's hot path: the time stamp counter (rdtsc)
// extrapolated from an anchor, a pair (counter, CLOCK_REALTIME ns) that the
// library takes (lib/shm/clock.hpp).
//
//   ns(t) = anchor_ns + ((t - anchor_tsc) * ns_per_tick_q32) >> 32
//
// valid only while t - anchor_tsc < window (unsigned: a t below the anchor,
// from a CPU whose counter lags, is outside too). Outside it, the caller goes
// to the library, which takes a new anchor and gives the time. The window
// is a few milliseconds, so the product never overflows 64 bits (window *
// ns_per_tick_q32 < 2^64 for any counter above 1 MHz) and the error of the
// rate, refined at every anchor against the process's first one, moves a
// stamp by well under a microsecond. Without an invariant counter (or off
// x86) the window is 0 and every stamp is CLOCK_REALTIME, from the library.
//
// Why not clock_gettime on every message: the vDSO read costs ~45 ns here
// (about a fifth of a round trip); rdtsc and a multiply cost about half.
// Where the read goes matters as much: rdtsc is microcoded and holds back
// what follows it, so producers read the counter after the frame's other
// stores, as the header's last field, where it overlaps with the wait for
// the line (offer_exclusive.hpp).
#pragma once

#include <cstdint>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace shmbus::detail {

struct TscClock {
  std::uint64_t anchor_tsc = 0;
  std::int64_t anchor_ns = 0;
  std::uint64_t ns_per_tick_q32 = 0;  // 32.32 fixed point
  std::uint64_t window = 0;           // ticks after the anchor that extrapolate; 0: none
};

inline std::uint64_t read_tsc() noexcept {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return 0;
#endif
}

// The time at counter value t, when t is inside the clock's window.
inline bool extrapolate(const TscClock& c, std::uint64_t t, std::int64_t& ns) noexcept {
  const std::uint64_t ticks = t - c.anchor_tsc;
  if (ticks >= c.window) return false;
  ns = c.anchor_ns + static_cast<std::int64_t>((ticks * c.ns_per_tick_q32) >> 32);
  return true;
}

}  // namespace shmbus::detail
