// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/rate_limiter.h"

#include <algorithm>
#include <cmath>

#include "absl/hash/hash.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "parley/v1/common.pb.h"

namespace parley::core {

absl::Status RateLimiter::Take(const std::string& key, int64_t now_ms) {
  if (!enabled()) return absl::OkStatus();
  Stripe& s = stripes_[absl::Hash<std::string>()(key) % kStripes];
  double wait_s = 0;
  {
    absl::MutexLock lock(&s.mu);
    if (s.buckets.size() > kPruneAbove) {
      // Drop buckets that have refilled completely: forgetting them changes
      // nothing.
      absl::erase_if(s.buckets, [&](const auto& kv) {
        const Bucket& b = kv.second;
        return b.tokens + (now_ms - b.updated_ms) / 1000.0 * o_.rate_per_second >= o_.burst;
      });
    }
    auto [it, inserted] = s.buckets.try_emplace(key);
    Bucket& b = it->second;
    if (inserted) {
      b.tokens = o_.burst;
    } else if (now_ms > b.updated_ms) {
      b.tokens = std::min(o_.burst, b.tokens + (now_ms - b.updated_ms) / 1000.0 * o_.rate_per_second);
    }
    b.updated_ms = std::max(b.updated_ms, now_ms);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return absl::OkStatus();
    }
    wait_s = (1 - b.tokens) / o_.rate_per_second;
  }
  const int64_t wait_ms = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(wait_s * 1000)));
  absl::Status st = absl::ResourceExhaustedError(
      absl::StrCat("rate limit: this device may make ", o_.rate_per_second, " calls per second (burst ", o_.burst,
                   "); retry after ", wait_ms, " ms"));
  v1::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(wait_ms / 1000);
  info.mutable_retry_delay()->set_nanos(static_cast<int32_t>((wait_ms % 1000) * 1000000));
  st.SetPayload(kRetryInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return st;
}

}  // namespace parley::core
