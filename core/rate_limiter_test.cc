// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/rate_limiter.h"

#include <gtest/gtest.h>

#include "parley/v1/common.pb.h"

namespace parley::core {
namespace {

TEST(RateLimiter, BurstThenRefillAtRate) {
  RateLimiter rl({.rate_per_second = 10, .burst = 3});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(rl.Take("a/1", 1000).ok());
  absl::Status s = rl.Take("a/1", 1000);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("retry after 100 ms"), absl::string_view::npos) << s;
  auto payload = s.GetPayload(kRetryInfoTypeUrl);
  ASSERT_TRUE(payload.has_value());
  v1::RetryInfo info;
  ASSERT_TRUE(info.ParseFromString(std::string(*payload)));
  EXPECT_EQ(info.retry_delay().seconds(), 0);
  EXPECT_EQ(info.retry_delay().nanos(), 100 * 1000000);
  // Other devices are independent.
  EXPECT_TRUE(rl.Take("a/2", 1000).ok());
  // 100 ms later one token is back, not two.
  EXPECT_TRUE(rl.Take("a/1", 1100).ok());
  EXPECT_FALSE(rl.Take("a/1", 1100).ok());
  // A clock step backwards never adds tokens.
  EXPECT_FALSE(rl.Take("a/1", 500).ok());
  // Refill is capped at the burst.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(rl.Take("a/1", 100000).ok());
  EXPECT_FALSE(rl.Take("a/1", 100000).ok());
}

TEST(RateLimiter, ZeroRateDisables) {
  RateLimiter rl({.rate_per_second = 0, .burst = 1});
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(rl.Take("a/1", 0).ok());
}

TEST(RateLimiter, PrunesIdleBucketsWithoutForgettingBusyOnes) {
  RateLimiter rl({.rate_per_second = 1, .burst = 1});
  EXPECT_TRUE(rl.Take("busy", 0).ok());
  for (int i = 0; i < 100000; ++i) (void)rl.Take("idle" + std::to_string(i), 0);
  // "busy" is still empty at t=0 (not pruned: it has not refilled).
  EXPECT_FALSE(rl.Take("busy", 0).ok());
}

}  // namespace
}  // namespace parley::core
