#include "clock.hpp"

#include <algorithm>
#include <cmath>

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

double calibrate_tick_step() {
  // Irregular intervals (0 to ~1000 loop turns, a few hundred ns), so that
  // on a clock that counts every tick the differences take every value, not
  // a few that a regular loop would repeat and that would look like steps;
  // and long enough to span several steps of a coarse clock (ARM's generic
  // timer: 18-52 ns).
  std::vector<std::uint64_t> deltas(50000);
  std::uint64_t prev = ticks();
  for (std::size_t i = 0; i < deltas.size(); ++i) {
    for (std::size_t k = (i * 7919) % 997; k > 0; --k)
      std::atomic_signal_fence(std::memory_order_seq_cst);
    const std::uint64_t t = ticks();
    deltas[i] = t - prev;
    prev = t;
  }
  return tick_step_of(std::move(deltas));
}

double tick_step_of(std::vector<std::uint64_t> deltas) {
  // The values the differences take, without the rare ones (an interrupt, a
  // VM exit): each must come up in at least 1 in 5000 differences.
  std::sort(deltas.begin(), deltas.end());
  const std::size_t often = std::max<std::size_t>(2, deltas.size() / 5000);
  std::vector<std::uint64_t> values;
  for (std::size_t i = 0; i < deltas.size();) {
    std::size_t j = i;
    while (j < deltas.size() && deltas[j] == deltas[i]) ++j;
    if (deltas[i] != 0 && j - i >= often) values.push_back(deltas[i]);
    i = j;
  }
  std::vector<double> centres;  // of the clusters of values at most 1 apart
  for (std::size_t i = 0; i < values.size();) {
    std::size_t j = i;
    while (j + 1 < values.size() && values[j + 1] - values[j] <= 1) ++j;
    if (values[j] - values[i] > 2) return 1;  // a run of values: every tick counts
    centres.push_back(static_cast<double>(values[i] + values[j]) / 2);
    i = j + 1;
  }
  if (centres.size() < 3) return 1;  // too few values to tell
  std::vector<double> gaps;
  for (std::size_t i = 1; i < centres.size(); ++i) gaps.push_back(centres[i] - centres[i - 1]);
  std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
  // No step is longer than the shortest non-zero difference.
  const double rough = std::min(gaps[gaps.size() / 2], centres[0]);
  // Refined over several steps (a cluster's centre is off by up to half a
  // tick), up to the last cluster within 12 rough steps of the first, where
  // rounding the number of steps cannot go wrong.
  double last = centres[0];
  for (double c : centres)
    if (c - centres[0] <= 12 * rough) last = c;
  const double steps = std::round((last - centres[0]) / rough);
  return steps > 0 ? (last - centres[0]) / steps : rough;
}

std::uint64_t period_ticks(double messages_per_second, double ns_per_tick) noexcept {
  if (messages_per_second <= 0) return 0;
  const double t = 1e9 / messages_per_second / ns_per_tick;
  return t < 1 ? 1 : static_cast<std::uint64_t>(t);
}

}  // namespace shmbus::bench
