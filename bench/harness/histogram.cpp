#include "histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <vector>

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

double Histogram::quantile(double q, double step) const {
  if (count_ == 0) return 0;
  // Each bucket's count spread evenly over the bucket, or over one step
  // around its middle when the step is wider; then the x at which the
  // fraction of the count below x is q. Spreads of neighbouring buckets may
  // overlap (a fractional step records one latency as two neighbouring
  // values), so x is found by bisection on the sum, which only grows with x.
  struct Spread {
    double from, width, count;
  };
  std::vector<Spread> spreads;  // of the non-empty buckets, in order
  for (std::size_t i = index(min_); i <= index(max_); ++i) {
    if (counts_[i] == 0) continue;
    const double w = std::max(static_cast<double>(width(i)), step);
    spreads.push_back({middle(i) - w / 2, w, static_cast<double>(counts_[i])});
  }
  auto below = [&](double x) {
    double n = 0;
    for (const Spread& s : spreads) n += s.count * std::clamp((x - s.from) / s.width, 0.0, 1.0);
    return n;
  };
  const double want = std::clamp(q, 0.0, 1.0) * static_cast<double>(count_);
  double lo = spreads.front().from;
  double hi = spreads.back().from + spreads.back().width;
  for (int k = 0; k < 60 && hi - lo > 1e-3; ++k) {
    const double mid = (lo + hi) / 2;
    (below(mid) < want ? lo : hi) = mid;
  }
  return std::clamp(hi, static_cast<double>(min_), static_cast<double>(max_));
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
