// bench/harness/clock.hpp — the benchmark clock and the busy-wait step.
//
// ticks(): rdtsc (invariant TSC, the same count on every CPU of the machine,
// so a stamp taken in one process can be compared with one taken in another)
// on x86, steady_clock in ns elsewhere; calibrate_ns_per_tick() converts.
// relax(): what every busy-wait loop of the harness does between two polls,
// the benchmarked mechanisms and the references alike: `pause` (as shmbus's
// WaitStrategy::BusySpin), or a compiler barrier only after set_tight_spin().
// Pace: the send schedule of a run at a fixed offered rate.
//
// Concurrency: set_tight_spin() before forking; the rest is any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace shmbus::bench {

#if defined(__x86_64__) || defined(__i386__)
inline constexpr const char* kClockName = "rdtsc (calibrated against steady_clock)";
inline std::uint64_t ticks() noexcept {
  _mm_lfence();  // earlier loads done before the stamp ...
  const std::uint64_t t = __rdtsc();
  _mm_lfence();  // ... and later work not started before it
  return t;
}
#else
inline constexpr const char* kClockName = "steady_clock";
inline std::uint64_t ticks() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}
#endif

// Nanoseconds per tick, measured over `span` of steady_clock. Fails if the
// clock does not advance.
double calibrate_ns_per_tick(std::chrono::milliseconds span);

// How many ticks the clock advances at a time: 1 where it counts every tick
// (Intel's TSC); AMD Zen's TSC advances once per period of its 100 MHz
// reference, by (nominal frequency / 100 MHz) ticks: 24.5 ticks, 10 ns, on
// the EPYC VM we measure on; steady_clock on ARM follows a generic timer of
// 19.2-54 MHz. A round trip of 170 ns is then recorded as 160, 170 or 180 ns;
// summarize() spreads each recorded value over one step, so that
// percentiles are not rounded to the step.
double calibrate_tick_step();
// The step seen in clock differences taken at irregular intervals: the
// spacing of the values they take (zero, and values rarer than 1 in 5000,
// ignored) when those come in clusters no wider than 2 ticks (the rounding
// of a fractional step); else 1.
double tick_step_of(std::vector<std::uint64_t> deltas);

namespace detail {
inline bool tight_spin = false;
}
inline void set_tight_spin(bool tight) noexcept {
  detail::tight_spin = tight;
}

inline void relax() noexcept {
  if (detail::tight_spin) {
    std::atomic_signal_fence(std::memory_order_seq_cst);  // a compiler barrier only
    return;
  }
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// The start time of each message of a run. Back-to-back (period 0): now.
// Paced: message k is due at start + k * period; start() waits until it is
// due and returns the due time, not the time it was actually sent, so that a
// sender held up by a slow reply does not hide the queueing that a steady
// source would have seen (coordinated omission: the latency is measured from
// the intended send time).
class Pace {
 public:
  explicit Pace(std::uint64_t period_ticks) noexcept
      : period_(period_ticks), next_(period_ticks != 0 ? ticks() : 0) {}
  std::uint64_t start() noexcept {
    if (period_ == 0) return ticks();
    const std::uint64_t due = next_;
    next_ += period_;
    while (ticks() < due) relax();
    return due;
  }

 private:
  std::uint64_t period_;
  std::uint64_t next_;
};

// Converts a rate in messages per second to a Pace period (0: back-to-back).
std::uint64_t period_ticks(double messages_per_second, double ns_per_tick) noexcept;

}  // namespace shmbus::bench
