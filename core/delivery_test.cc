// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/delivery.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
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

std::shared_ptr<const std::string> P(uint64_t id) {
  return std::make_shared<const std::string>("m" + std::to_string(id));
}

std::vector<uint64_t> Ids(const OfferOrder::Result& r) {
  std::vector<uint64_t> ids;
  for (const auto& e : r.ready) {
    EXPECT_EQ(*e.payload, "m" + std::to_string(e.delivery_id));
    ids.push_back(e.delivery_id);
  }
  return ids;
}

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(OfferOrder, InOrderOffersAreReadyAtOnce) {
  OfferOrder o(8);
  o.AfterRead(4);  // a storage read handed out 1-4
  EXPECT_THAT(Ids(o.Offer(5, P(5), 64)), ElementsAre(5u));
  EXPECT_THAT(Ids(o.Offer(6, P(6), 64)), ElementsAre(6u));
  EXPECT_EQ(o.last(), 6u);
  EXPECT_FALSE(o.has_held());
}

TEST(OfferOrder, LaterOffersWaitForTheMissingOneThenGoInOrder) {
  OfferOrder o(8);
  o.AfterRead(10);
  OfferOrder::Result r = o.Offer(13, P(13), 64);
  EXPECT_THAT(Ids(r), IsEmpty());
  EXPECT_FALSE(r.read_storage);
  EXPECT_THAT(Ids(o.Offer(12, P(12), 64)), IsEmpty());
  EXPECT_THAT(Ids(o.Offer(15, P(15), 64)), IsEmpty());
  EXPECT_TRUE(o.has_held());
  EXPECT_EQ(o.last(), 10u);
  // 11 fills the first gap: 11, 12, 13 go; 15 waits for 14.
  EXPECT_THAT(Ids(o.Offer(11, P(11), 64)), ElementsAre(11u, 12u, 13u));
  EXPECT_TRUE(o.has_held());
  EXPECT_THAT(Ids(o.Offer(14, P(14), 64)), ElementsAre(14u, 15u));
  EXPECT_FALSE(o.has_held());
  EXPECT_EQ(o.last(), 15u);
}

TEST(OfferOrder, StaleAndRepeatedOffersAreIgnored) {
  OfferOrder o(8);
  o.AfterRead(10);
  EXPECT_THAT(Ids(o.Offer(7, P(7), 64)), IsEmpty());
  EXPECT_THAT(Ids(o.Offer(10, P(10), 64)), IsEmpty());
  EXPECT_FALSE(o.has_held());
  EXPECT_THAT(Ids(o.Offer(12, P(12), 64)), IsEmpty());
  EXPECT_THAT(Ids(o.Offer(12, P(12), 64)), IsEmpty());  // held once
  EXPECT_THAT(Ids(o.Offer(11, P(11), 64)), ElementsAre(11u, 12u));
  EXPECT_THAT(Ids(o.Offer(11, P(11), 64)), IsEmpty());
}

TEST(OfferOrder, TooManyHeldMeansReadStorage) {
  OfferOrder o(2);
  o.AfterRead(1);
  EXPECT_FALSE(o.Offer(3, P(3), 64).read_storage);
  EXPECT_FALSE(o.Offer(4, P(4), 64).read_storage);
  OfferOrder::Result r = o.Offer(5, P(5), 64);
  EXPECT_TRUE(r.read_storage);
  EXPECT_THAT(Ids(r), IsEmpty());
  EXPECT_FALSE(o.has_held());  // dropped: the read covers them
  EXPECT_EQ(o.last(), 1u);
}

TEST(OfferOrder, NoRoomMeansReadStorageAndNothingIsSkipped) {
  OfferOrder o(8);
  o.AfterRead(1);
  EXPECT_TRUE(o.Offer(2, P(2), 0).read_storage);
  EXPECT_EQ(o.last(), 1u);  // 2 was not handed out: the read starts at 2
  // Room for two of four in order: two go, the rest is left to the read.
  o.Offer(4, P(4), 64);
  o.Offer(5, P(5), 64);
  o.Offer(3, P(3), 64);
  EXPECT_EQ(o.last(), 1u);
  OfferOrder::Result r = o.Offer(2, P(2), 2);
  EXPECT_THAT(Ids(r), ElementsAre(2u, 3u));
  EXPECT_TRUE(r.read_storage);
  EXPECT_EQ(o.last(), 3u);
  EXPECT_FALSE(o.has_held());
}

TEST(OfferOrder, AStorageReadDropsWhatIsHeldAndMovesOn) {
  OfferOrder o(8);
  o.AfterRead(1);
  o.Offer(3, P(3), 64);
  o.Offer(4, P(4), 64);
  o.DropHeld();  // the gap timer fired: the stream reads storage
  EXPECT_FALSE(o.has_held());
  o.AfterRead(4);  // which returned 2-4
  EXPECT_EQ(o.last(), 4u);
  EXPECT_THAT(Ids(o.Offer(3, P(3), 64)), IsEmpty());
  EXPECT_THAT(Ids(o.Offer(5, P(5), 64)), ElementsAre(5u));
  o.AfterRead(0);  // an empty read does not move the order back
  EXPECT_EQ(o.last(), 5u);
}

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
