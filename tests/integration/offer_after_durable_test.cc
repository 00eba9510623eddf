// A Send's message reaches a connected recipient's stream only once the store
// reports it durable (Storage::WhenDurable), never before: with parleyd's
// batched log writes (RocksDbOptions::batch_wal_writes) a message is in the
// database before its log record is in the file, and a recipient that got it
// then could hold a message a kill -9 of the server loses.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// A real ParleyService on RocksDB (tiktok preset: transport), a DeliveryHub
// with a recording subscriber for the recipient's device, and the store
// behind a wrapper that holds WhenDurable's callbacks until the test lets
// them run.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/delivery.h"
#include "core/service.h"
#include "gtest/gtest.h"
#include "tests/support/service_parts.h"

namespace parley {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

// Forwards to a real store; WhenDurable's callbacks wait for Release().
class HeldDurability : public storage::Storage {
 public:
  explicit HeldDurability(storage::Storage* s) : s_(s) {}
  storage::AccountStore& accounts() override { return s_->accounts(); }
  storage::ConversationStore& conversations() override { return s_->conversations(); }
  storage::MessageStore& messages() override { return s_->messages(); }
  storage::PolicyStore& policies() override { return s_->policies(); }
  storage::AuditStore& audit() override { return s_->audit(); }
  storage::AdminTokenStore& admin_tokens() override { return s_->admin_tokens(); }
  storage::KeyStore& keys() override { return s_->keys(); }
  storage::SafetyStore& safety() override { return s_->safety(); }
  absl::Status Flush() override { return s_->Flush(); }
  absl::Status Compact() override { return s_->Compact(); }
  storage::StorageStats Stats() override { return s_->Stats(); }
  void WhenDurable(std::function<void(absl::Status)> done) override {
    if (!hold_) {
      s_->WhenDurable(std::move(done));
      return;
    }
    held_.push_back(std::move(done));
  }
  void Hold() { hold_ = true; }
  // Runs the held callbacks in order with `st`, and stops holding.
  void Release(const absl::Status& st) {
    hold_ = false;
    std::vector<std::function<void(absl::Status)>> held = std::move(held_);
    held_.clear();
    for (auto& f : held) f(st);
  }
  size_t held() const { return held_.size(); }

 private:
  storage::Storage* s_;
  bool hold_ = false;  // the test's thread only
  std::vector<std::function<void(absl::Status)>> held_;
};

class Recorder : public core::Subscriber {
 public:
  void Notify() override {}
  void Offer(uint64_t delivery_id, const std::shared_ptr<const std::string>& payload) override {
    absl::MutexLock lock(&mu_);
    offered_.push_back(delivery_id);
    payloads_.push_back(*payload);
  }
  void Close(const absl::Status&) override {}
  std::vector<uint64_t> offered() const {
    absl::MutexLock lock(&mu_);
    return offered_;
  }
  std::vector<std::string> payloads() const {
    absl::MutexLock lock(&mu_);
    return payloads_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<uint64_t> offered_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> payloads_ ABSL_GUARDED_BY(mu_);
};

class OfferAfterDurableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto parts = testing::MakeServiceParts("tiktok", [] { return kNow; });
    ASSERT_TRUE(parts.ok()) << parts.status();
    parts_ = *std::move(parts);
    held_ = std::make_unique<HeldDurability>(parts_->storage.get());
    core::ParleyService::Deps deps = parts_->Deps([] { return kNow; });
    deps.storage = held_.get();
    deps.hub = &hub_;
    service_ = std::make_unique<core::ParleyService>(deps);
    alice_ = Account("alice");
    bob_ = Account("bob");
    v1::CreateDirectRequest d;
    d.set_peer_username("bob");
    auto direct = service_->CreateDirect(alice_, d);
    ASSERT_TRUE(direct.ok()) << direct.status();
    ASSERT_EQ(direct->conversation().security().mode(), v1::SECURITY_MODE_TRANSPORT);
    conv_ = direct->conversation().conversation_id();
    hub_.Register({bob_.account_id, bob_.device_id}, recorder_);
  }
  void TearDown() override {
    hub_.CloseAll(absl::CancelledError("test over"));
    service_.reset();
    held_.reset();
    parts_.reset();
  }

  core::Caller Account(const std::string& name) { return testing::CreateTestAccount(*service_, name); }

  absl::StatusOr<v1::SendResponse> Send(const std::string& id, const std::string& text) {
    v1::SendRequest req;
    req.set_conversation_id(conv_);
    req.set_client_message_id(id);
    req.mutable_body()->mutable_plain()->set_content(text);
    return service_->Send(alice_, req);
  }

  std::unique_ptr<testing::ServiceParts> parts_;
  std::unique_ptr<HeldDurability> held_;
  core::DeliveryHub hub_;
  std::shared_ptr<Recorder> recorder_ = std::make_shared<Recorder>();
  std::unique_ptr<core::ParleyService> service_;
  core::Caller alice_, bob_;
  std::string conv_;
};

TEST_F(OfferAfterDurableTest, TheRecipientGetsAMessageOnlyOnceItIsDurable) {
  held_->Hold();
  auto first = Send("m1", "first");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Send("m2", "second");
  ASSERT_TRUE(second.ok()) << second.status();
  // Stored, but not durable yet: nothing offered to bob's stream.
  EXPECT_EQ(held_->held(), 2u);
  EXPECT_TRUE(recorder_->offered().empty());
  // Durable: both offered, in order.
  held_->Release(absl::OkStatus());
  ASSERT_EQ(recorder_->offered().size(), 2u);
  EXPECT_LT(recorder_->offered()[0], recorder_->offered()[1]);
  v1::Message m;
  ASSERT_TRUE(m.ParseFromString(recorder_->payloads()[1]));
  EXPECT_EQ(m.seq(), second->seq());
  EXPECT_EQ(m.plain().content(), "second");
  // Without holding, the store's own WhenDurable decides (RocksDB, batched
  // log writes): the offer arrives once the committer has written the log.
  auto third = Send("m3", "third");
  ASSERT_TRUE(third.ok()) << third.status();
  for (int i = 0; i < 2000 && recorder_->offered().size() < 3; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(recorder_->offered().size(), 3u);
}

TEST_F(OfferAfterDurableTest, AMessageWhoseLogWriteFailedIsNotOffered) {
  held_->Hold();
  ASSERT_TRUE(Send("m1", "lost?").ok());
  held_->Release(absl::UnavailableError("log write failed"));
  EXPECT_TRUE(recorder_->offered().empty());
  // It is in bob's queue all the same: his stream reads it from there (its
  // gap timer or its next read), as after any failed offer.
  auto queue = parts_->storage->messages().ReadQueue(bob_.account_id, bob_.device_id, 0, 10);
  ASSERT_TRUE(queue.ok()) << queue.status();
  bool found = false;
  for (const auto& e : *queue) {
    v1::Message m;
    ASSERT_TRUE(m.ParseFromString(e.payload));
    if (m.plain().content() == "lost?") found = true;
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace parley
