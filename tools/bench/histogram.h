// A lock-free, HDR-like latency histogram (log-linear buckets).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Values below 256 have their own bucket; above, every power of two is split
// into 128 linear sub-buckets, so a reported percentile is at most 1/128
// (0.8%) above the exact sample. Record() is wait-free and thread-safe.
#ifndef PARLEY_TOOLS_BENCH_HISTOGRAM_H_
#define PARLEY_TOOLS_BENCH_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

namespace parley::bench {

class LatencyHistogram {
 public:
  static constexpr int kLinear = 256;
  static constexpr int kSubBuckets = 128;
  static constexpr int kBuckets = kLinear + 55 * kSubBuckets;

  void Record(int64_t value);
  void Reset();

  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  int64_t min() const;
  int64_t max() const { return max_.load(std::memory_order_relaxed); }
  double mean() const;
  // Nearest-rank percentile (p in [0, 100]), as the upper bound of the bucket
  // holding that rank, clamped to the largest recorded value. 0 when empty.
  int64_t Percentile(double p) const;

  static int BucketOf(int64_t value);
  static int64_t BucketUpper(int bucket);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<int64_t> sum_{0};
  std::atomic<int64_t> min_{INT64_MAX};
  std::atomic<int64_t> max_{0};
};

// The exact nearest-rank percentile of `samples` (sorts a copy); 0 if empty.
int64_t ExactPercentile(std::vector<int64_t> samples, double p);

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_HISTOGRAM_H_
