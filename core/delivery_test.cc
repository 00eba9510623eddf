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

class OfferSub : public FakeSub {
 public:
  void Offer(uint64_t id, const std::shared_ptr<const std::string>& payload) override {
    offered.emplace_back(id, *payload);
  }
  std::vector<std::pair<uint64_t, std::string>> offered;
};

TEST(DeliveryHub, OfferHandsEachEntryToItsDeviceInOrder) {
  DeliveryHub hub;
  auto a = std::make_shared<OfferSub>(), b = std::make_shared<OfferSub>();
  auto plain = std::make_shared<FakeSub>();  // default Offer: a Notify
  hub.Register({"a", 1}, a);
  hub.Register({"b", 1}, b);
  hub.Register({"c", 1}, plain);
  const std::vector<storage::QueueTarget> targets = {{"a", 1}, {"x", 9}, {"b", 1}, {"a", 1}, {"c", 1}};
  auto shared = std::make_shared<const std::string>("p");
  std::vector<storage::QueuedEntry> queued = {
      {.target = 0, .delivery_id = 7, .payload = shared},
      // target 1: its device no longer exists (no entry), nobody listens
      {.target = 2, .delivery_id = 3, .payload = std::make_shared<const std::string>("only b")},
      {.target = 3, .delivery_id = 8, .payload = shared},
      {.target = 4, .delivery_id = 1, .payload = shared},
      {.target = 99, .delivery_id = 1, .payload = shared},  // out of range: ignored
  };
  hub.Offer(targets, queued);
  ASSERT_EQ(a->offered.size(), 2u);
  EXPECT_EQ(a->offered[0], std::make_pair(uint64_t{7}, std::string("p")));
  EXPECT_EQ(a->offered[1], std::make_pair(uint64_t{8}, std::string("p")));
  ASSERT_EQ(b->offered.size(), 1u);
  EXPECT_EQ(b->offered[0].second, "only b");
  EXPECT_EQ(plain->notified, 1);
  EXPECT_EQ(a->notified, 0);
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
