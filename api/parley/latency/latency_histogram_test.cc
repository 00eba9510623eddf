// SPDX-License-Identifier: GPL-3.0-or-later
#include "api/parley/latency/latency_histogram.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::latency {
namespace {

using ::testing::HasSubstr;

TEST(LatencyHistogramTest, BoundsAreEightPerDoublingFrom16usTo33s) {
  const auto& b = LatencyHistogram::Bounds();
  ASSERT_EQ(b.size(), 169u);
  EXPECT_EQ(b.front(), 16u);
  EXPECT_EQ(b[8], 32u);
  EXPECT_EQ(b[80], 16u << 10);  // 2^14 us
  EXPECT_EQ(b.back(), 1u << 25);
  for (size_t i = 1; i < b.size(); ++i) {
    EXPECT_GT(b[i], b[i - 1]) << i;
    // About 9% apart (2^(1/8) = 1.0905, and the rounding of small bounds).
    if (b[i] >= 64) {
      EXPECT_LE(b[i], b[i - 1] * 1.1) << i;
    }
  }
}

TEST(LatencyHistogramTest, RecordsIntoTheBucketOfTheBoundAtOrAbove) {
  LatencyHistogram h;
  h.Record(absl::Microseconds(-5));  // counts as 0: the first bucket
  h.Record(absl::Microseconds(16));  // exactly the first bound
  h.Record(absl::Microseconds(17));  // the second bucket (bound 17)
  h.Record(absl::Microseconds(18));  // the third (bound 19)
  h.Record(absl::Milliseconds(10));  // 10,000 us: bound 10,624 (2^13.375)
  h.Record(absl::Seconds(40));       // above the last bound
  v1::LatencyHistogram p;
  h.ToProto(&p);
  ASSERT_EQ(p.upper_bounds_us_size(), 169);
  ASSERT_EQ(p.counts_size(), 170);
  EXPECT_EQ(p.counts(0), 2u);
  EXPECT_EQ(p.upper_bounds_us(1), 17u);
  EXPECT_EQ(p.counts(1), 1u);
  EXPECT_EQ(p.counts(2), 1u);
  EXPECT_EQ(p.counts(169), 1u);
  uint64_t total = 0;
  int ten_ms_bucket = -1;
  for (int i = 0; i < p.counts_size(); ++i) {
    total += p.counts(i);
    if (i < 169 && i > 0 && p.upper_bounds_us(i) >= 10000 &&
        p.upper_bounds_us(i - 1) < 10000) {
      ten_ms_bucket = i;
    }
  }
  EXPECT_EQ(total, 6u);
  ASSERT_GE(ten_ms_bucket, 0);
  EXPECT_EQ(p.counts(ten_ms_bucket), 1u);
  EXPECT_EQ(p.upper_bounds_us(ten_ms_bucket), 10624u);
}

TEST(LatencyHistogramTest, ConcurrentRecordsAllCount) {
  LatencyHistogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < 10000; ++i) h.Record(absl::Microseconds(i + t));
    });
  }
  for (auto& t : threads) t.join();
  v1::LatencyHistogram p;
  h.ToProto(&p);
  auto s = Summarize(p, nullptr);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->count, 40000u);
}

TEST(LatencyHistogramTest, PercentilesAreTheBoundsOfTheirBuckets) {
  LatencyHistogram h;
  v1::LatencyHistogram empty;
  h.ToProto(&empty);
  auto none = Summarize(empty, nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->count, 0u);
  EXPECT_EQ(none->p99_ms, -1);

  // 980 at 1 ms, 15 at 20 ms, 5 at 50 s (above the last bound).
  for (int i = 0; i < 980; ++i) h.Record(absl::Milliseconds(1));
  for (int i = 0; i < 15; ++i) h.Record(absl::Milliseconds(20));
  for (int i = 0; i < 5; ++i) h.Record(absl::Seconds(50));
  v1::LatencyHistogram p;
  h.ToProto(&p);
  auto s = Summarize(p, nullptr);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->count, 1000u);
  EXPECT_DOUBLE_EQ(s->p50_ms, 1.024);   // 1,000 us falls under 2^10 = 1,024
  EXPECT_DOUBLE_EQ(s->p99_ms, 21.247);  // rank 990: 2^14.375 us
  EXPECT_EQ(s->p999_ms, -1);            // rank 999: above the last bound
}

TEST(LatencyHistogramTest, TheDifferenceOfTwoReadsIsTheTimeBetween) {
  LatencyHistogram h;
  for (int i = 0; i < 100; ++i) h.Record(absl::Milliseconds(30));
  v1::LatencyHistogram start;
  h.ToProto(&start);
  for (int i = 0; i < 10; ++i) h.Record(absl::Microseconds(500));
  v1::LatencyHistogram end;
  h.ToProto(&end);
  auto all = Summarize(end, nullptr);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->count, 110u);
  EXPECT_GT(all->p50_ms, 29);
  auto between = Summarize(end, &start);
  ASSERT_TRUE(between.ok()) << between.status();
  EXPECT_EQ(between->count, 10u);
  EXPECT_DOUBLE_EQ(between->p99_ms, 0.512);  // 2^9 us
}

TEST(LatencyHistogramTest, MalformedOrMismatchedReadsAreRefused) {
  LatencyHistogram h;
  h.Record(absl::Milliseconds(1));
  v1::LatencyHistogram good;
  h.ToProto(&good);

  v1::LatencyHistogram short_counts = good;
  short_counts.mutable_counts()->RemoveLast();
  auto s1 = Summarize(short_counts, nullptr);
  EXPECT_EQ(s1.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s1.status().message(),
              HasSubstr("(end): 169 counts for 169 bounds"));

  v1::LatencyHistogram unsorted = good;
  unsorted.set_upper_bounds_us(5, 1);
  auto s2 = Summarize(good, &unsorted);
  EXPECT_THAT(s2.status().message(),
              HasSubstr("(start): upper_bounds_us[5] is not above"));

  v1::LatencyHistogram other = good;
  other.set_upper_bounds_us(168, (1u << 25) + 1);
  EXPECT_THAT(Summarize(good, &other).status().message(),
              HasSubstr("different bucket bounds"));

  // A later read as `start`: a count fell.
  h.Record(absl::Milliseconds(1));
  v1::LatencyHistogram later;
  h.ToProto(&later);
  EXPECT_THAT(Summarize(good, &later).status().message(),
              HasSubstr("fell between the reads"));
}

}  // namespace
}  // namespace parley::latency
