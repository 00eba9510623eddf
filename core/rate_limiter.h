// Per-device request rate limits: a token bucket per key.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Every authenticated call of a device takes one token; a bucket holds at
// most `burst` tokens and refills at `rate_per_second`. A call that finds
// the bucket empty is refused with RESOURCE_EXHAUSTED carrying how long to
// wait (message text and a google.rpc.RetryInfo-compatible detail,
// parley.v1.RetryInfo). Memory: one small entry per active device; idle
// entries (full again) are dropped as the table grows.
//
// Thread-safe (striped mutexes).
#ifndef PARLEY_CORE_RATE_LIMITER_H_
#define PARLEY_CORE_RATE_LIMITER_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace parley::core {

// Type URL of the retry detail on a rate-limited call's status.
inline constexpr char kRetryInfoTypeUrl[] = "type.googleapis.com/google.rpc.RetryInfo";

class RateLimiter {
 public:
  struct Options {
    double rate_per_second = 500;  // sustained calls per device; <= 0: no limit
    double burst = 1000;           // bucket size (calls allowed at once)
  };
  explicit RateLimiter(Options o) : o_(o) {}

  // Takes one token from `key`'s bucket at time `now_ms`.
  absl::Status Take(const std::string& key, int64_t now_ms);

  bool enabled() const { return o_.rate_per_second > 0; }

 private:
  struct Bucket {
    double tokens = 0;
    int64_t updated_ms = 0;
  };
  static constexpr size_t kStripes = 16;
  static constexpr size_t kPruneAbove = 4096;  // entries per stripe
  struct Stripe {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, Bucket> buckets ABSL_GUARDED_BY(mu);
  };
  const Options o_;
  Stripe stripes_[kStripes];
};

}  // namespace parley::core

#endif  // PARLEY_CORE_RATE_LIMITER_H_
