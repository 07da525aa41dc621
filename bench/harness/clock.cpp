#include "clock.hpp"

#include "failure.hpp"

namespace shmbus::bench {

double calibrate_ns_per_tick(std::chrono::milliseconds span) {
  using Clock = std::chrono::steady_clock;
  const auto s0 = Clock::now();
  const std::uint64_t c0 = ticks();
  while (Clock::now() - s0 < span) {
  }
  const auto s1 = Clock::now();
  const std::uint64_t c1 = ticks();
  const double ns =
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(s1 - s0).count());
  if (c1 <= c0) fail("the clock did not advance during calibration");
  return ns / static_cast<double>(c1 - c0);
}

std::uint64_t period_ticks(double messages_per_second, double ns_per_tick) noexcept {
  if (messages_per_second <= 0) return 0;
  const double t = 1e9 / messages_per_second / ns_per_tick;
  return t < 1 ? 1 : static_cast<std::uint64_t>(t);
}

}  // namespace shmbus::bench
