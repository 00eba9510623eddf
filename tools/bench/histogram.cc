// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/histogram.h"

#include <algorithm>
#include <cmath>

namespace parley::bench {
namespace {

uint64_t Rank(double p, uint64_t n) {
  double r = std::ceil(p / 100.0 * static_cast<double>(n));
  if (r < 1) r = 1;
  if (r > static_cast<double>(n)) r = static_cast<double>(n);
  return static_cast<uint64_t>(r);
}

}  // namespace

int LatencyHistogram::BucketOf(int64_t value) {
  if (value < 0) value = 0;
  if (value < kLinear) return static_cast<int>(value);
  const int msb = 63 - __builtin_clzll(static_cast<uint64_t>(value));  // >= 8
  const int shift = msb - 7;                                           // >= 1
  const int top = static_cast<int>(value >> shift);  // 128..255
  return kLinear + (shift - 1) * kSubBuckets + (top - kSubBuckets);
}

int64_t LatencyHistogram::BucketUpper(int bucket) {
  if (bucket < kLinear) return bucket;
  const int k = bucket - kLinear;
  const int shift = k / kSubBuckets + 1;
  const int64_t top = k % kSubBuckets + kSubBuckets;
  return ((top + 1) << shift) - 1;
}

void LatencyHistogram::Record(int64_t value) {
  if (value < 0) value = 0;
  counts_[BucketOf(value)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  int64_t cur = min_.load(std::memory_order_relaxed);
  while (value < cur &&
         !min_.compare_exchange_weak(cur, value, std::memory_order_relaxed)) {
  }
  cur = max_.load(std::memory_order_relaxed);
  while (value > cur &&
         !max_.compare_exchange_weak(cur, value, std::memory_order_relaxed)) {
  }
}

void LatencyHistogram::Reset() {
  for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
  count_.store(0);
  sum_.store(0);
  min_.store(INT64_MAX);
  max_.store(0);
}

int64_t LatencyHistogram::min() const {
  return count() == 0 ? 0 : min_.load(std::memory_order_relaxed);
}

double LatencyHistogram::mean() const {
  const uint64_t n = count();
  return n == 0 ? 0.0
                : static_cast<double>(sum_.load()) / static_cast<double>(n);
}

int64_t LatencyHistogram::Percentile(double p) const {
  const uint64_t n = count();
  if (n == 0) return 0;
  const uint64_t rank = Rank(p, n);
  uint64_t cum = 0;
  for (int i = 0; i < kBuckets; ++i) {
    cum += counts_[i].load(std::memory_order_relaxed);
    if (cum >= rank) return std::min(BucketUpper(i), max());
  }
  return max();
}

int64_t ExactPercentile(std::vector<int64_t> samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  return samples[Rank(p, samples.size()) - 1];
}

}  // namespace parley::bench
