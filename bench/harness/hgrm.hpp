// bench/harness/hgrm.hpp — a histogram as a percentile distribution in
// HdrHistogram's text format (.hgrm, as written by outputPercentileDistribution
// with 5 ticks per half distance), values in microseconds:
//
//        Value     Percentile TotalCount 1/(1-Percentile)
//
//        0.381 0.000000000000          1           1.00
//        ...
//        9.215 1.000000000000      10000
//   #[Mean    =        0.402, StdDeviation   =        0.101]
//   #[Max     =        9.215, Total count    =        10000]
//   #[Buckets =          456, SubBuckets     =           64]
//
// Each value is the upper end of the bucket where the cumulative count first
// reaches the percentile (HdrHistogram's "highest equivalent value"), capped
// at the maximum. bench/plot.py draws these files; so do HdrHistogram's own
// plotters.
#pragma once

#include <string>

#include "histogram.hpp"

namespace shmbus::bench {

std::string hgrm_text(const Histogram& h, double ns_per_tick);
// Writes hgrm_text to `path`; fails naming the file.
void write_hgrm(const std::string& path, const Histogram& h, double ns_per_tick);

}  // namespace shmbus::bench
