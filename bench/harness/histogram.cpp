#include "histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace shmbus::bench {

void Histogram::record(std::uint64_t v) noexcept {
  ++counts_[index(v)];
  ++count_;
  sum_ += v;
  min_ = std::min(min_, v);
  max_ = std::max(max_, v);
}

double Histogram::mean() const noexcept {
  return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0;
}

double Histogram::stddev() const noexcept {
  if (count_ == 0) return 0;
  const double m = mean();
  double acc = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    if (counts_[i] == 0) continue;
    const double d = middle(i) - m;
    acc += static_cast<double>(counts_[i]) * d * d;
  }
  return std::sqrt(acc / static_cast<double>(count_));
}

double Histogram::quantile(double q, double step) const noexcept {
  if (count_ == 0) return 0;
  // The q-quantile's place among the values, as a continuous rank.
  const double want = std::clamp(q, 0.0, 1.0) * static_cast<double>(count_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    if (counts_[i] == 0) continue;
    if (static_cast<double>(seen + counts_[i]) >= want) {
      const double frac = (want - static_cast<double>(seen)) / static_cast<double>(counts_[i]);
      const double spread = std::max(static_cast<double>(width(i)), step);
      const double v = middle(i) - spread / 2 + spread * frac;
      return std::clamp(v, static_cast<double>(min()), static_cast<double>(max_));
    }
    seen += counts_[i];
  }
  return static_cast<double>(max_);
}

std::size_t Histogram::index(std::uint64_t v) noexcept {
  if (v < 2 * kSub) return static_cast<std::size_t>(v);
  const int e = 63 - std::countl_zero(v);  // >= kSubBits + 1
  const std::uint64_t sub = (v >> (e - kSubBits)) & (kSub - 1);
  return static_cast<std::size_t>(2 * kSub + static_cast<std::uint64_t>(e - kSubBits - 1) * kSub +
                                  sub);
}

std::uint64_t Histogram::lower(std::size_t i) noexcept {
  if (i < 2 * kSub) return i;
  const std::uint64_t j = i - 2 * kSub;
  const std::uint64_t e = j / kSub + kSubBits + 1;
  return (kSub + j % kSub) << (e - kSubBits);
}

std::uint64_t Histogram::width(std::size_t i) noexcept {
  if (i < 2 * kSub) return 1;
  return std::uint64_t{1} << ((i - 2 * kSub) / kSub + 1);
}

Summary summarize(const Histogram& h, double ns_per_tick, double step_ticks) {
  Summary s;
  s.count = h.count();
  s.min = static_cast<double>(h.min()) * ns_per_tick;
  s.p50 = h.quantile(0.50, step_ticks) * ns_per_tick;
  s.p90 = h.quantile(0.90, step_ticks) * ns_per_tick;
  s.p99 = h.quantile(0.99, step_ticks) * ns_per_tick;
  s.p999 = h.quantile(0.999, step_ticks) * ns_per_tick;
  s.p9999 = h.quantile(0.9999, step_ticks) * ns_per_tick;
  s.max = static_cast<double>(h.max()) * ns_per_tick;
  s.mean = h.mean() * ns_per_tick;
  return s;
}

}  // namespace shmbus::bench
