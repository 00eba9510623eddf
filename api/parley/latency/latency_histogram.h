// Latency histograms in fixed buckets, as GetServerStats carries them
// (parley.v1.LatencyHistogram): parleyd records into a LatencyHistogram;
// parleyctl and parley-bench read the message (Summarize), one read or the
// difference of two (the time between them).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Buckets: 8 per doubling (bounds about 9% apart) from 16 us to 2^25 us
// (about 33.5 s), plus one for everything above. A percentile is given as
// the upper bound of the bucket it falls in, so it is at most 9% high.
//
// Threading: LatencyHistogram::Record and ToProto may be called from any
// thread at once (relaxed atomic counters; a read taken while events are
// being recorded may miss the ones in flight). The free functions are pure.
// Errors: Summarize returns InvalidArgument naming what is malformed.
#ifndef PARLEY_API_PARLEY_LATENCY_LATENCY_HISTOGRAM_H_
#define PARLEY_API_PARLEY_LATENCY_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parley/v1/admin.pb.h"

namespace parley::latency {

class LatencyHistogram {
 public:
  // 8 bounds per doubling from 2^4 us to 2^25 us: 169 bounds.
  static constexpr size_t kBounds = 8 * (25 - 4) + 1;

  LatencyHistogram();
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  // Counts one event that took `d` (a negative one counts as 0).
  void Record(absl::Duration d);
  // The bounds and the counts so far.
  void ToProto(v1::LatencyHistogram* out) const;

  // The bucket bounds in us, ascending (the same in every histogram).
  static const std::array<uint64_t, kBounds>& Bounds();

 private:
  std::array<std::atomic<uint64_t>, kBounds + 1> counts_;
};

struct LatencySummary {
  uint64_t count = 0;
  // Upper bounds of the buckets holding each percentile, in ms; -1 for no
  // events, and for a percentile above the last bound.
  double p50_ms = -1;
  double p99_ms = -1;
  double p999_ms = -1;
};

// Summarizes `end`, or with `start` (an earlier read of the same server)
// the events recorded between the two reads. InvalidArgument when a
// histogram is malformed (counts not one longer than the bounds, bounds not
// ascending), when the two have different bounds, or when a count of
// `start` is above that of `end` (not an earlier read of the same server).
absl::StatusOr<LatencySummary> Summarize(const v1::LatencyHistogram& end,
                                         const v1::LatencyHistogram* start);

}  // namespace parley::latency

#endif  // PARLEY_API_PARLEY_LATENCY_LATENCY_HISTOGRAM_H_
