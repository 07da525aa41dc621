#include "hgrm.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "failure.hpp"

namespace shmbus::bench {

std::string hgrm_text(const Histogram& h, double ns_per_tick) {
  const double us = ns_per_tick / 1000;
  const std::uint64_t total = h.count();
  std::string out =
      format("%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
  // HdrHistogram's PercentileIterator, 5 reporting ticks per half distance:
  // after level L the next is L + 100 / (5 * 2^(floor(log2(100 / (100 - L))) + 1)).
  constexpr int kTicksPerHalf = 5;
  double level = 0;  // percent
  std::uint64_t seen = 0;
  const double max_value = static_cast<double>(h.max()) * us;
  for (std::size_t i = 0; i < Histogram::kBuckets && seen < total; ++i) {
    const std::uint64_t n = h.bucket_count(i);
    if (n == 0) continue;
    seen += n;
    const double value = std::min(
        static_cast<double>(Histogram::lower(i) + Histogram::width(i) - 1) * us, max_value);
    const double reached = 100.0 * static_cast<double>(seen) / static_cast<double>(total);
    // The last bucket reports once, as the 100% line below.
    while (seen < total && reached >= level) {
      const double p = level / 100;
      out += format("%12.3f %2.12f %10llu %14.2f\n", value, p,
                    static_cast<unsigned long long>(seen), 1 / (1 - p));
      const double ticks =
          kTicksPerHalf * std::pow(2.0, std::floor(std::log2(100 / (100 - level))) + 1);
      level += 100 / ticks;
    }
  }
  if (total > 0)
    out += format("%12.3f %2.12f %10llu\n", max_value, 1.0, static_cast<unsigned long long>(total));
  std::size_t used = 0;
  for (std::size_t i = 0; i < Histogram::kBuckets; ++i)
    if (h.bucket_count(i) != 0) used = i + 1;
  out += format("#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", h.mean() * us, h.stddev() * us);
  out += format("#[Max     = %12.3f, Total count    = %12llu]\n", max_value,
                static_cast<unsigned long long>(total));
  out += format("#[Buckets = %12zu, SubBuckets     = %12llu]\n",
                used > 2 * Histogram::kSub ? (used - 2 * Histogram::kSub) / Histogram::kSub + 2 : 1,
                static_cast<unsigned long long>(Histogram::kSub));
  return out;
}

void write_hgrm(const std::string& path, const Histogram& h, double ns_per_tick) {
  std::ofstream f(path, std::ios::trunc);
  if (f) f << hgrm_text(h, ns_per_tick);
  f.close();
  if (!f) fail("cannot write " + path + ": " + std::strerror(errno));
}

}  // namespace shmbus::bench
