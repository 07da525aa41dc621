// bench/harness/histogram.hpp — a log-linear latency histogram: values below
// 128 exactly, then 64 sub-buckets per power of two (< 1.6% bucket width,
// < 0.8% error at the reported bucket middle). Fixed size, no allocation:
// it can live in a MAP_SHARED mapping that a child process fills and the
// parent reads. Summary: the percentiles the harness reports, in ns.
//
// Concurrency: not thread-safe; one writer at a time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shmbus::bench {

class Histogram {
 public:
  static constexpr int kSubBits = 6;
  static constexpr std::uint64_t kSub = 1u << kSubBits;
  static constexpr std::size_t kBuckets = 2 * kSub + (63 - kSubBits) * kSub;

  void record(std::uint64_t v) noexcept;
  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept;
  // From the bucket middles (the sum of squares would overflow).
  double stddev() const noexcept;
  // The q-quantile, interpolated: the values of a bucket are taken as spread
  // evenly over the bucket, or over one clock step around its middle when
  // the step is wider (a clock that advances `step` ticks at a time records
  // only multiples of it); never decreasing in q; clamped to [min, max].
  double quantile(double q, double step) const;
  std::uint64_t bucket_count(std::size_t i) const noexcept { return counts_[i]; }

  static std::size_t index(std::uint64_t v) noexcept;
  static std::uint64_t lower(std::size_t i) noexcept;
  static std::uint64_t width(std::size_t i) noexcept;
  static double middle(std::size_t i) noexcept {
    return static_cast<double>(lower(i)) + (static_cast<double>(width(i)) - 1) / 2;
  }

 private:
  std::uint64_t counts_[kBuckets] = {};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
};

struct Summary {
  std::uint64_t count = 0;
  double min = 0, p50 = 0, p90 = 0, p99 = 0, p999 = 0, p9999 = 0, max = 0, mean = 0;
};

// The histogram's percentiles, converted from ticks to ns; step_ticks: the
// clock's step (calibrate_tick_step()).
Summary summarize(const Histogram& h, double ns_per_tick, double step_ticks);

}  // namespace shmbus::bench
