#include "shm/clock.hpp"

#include <time.h>

#include <atomic>
#include <chrono>
#include <thread>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace shmbus::shm {
namespace {

__extension__ typedef unsigned __int128 u128;

// An anchor's validity: short enough that the rate's error moves no stamp
// by a microsecond, long enough that anchors cost nothing (one
// clock_gettime pair per window).
constexpr std::int64_t kWindowNs = 10'000'000;

bool invariant_tsc() noexcept {
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (__get_cpuid(0x80000000, &a, &b, &c, &d) == 0 || a < 0x80000007) return false;
  __get_cpuid(0x80000007, &a, &b, &c, &d);
  return (d & (1u << 8)) != 0;  // "invariant TSC": constant rate, runs in every C-state
#else
  return false;
#endif
}

// A counter reading and the realtime at (about) the same instant: the
// tightest of a few tries, the counter taken as the midpoint around the clock read.
struct Pair {
  std::uint64_t tsc;
  std::int64_t ns;
};
Pair read_pair() noexcept {
  Pair best{0, 0};
  std::uint64_t best_gap = ~std::uint64_t{0};
  for (int i = 0; i < 5; ++i) {
    const std::uint64_t t1 = detail::read_tsc();
    const std::int64_t ns = realtime_ns();
    const std::uint64_t t2 = detail::read_tsc();
    if (t2 - t1 < best_gap) {
      best_gap = t2 - t1;
      best = {t1 + (t2 - t1) / 2, ns};
    }
  }
  return best;
}

std::uint64_t rate_q32(const Pair& from, const Pair& to) noexcept {
  const auto ns = static_cast<u128>(to.ns - from.ns);
  return static_cast<std::uint64_t>((ns << 32) / (to.tsc - from.tsc));
}

// Once per process: the first anchor, and a first rate over ~1 ms. Each
// later anchor measures the rate again from the first one, over a baseline
// that only grows, so its error shrinks as the process runs (and follows
// NTP's slewing of CLOCK_REALTIME).
struct Calibration {
  bool counter = false;
  Pair first{};
  std::atomic<std::uint64_t> rate{0};
  Calibration() noexcept {
    counter = invariant_tsc();
    if (!counter) return;
    first = read_pair();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const Pair second = read_pair();
    if (second.tsc <= first.tsc || second.ns <= first.ns) {
      counter = false;
      return;
    }
    rate.store(rate_q32(first, second), std::memory_order_relaxed);
  }
};
Calibration& calibration() noexcept {
  static Calibration c;
  return c;
}

}  // namespace

std::int64_t realtime_ns() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

bool counter_clock() noexcept {
  return calibration().counter;
}

std::int64_t clock_now(detail::TscClock& c) noexcept {
  Calibration& cal = calibration();
  if (!cal.counter) return realtime_ns();  // c.window stays 0: every stamp comes here
  const Pair now = read_pair();
  std::uint64_t rate = cal.rate.load(std::memory_order_relaxed);
  if (now.tsc > cal.first.tsc && now.ns - cal.first.ns >= 100 * kWindowNs) {
    rate = rate_q32(cal.first, now);
    cal.rate.store(rate, std::memory_order_relaxed);
  }
  c.anchor_tsc = now.tsc;
  c.anchor_ns = now.ns;
  c.ns_per_tick_q32 = rate;
  c.window = static_cast<std::uint64_t>((static_cast<u128>(kWindowNs) << 32) / rate);
  return now.ns;
}

}  // namespace shmbus::shm
