// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/delivery.h"

#include "gtest/gtest.h"

namespace parley::core {
namespace {

class FakeSub : public Subscriber {
 public:
  void Notify() override { ++notified; }
  void Close(const absl::Status& s) override { closed.push_back(s); }
  int notified = 0;
  std::vector<absl::Status> closed;
};

TEST(DeliveryHub, NotifiesOnlyTargets) {
  DeliveryHub hub;
  auto a = std::make_shared<FakeSub>(), b = std::make_shared<FakeSub>();
  hub.Register({"a", 1}, a);
  hub.Register({"b", 1}, b);
  hub.Notify({{"a", 1}, {"a", 2}});
  EXPECT_EQ(a->notified, 1);
  EXPECT_EQ(b->notified, 0);
  EXPECT_EQ(hub.size(), 2u);
}

TEST(DeliveryHub, NewStreamReplacesOld) {
  DeliveryHub hub;
  auto first = std::make_shared<FakeSub>(), second = std::make_shared<FakeSub>();
  hub.Register({"a", 1}, first);
  hub.Register({"a", 1}, second);
  ASSERT_EQ(first->closed.size(), 1u);
  EXPECT_EQ(first->closed[0].code(), absl::StatusCode::kAborted);
  // The old stream unregistering late must not remove the new one.
  hub.Unregister({"a", 1}, first.get());
  hub.Notify({{"a", 1}});
  EXPECT_EQ(second->notified, 1);
  EXPECT_EQ(first->notified, 0);
}

TEST(DeliveryHub, CloseAllRefusesLaterRegistrations) {
  DeliveryHub hub;
  auto a = std::make_shared<FakeSub>();
  hub.Register({"a", 1}, a);
  hub.CloseAll(absl::UnavailableError("shutdown"));
  ASSERT_EQ(a->closed.size(), 1u);
  auto late = std::make_shared<FakeSub>();
  hub.Register({"b", 1}, late);
  ASSERT_EQ(late->closed.size(), 1u);
  EXPECT_EQ(late->closed[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(hub.size(), 0u);
}

TEST(DeliveryHub, CloseOneDevice) {
  DeliveryHub hub;
  auto a = std::make_shared<FakeSub>();
  hub.Register({"a", 1}, a);
  hub.Close({"a", 1}, absl::UnauthenticatedError("device removed"));
  ASSERT_EQ(a->closed.size(), 1u);
  hub.Notify({{"a", 1}});
  EXPECT_EQ(a->notified, 0);
}

}  // namespace
}  // namespace parley::core
