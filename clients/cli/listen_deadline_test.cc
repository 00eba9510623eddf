// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/cli/listen_deadline.h"

#include "gtest/gtest.h"

namespace parley {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

absl::Time At(double seconds) { return kStart + absl::Seconds(seconds); }

TEST(ListenDeadlineTest, NoLimitNeverStops) {
  ListenDeadline d(absl::InfiniteDuration(), kStart);
  EXPECT_EQ(d.Left(At(1e6)), absl::InfiniteDuration());
  d.CaughtUp(At(1));
  EXPECT_EQ(d.Left(At(1e6)), absl::InfiniteDuration());
}

TEST(ListenDeadlineTest, IdleTimeCountsFromCatchingUp) {
  ListenDeadline d(absl::Seconds(3), kStart);
  // Connecting and catching up slowly: 5 s pass without the listen ending.
  EXPECT_GT(d.Left(At(5)), absl::ZeroDuration());
  d.Activity(At(6));  // a queued message
  d.CaughtUp(At(7));
  EXPECT_EQ(d.Left(At(7)), absl::Seconds(3));
  EXPECT_EQ(d.Left(At(9.5)), absl::Seconds(0.5));
  EXPECT_LE(d.Left(At(10)), absl::ZeroDuration());
}

TEST(ListenDeadlineTest, ActivityAfterCatchingUpRestartsTheIdleTime) {
  ListenDeadline d(absl::Seconds(2), kStart);
  d.CaughtUp(At(0.1));
  d.Activity(At(1.5));
  EXPECT_EQ(d.Left(At(3)), absl::Seconds(0.5));
  EXPECT_LE(d.Left(At(3.5)), absl::ZeroDuration());
}

TEST(ListenDeadlineTest, CatchingUpIsBounded) {
  ListenDeadline d(absl::Seconds(1), kStart, absl::Seconds(30));
  EXPECT_EQ(d.Left(At(10)), absl::Seconds(20));
  EXPECT_LE(d.Left(At(30)), absl::ZeroDuration());
  // Messages still arriving near the bound extend it by the idle time.
  ListenDeadline busy(absl::Seconds(1), kStart, absl::Seconds(30));
  busy.Activity(At(29.5));
  EXPECT_EQ(busy.Left(At(30.25)), absl::Seconds(0.25));
}

TEST(ListenDeadlineTest, AnIdleLimitLongerThanCatchingUpStillApplies) {
  ListenDeadline d(absl::Seconds(60), kStart, absl::Seconds(30));
  EXPECT_EQ(d.Left(At(30)), absl::Seconds(30));
  d.CaughtUp(At(40));
  EXPECT_EQ(d.Left(At(40)), absl::Seconds(60));
}

}  // namespace
}  // namespace parley
