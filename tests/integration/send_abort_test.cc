// A Send that fails after the conversation's seq is known stores nothing:
// the server's franking stamp is made inside the store's Append (it covers
// the seq), and a stamp that cannot be made aborts that Append, so no
// recipient ever receives an E2EE message without its stamp, and the
// client's retry is a first send rather than a "duplicate" of nothing.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// A real ParleyService on RocksDB in a temp directory, the signal preset
// (direct conversations are E2EE), real Signal keys for the recipient, and
// a franker whose key is too short to stamp with (the only way to make
// stamping fail: parleyd refuses such a key file at start).
#include <memory>
#include <string>

#include "core/delivery.h"
#include "core/franker.h"
#include "core/key_directory.h"
#include "core/service.h"
#include "gtest/gtest.h"
#include "tests/support/service_parts.h"
#include "tests/support/signal_keys.h"

namespace parley {
namespace {

using ::parley::testing::signal_keys::KeyMaker;

constexpr int64_t kNow = 1'800'000'000'000;

class SendAbortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto parts = testing::MakeServiceParts("signal", [] { return kNow; });
    ASSERT_TRUE(parts.ok()) << parts.status();
    parts_ = *std::move(parts);
    storage_ = parts_->storage.get();
    bad_franker_ = core::Franker::ForKey("too short");
    good_franker_ = core::Franker::ForKey(std::string(32, 'k'));
  }

  void TearDown() override {
    service_.reset();
    parts_.reset();
  }

  void StartService(const core::Franker* franker) {
    core::ParleyService::Deps deps = parts_->Deps([] { return kNow; });
    deps.hub = &hub_;
    deps.franker = franker;
    service_ = std::make_unique<core::ParleyService>(deps);
  }

  core::Caller Account(const std::string& name) {
    return testing::CreateTestAccount(*service_, name);
  }

  uint64_t LastSeq(const std::string& conversation_id) {
    auto c = storage_->conversations().GetConversation(conversation_id);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? c->last_seq : 0;
  }

  std::unique_ptr<testing::ServiceParts> parts_;
  storage::Storage* storage_ = nullptr;  // parts_'s
  std::unique_ptr<core::Franker> bad_franker_, good_franker_;
  core::DeliveryHub hub_;
  std::unique_ptr<core::ParleyService> service_;
};

TEST_F(SendAbortTest, AStampThatCannotBeMadeStoresNothing) {
  StartService(bad_franker_.get());
  const core::Caller alice = Account("alice"), bob = Account("bob");
  KeyMaker keys;
  KeyMaker::Install bob_install(&keys, 77);
  core::KeyDirectory directory(storage_);
  ASSERT_TRUE(
      directory.Upload(bob.account_id, bob.device_id, bob_install.Upload(1))
          .ok());
  v1::CreateDirectRequest d;
  d.set_peer_username("bob");
  auto direct = service_->CreateDirect(alice, d);
  ASSERT_TRUE(direct.ok()) << direct.status();
  ASSERT_EQ(direct->conversation().security().mode(), v1::SECURITY_MODE_E2EE);
  const std::string conv = direct->conversation().conversation_id();
  const uint64_t seq_before = LastSeq(conv);
  auto bob_last_id =
      storage_->messages().LastDeliveryId(bob.account_id, bob.device_id);
  ASSERT_TRUE(bob_last_id.ok());

  v1::SendRequest req;
  req.set_conversation_id(conv);
  req.set_client_message_id("msg-1");
  auto* enc = req.mutable_body()->mutable_encrypted();
  enc->set_franking_commitment(std::string(32, 'c'));
  auto* ct = enc->add_ciphertexts();
  ct->set_account_id(bob.account_id);
  ct->set_device_id(bob.device_id);
  ct->set_registration_id(77);
  ct->set_type(3);
  ct->set_ciphertext("opaque");

  auto sent = service_->Send(alice, req);
  ASSERT_EQ(sent.status().code(), absl::StatusCode::kInternal) << sent.status();
  EXPECT_NE(sent.status().message().find("franking stamp"), std::string::npos)
      << sent.status();
  // Nothing was stored: no seq used, nothing queued for bob.
  EXPECT_EQ(LastSeq(conv), seq_before);
  auto queue = storage_->messages().ReadQueue(bob.account_id, bob.device_id,
                                              *bob_last_id, 100);
  ASSERT_TRUE(queue.ok()) << queue.status();
  EXPECT_TRUE(queue->empty());

  // The client's retry, once the server can stamp, is a first send: stored
  // with the next seq, stamped, queued for bob.
  StartService(good_franker_.get());
  sent = service_->Send(alice, req);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_FALSE(sent->duplicate());
  EXPECT_EQ(sent->seq(), seq_before + 1);
  queue = storage_->messages().ReadQueue(bob.account_id, bob.device_id,
                                         *bob_last_id, 100);
  ASSERT_TRUE(queue.ok()) << queue.status();
  ASSERT_EQ(queue->size(), 1u);
  v1::Message m;
  ASSERT_TRUE(m.ParseFromString(queue->at(0).payload));
  EXPECT_EQ(m.seq(), seq_before + 1);
  EXPECT_EQ(m.franking_stamp().size(), 32u);
}

}  // namespace
}  // namespace parley
