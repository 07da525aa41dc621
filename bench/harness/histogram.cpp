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

double Histogram::quantile(double q) const noexcept {
  if (count_ == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  const std::uint64_t want = std::max<std::uint64_t>(1, std::min(rank, count_));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= want)
      return std::clamp(middle(i), static_cast<double>(min()), static_cast<double>(max_));
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

Summary summarize(const Histogram& h, double ns_per_tick) {
  Summary s;
  s.count = h.count();
  s.min = static_cast<double>(h.min()) * ns_per_tick;
  s.p50 = h.quantile(0.50) * ns_per_tick;
  s.p90 = h.quantile(0.90) * ns_per_tick;
  s.p99 = h.quantile(0.99) * ns_per_tick;
  s.p999 = h.quantile(0.999) * ns_per_tick;
  s.p9999 = h.quantile(0.9999) * ns_per_tick;
  s.max = static_cast<double>(h.max()) * ns_per_tick;
  s.mean = h.mean() * ns_per_tick;
  return s;
}

}  // namespace shmbus::bench
