// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/finisher.h"

#include <atomic>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace parley::core {
namespace {

TEST(FinisherTest, RunsEveryCompletionOnItsThreadInPostOrderPerPoster) {
  constexpr int kPosters = 4;
  constexpr int kEach = 2000;
  absl::Mutex mu;
  std::map<int, std::vector<int>> seen;  // poster -> values in run order
  std::atomic<int> off_thread{0};
  {
    Finisher f;
    std::vector<std::thread> posters;
    for (int p = 0; p < kPosters; ++p) {
      posters.emplace_back([&, p] {
        for (int i = 0; i < kEach; ++i) {
          f.Post([&, p, i] {
            if (!f.OnFinisherThread()) off_thread.fetch_add(1);
            absl::MutexLock lock(&mu);
            seen[p].push_back(i);
          });
        }
      });
    }
    for (auto& t : posters) t.join();
    EXPECT_FALSE(f.OnFinisherThread());
  }  // the destructor runs what is still queued
  EXPECT_EQ(off_thread.load(), 0);
  ASSERT_EQ(seen.size(), size_t{kPosters});
  for (const auto& [p, values] : seen) {
    ASSERT_EQ(values.size(), size_t{kEach}) << "poster " << p;
    for (int i = 0; i < kEach; ++i) ASSERT_EQ(values[i], i) << "poster " << p;
  }
}

TEST(FinisherTest, DestructorRunsWhatIsQueuedBehindABusyCompletion) {
  absl::Notification release;
  std::atomic<int> ran{0};
  {
    Finisher f;
    absl::Notification started;
    f.Post([&] {
      started.Notify();
      release.WaitForNotification();
      ran.fetch_add(1);
    });
    started.WaitForNotification();
    for (int i = 0; i < 100; ++i) f.Post([&] { ran.fetch_add(1); });
    EXPECT_EQ(ran.load(), 0);
    std::thread releaser([&] { release.Notify(); });
    releaser.join();
  }
  EXPECT_EQ(ran.load(), 101);
}

TEST(FinisherTest, ACompletionMayPostAnother) {
  absl::Notification second;
  Finisher f;
  f.Post([&] { f.Post([&] { second.Notify(); }); });
  EXPECT_TRUE(second.WaitForNotificationWithTimeout(absl::Seconds(30)));
}

}  // namespace
}  // namespace parley::core
