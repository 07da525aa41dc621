// The benchmark harness's arithmetic: the clock's step and the quantiles of
// the latency histogram (bench/harness/clock.hpp, histogram.hpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "clock.hpp"
#include "histogram.hpp"

namespace shmbus::bench {
namespace {

// Differences of readings, at irregular intervals of 0 to 996 * `turn`
// ticks, of a clock that advances `step` ticks at a time. AMD Zen at 2.445
// GHz: by 24 or 25 ticks (24.45 on average), so differences are rounded
// multiples of it.
std::vector<std::uint64_t> stepped_deltas(double step, int count, double turn = 0.37) {
  std::vector<std::uint64_t> d;
  double t = 0;
  std::uint64_t prev = 0;
  for (int i = 0; i < count; ++i) {
    t += turn * ((i * 7919) % 997);
    const auto now = static_cast<std::uint64_t>(static_cast<std::uint64_t>(t / step) * step);
    d.push_back(now - prev);
    prev = now;
  }
  return d;
}

TEST(TickStep, FindsTheStepOfAClockThatAdvancesSeveralTicksAtATime) {
  const double step = tick_step_of(stepped_deltas(24.45, 5000));
  EXPECT_NEAR(step, 24.45, 0.3);
}

TEST(TickStep, IsOneForAClockThatCountsEveryTick) {
  EXPECT_EQ(tick_step_of(stepped_deltas(1, 5000)), 1);
  // Back-to-back reads that always take about as long: a run of values, not steps.
  EXPECT_EQ(tick_step_of({38, 39, 40, 41, 39, 38, 40, 120, 121, 122, 123}), 1);
}

TEST(TickStep, IsOneWithoutEnoughEvidence) {
  EXPECT_EQ(tick_step_of({}), 1);
  EXPECT_EQ(tick_step_of({0, 0, 0}), 1);
  EXPECT_EQ(tick_step_of({24, 25, 49, 24, 25, 49}), 1);  // two clusters only
}

TEST(TickStep, IgnoresRareDifferences) {
  // Interrupts and VM exits: a few long differences, each its own value.
  std::vector<std::uint64_t> d = stepped_deltas(24.45, 5000);
  for (std::uint64_t x : {5000, 9000, 13000, 20000, 40000, 60000, 80000, 99000}) d.push_back(x);
  EXPECT_NEAR(tick_step_of(d), 24.45, 0.3);
}

TEST(TickStep, FindsTheStepOfAClockSlowerThanItsReads) {
  // ARM's generic timer behind steady_clock in ns: 41.67 ns a step, often
  // read twice within one step (zero differences); intervals of 0 to ~400
  // ns, as calibrate_tick_step()'s loop makes them.
  EXPECT_NEAR(tick_step_of(stepped_deltas(41.67, 50000, 0.4)), 41.67, 0.5);
}

TEST(HistogramQuantile, InterpolatesWithinABucket) {
  Histogram h;
  for (std::uint64_t v = 0; v < 100; ++v) h.record(v);  // exact buckets below 128
  EXPECT_NEAR(h.quantile(0.5, 1), 49.5, 0.51);
  EXPECT_NEAR(h.quantile(0.9, 1), 89.5, 0.51);
  EXPECT_EQ(h.quantile(1.0, 1), 99);
  EXPECT_EQ(h.quantile(0.0, 1), 0);
}

TEST(HistogramQuantile, SpreadsAValueOverOneClockStep) {
  // A constant 398.4 ticks measured with a clock of step 24 (stamps rounded
  // down to a step, at a random phase): 16 steps (384) 40% of the time, 17
  // steps (408) 60% of the time.
  Histogram h;
  for (int i = 0; i < 400; ++i) h.record(384);
  for (int i = 0; i < 600; ++i) h.record(408);
  // Without the step the p50 is the spike at 408; with it, the p50 lies
  // between the spikes, near the true value.
  EXPECT_NEAR(h.quantile(0.5, 1), 408, 2);
  const double p50 = h.quantile(0.5, 24);
  EXPECT_GT(p50, 384 + 2);
  EXPECT_LT(p50, 408 - 2);
  // Within 1%: the bucket's middle stands for the spike (buckets are 4
  // ticks wide here), and an even spread approximates the stamps' rounding.
  EXPECT_NEAR(p50, 398.4, 4);
  // Never outside what was recorded.
  EXPECT_EQ(h.quantile(0.999, 24), 408);
  EXPECT_EQ(h.quantile(0.001, 24), 384);
}

TEST(HistogramQuantile, NeverDecreasesWhenSpreadsOverlap) {
  // A fractional step records one latency as two neighbouring values (171
  // and 172 here, in two buckets), whose spreads overlap.
  Histogram h;
  for (int i = 0; i < 500; ++i) h.record(171);
  for (int i = 0; i < 500; ++i) h.record(172);
  for (int i = 0; i < 1000; ++i) h.record(196);
  for (int i = 0; i < 50; ++i) h.record(1200 + 24 * (i % 5));  // buckets 16 wide there
  double prev = 0;
  for (int k = 0; k <= 1000; ++k) {
    const double v = h.quantile(k / 1000.0, 24.45);
    EXPECT_GE(v, prev) << "q " << k / 1000.0;
    prev = v;
  }
}

TEST(HistogramQuantile, EmptyIsZero) {
  Histogram h;
  EXPECT_EQ(h.quantile(0.5, 24), 0);
}

}  // namespace
}  // namespace shmbus::bench
