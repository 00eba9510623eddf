// Unit tests of the E2EE pieces of the SDK: the inner envelope format, the
// DeviceMismatch parsing, and SignalEngine against an in-memory key
// directory (no server, no gRPC).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "clients/sdk/client.h"
#include "clients/sdk/e2ee_format.h"
#include "clients/sdk/signal_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parley/v1/parley.pb.h"

namespace parley {
namespace {

using ::testing::HasSubstr;

// ----------------------------------------------------------- inner format

TEST(InnerEnvelopeTest, RoundTripIsPaddedTo64Bytes) {
  for (size_t len : {0, 1, 40, 63, 64, 200, 5000}) {
    InnerEnvelope e;
    e.conversation_id = "c_0123456789abcdef01234567";
    e.content_type = "text/plain";
    e.content = std::string(len, 'x');
    e.sender_key_distribution = len % 2 ? "skdm-bytes" : "";
    e.franking_key = len == 200 ? std::string(32, '\x07') : "";
    const std::string bytes = EncodeInnerEnvelope(e);
    EXPECT_EQ(bytes.size() % InnerEnvelope::kPadBlock, 0u) << len;
    auto d = DecodeInnerEnvelope(bytes);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->version, 1u);
    EXPECT_EQ(d->conversation_id, e.conversation_id);
    EXPECT_EQ(d->content_type, e.content_type);
    EXPECT_EQ(d->content, e.content);
    EXPECT_EQ(d->sender_key_distribution, e.sender_key_distribution);
    EXPECT_EQ(d->franking_key, e.franking_key);
  }
}

TEST(InnerEnvelopeTest, IsProtobufCompatibleAndSkipsUnknownFields) {
  InnerEnvelope e;
  e.conversation_id = "c_1";
  e.content = "hi";
  std::string bytes = EncodeInnerEnvelope(e);
  // A later version appends fields 7 (varint), 8 (bytes) and 9 (fixed64).
  bytes += std::string("\x38\x96\x01", 3);
  bytes += std::string("\x42\x03" "abc", 5);
  bytes += std::string("\x49" "12345678", 9);
  auto d = DecodeInnerEnvelope(bytes);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->content, "hi");
  // google.protobuf reads it too: BacklogDrained's field 1 is a uint64.
  v1::BacklogDrained as_proto;
  ASSERT_TRUE(as_proto.ParseFromString(bytes));
  EXPECT_EQ(as_proto.last_delivery_id(), 1u);
}

TEST(InnerEnvelopeTest, RejectsMalformed) {
  EXPECT_FALSE(DecodeInnerEnvelope("").ok());  // no version / conversation
  EXPECT_FALSE(DecodeInnerEnvelope("\x08").ok());  // truncated varint
  InnerEnvelope e;
  e.conversation_id = "c_1";
  e.content = "hello";
  std::string bytes = EncodeInnerEnvelope(e);
  EXPECT_FALSE(DecodeInnerEnvelope(bytes.substr(0, 8)).ok());  // truncated
  EXPECT_FALSE(DecodeInnerEnvelope(std::string("\x08\x01", 2)).ok());
  EXPECT_FALSE(DecodeInnerEnvelope(std::string("\x0f\x01", 2)).ok());
}

TEST(DeviceMismatchTest, ParsesRpcStatusDetails) {
  v1::DeviceMismatch m;
  auto* x = m.add_missing();
  x->set_account_id("a_bob");
  x->set_device_id(2);
  x = m.add_stale();
  x->set_account_id("a_carol");
  x->set_device_id(1);
  v1::RpcStatus status;
  status.set_code(9);
  status.set_message("mismatch");
  auto* other = status.add_details();
  other->set_type_url("type.googleapis.com/google.rpc.DebugInfo");
  other->set_value("zzz");
  auto* any = status.add_details();
  any->set_type_url("type.googleapis.com/parley.v1.DeviceMismatch");
  any->set_value(m.SerializeAsString());
  auto parsed = ParseDeviceMismatch(status.SerializeAsString());
  ASSERT_TRUE(parsed.has_value());
  ASSERT_EQ(parsed->missing_size(), 1);
  EXPECT_EQ(parsed->missing(0).account_id(), "a_bob");
  EXPECT_EQ(parsed->missing(0).device_id(), 2u);
  ASSERT_EQ(parsed->stale_size(), 1);
  EXPECT_EQ(parsed->extra_size(), 0);

  EXPECT_FALSE(ParseDeviceMismatch("").has_value());
  EXPECT_FALSE(ParseDeviceMismatch("\xff\xff garbage").has_value());
  v1::RpcStatus no_details;
  no_details.set_code(9);
  EXPECT_FALSE(ParseDeviceMismatch(no_details.SerializeAsString()).has_value());
}

// ------------------------------------------------ engine with a fake server

// The key directory of a fake server, shared by every device.
struct FakeDirectory {
  absl::Mutex mu;
  struct Keys {
    v1::UploadKeysRequest latest;  // identity, registration id, signed pre-key
    std::vector<v1::PreKey> one_time;
  };
  std::map<std::pair<std::string, uint32_t>, Keys> devices;
  bool drop_one_time_keys = false;  // exhaustion
};

class FakeHost final : public E2eeHost {
 public:
  FakeHost(FakeDirectory* d, std::string account, uint32_t device)
      : d_(d), account_(std::move(account)), device_(device) {}
  std::string account_id() const override { return account_; }
  uint32_t device_id() const override { return device_; }
  absl::Status UploadKeys(const v1::UploadKeysRequest& req) override {
    absl::MutexLock l(&d_->mu);
    ++uploads;
    EXPECT_LE(req.one_time_pre_keys_size(), 100);
    auto& k = d_->devices[{account_, device_}];
    if (k.latest.identity_key() != req.identity_key()) k.one_time.clear();
    k.latest = req;
    k.latest.clear_one_time_pre_keys();
    for (const auto& p : req.one_time_pre_keys()) k.one_time.push_back(p);
    return absl::OkStatus();
  }
  absl::StatusOr<uint32_t> PreKeyCount() override {
    absl::MutexLock l(&d_->mu);
    return static_cast<uint32_t>(d_->devices[{account_, device_}].one_time.size());
  }
  absl::StatusOr<std::vector<v1::PreKeyBundle>> FetchBundles(
      const std::string& account_id) override {
    absl::MutexLock l(&d_->mu);
    ++fetches;
    std::vector<v1::PreKeyBundle> out;
    for (auto& [key, k] : d_->devices) {
      if (key.first != account_id) continue;
      if (key.first == account_ && key.second == device_) continue;
      v1::PreKeyBundle b;
      b.set_device_id(key.second);
      b.set_registration_id(k.latest.registration_id());
      b.set_identity_key(k.latest.identity_key());
      *b.mutable_signed_pre_key() = k.latest.signed_pre_key();
      if (d_->drop_one_time_keys) k.one_time.clear();
      if (!k.one_time.empty()) {
        *b.mutable_one_time_pre_key() = k.one_time.front();
        k.one_time.erase(k.one_time.begin());
      }
      out.push_back(b);
    }
    return out;
  }
  void Forget() {
    absl::MutexLock l(&d_->mu);
    d_->devices.erase({account_, device_});
  }

  int uploads = 0;
  int fetches = 0;

 private:
  FakeDirectory* d_;
  std::string account_;
  uint32_t device_;
};

struct Device {
  std::shared_ptr<SignalEngine> engine;
  std::unique_ptr<FakeHost> host;
};

class SignalEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = absl::StrCat(
        ::testing::TempDir().empty() ? "/tmp" : ::testing::TempDir(),
        "/e2ee_engine_test.XXXXXX");
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  Device NewDevice(const std::string& account, uint32_t device,
                   bool keep_open = true) {
    SignalEngineOptions o;
    o.keep_open = keep_open;
    auto e = SignalEngine::Create(
        absl::StrCat(root_, "/", account, ".", device, "/e2ee"), o);
    EXPECT_TRUE(e.ok()) << e.status();
    Device d{*e, std::make_unique<FakeHost>(&dir_, account, device)};
    absl::Status s = d.engine->MaintainKeys(*d.host, /*force=*/true);
    EXPECT_TRUE(s.ok()) << s;
    return d;
  }

  static v1::Conversation Conversation(const std::string& id,
                                       v1::ConversationKind kind,
                                       std::vector<std::string> members) {
    v1::Conversation c;
    c.set_conversation_id(id);
    c.set_kind(kind);
    for (const auto& m : members) c.add_members()->set_account_id(m);
    c.mutable_security()->set_mode(v1::SECURITY_MODE_E2EE);
    return c;
  }

  // The message `to` would receive for `body` from `from`.
  static std::optional<v1::Message> For(const v1::EncryptedBody& body,
                                        const Device& from, const Device& to,
                                        const std::string& conversation_id,
                                        uint64_t seq = 1) {
    for (const auto& ct : body.ciphertexts()) {
      if (ct.account_id() != to.host->account_id() ||
          ct.device_id() != to.host->device_id()) {
        continue;
      }
      v1::Message m;
      m.set_conversation_id(conversation_id);
      m.set_seq(seq);
      m.set_sender_account_id(from.host->account_id());
      m.set_sender_device_id(from.host->device_id());
      *m.mutable_ciphertext() = ct;
      return m;
    }
    return std::nullopt;
  }

  static absl::StatusOr<std::string> Read(Device& to,
                                          const std::optional<v1::Message>& m) {
    if (!m) return absl::NotFoundError("no ciphertext for this device");
    auto c = to.engine->Decrypt(*to.host, *m);
    if (!c.ok()) return c.status();
    EXPECT_EQ(c->content_type, "text/plain");
    return c->content;
  }

  static E2eeContent Text(const std::string& s) {
    E2eeContent c;
    c.content = s;
    return c;
  }

  std::string root_;
  FakeDirectory dir_;
};

TEST_F(SignalEngineTest, PublishesKeysAndReplenishes) {
  Device a = NewDevice("a_alice", 1);
  EXPECT_EQ(*a.host->PreKeyCount(), 100u);
  EXPECT_EQ(*a.engine->LocalOneTimePreKeyCount(), 100);
  // Keys are only uploaded again when due.
  const int uploads = a.host->uploads;
  ASSERT_TRUE(a.engine->MaintainKeys(*a.host, false).ok());
  EXPECT_EQ(a.host->uploads, uploads);
  // The server ran low: 100 more.
  {
    absl::MutexLock l(&dir_.mu);
    dir_.devices[{"a_alice", 1}].one_time.resize(5);
  }
  ASSERT_TRUE(a.engine->MaintainKeys(*a.host, false).ok());
  EXPECT_EQ(*a.host->PreKeyCount(), 105u);
  // Files are private.
  struct stat st;
  ASSERT_EQ(::stat((root_ + "/a_alice.1/e2ee/published").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(SignalEngineTest, RotatesTheSignedPreKeyWhenDue) {
  SignalEngineOptions o;
  o.crypto.signed_pre_key_rotation = absl::Milliseconds(20);
  auto e = SignalEngine::Create(root_ + "/rot/e2ee", o);
  ASSERT_TRUE(e.ok());
  FakeHost host(&dir_, "a_rot", 1);
  ASSERT_TRUE((*e)->MaintainKeys(host, true).ok());
  auto spk = [&] {
    absl::MutexLock l(&dir_.mu);
    return dir_.devices[{"a_rot", 1}].latest.signed_pre_key().key_id();
  };
  const uint32_t first = spk();
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE((*e)->MaintainKeys(host, false).ok());
  EXPECT_NE(spk(), first);
  EXPECT_EQ(*host.PreKeyCount(), 100u);  // one-time keys untouched
}

TEST_F(SignalEngineTest, DirectConversationBothWays) {
  Device a = NewDevice("a_alice", 1, /*keep_open=*/false);
  Device b = NewDevice("a_bob", 1, /*keep_open=*/false);
  const auto conv =
      Conversation("c_d", v1::CONVERSATION_KIND_DIRECT, {"a_alice", "a_bob"});
  auto body = a.engine->Encrypt(*a.host, conv, Text("hello bob"));
  ASSERT_TRUE(body.ok()) << body.status();
  ASSERT_EQ(body->ciphertexts_size(), 1);  // alice has no other device
  EXPECT_EQ(body->ciphertexts(0).type(), 3u);
  EXPECT_EQ(body->ciphertexts(0).registration_id(), *b.engine->RegistrationId());
  auto m1 = For(*body, a, b, "c_d", 1);
  EXPECT_EQ(*Read(b, m1), "hello bob");
  // A replay is reported as such (the stream drops it).
  EXPECT_TRUE(absl::IsAlreadyExists(b.engine->Decrypt(*b.host, *m1).status()));

  auto reply = b.engine->Encrypt(*b.host, conv, Text("hi alice"));
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(reply->ciphertexts_size(), 1);
  EXPECT_EQ(reply->ciphertexts(0).type(), 2u);  // session from alice's message
  EXPECT_EQ(*Read(a, For(*reply, b, a, "c_d", 2)), "hi alice");
  auto again = a.engine->Encrypt(*a.host, conv, Text("third"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->ciphertexts(0).type(), 2u);
  // Moved into another conversation by the server: refused.
  auto moved = For(*again, a, b, "c_other", 3);
  auto r = b.engine->Decrypt(*b.host, *moved);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("another conversation"));
  // Garbage is an error, not a crash.
  v1::Message bad = *For(*again, a, b, "c_d", 3);
  bad.mutable_ciphertext()->set_ciphertext("garbage");
  EXPECT_FALSE(b.engine->Decrypt(*b.host, bad).ok());
}

TEST_F(SignalEngineTest, CarriesTheFrankingKeyAndTimestamp) {
  Device a = NewDevice("a_alice", 1);
  Device b = NewDevice("a_bob", 1);
  Device c = NewDevice("a_carol", 1);
  for (auto kind : {v1::CONVERSATION_KIND_DIRECT, v1::CONVERSATION_KIND_GROUP}) {
    const std::string id =
        kind == v1::CONVERSATION_KIND_DIRECT ? "c_fd" : "c_fg";
    const auto conv = Conversation(id, kind, {"a_alice", "a_bob", "a_carol"});
    for (int round = 0; round < 2; ++round) {  // group: distribution, then key
      E2eeContent content = Text("franked");
      content.franking_key = std::string(32, static_cast<char>('k' + round));
      content.sent_at_ms = 1714550400123 + round;
      auto body = a.engine->Encrypt(*a.host, conv, content);
      ASSERT_TRUE(body.ok()) << body.status();
      a.engine->Sent(conv, *body);
      for (Device* to : {&b, &c}) {
        auto m = For(*body, a, *to, id, static_cast<uint64_t>(round + 1));
        ASSERT_TRUE(m.has_value());
        auto got = to->engine->Decrypt(*to->host, *m);
        ASSERT_TRUE(got.ok()) << got.status();
        EXPECT_EQ(got->content, "franked");
        EXPECT_EQ(got->franking_key, content.franking_key);
        EXPECT_EQ(got->sent_at_ms, content.sent_at_ms);
        EXPECT_EQ(got->committed_content_type, "text/plain");
      }
    }
  }
}

TEST_F(SignalEngineTest, MismatchRepairAddsLinkedDeviceAndOwnDevices) {
  Device a = NewDevice("a_alice", 1);
  Device b = NewDevice("a_bob", 1);
  const auto conv =
      Conversation("c_d", v1::CONVERSATION_KIND_DIRECT, {"a_alice", "a_bob"});
  ASSERT_TRUE(a.engine->Encrypt(*a.host, conv, Text("one")).ok());
  // bob links a second device; alice's sessions don't know it yet.
  Device b2 = NewDevice("a_bob", 2);
  auto body = a.engine->Encrypt(*a.host, conv, Text("two"));
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->ciphertexts_size(), 1);
  v1::DeviceMismatch mismatch;
  auto* x = mismatch.add_missing();
  x->set_account_id("a_bob");
  x->set_device_id(2);
  ASSERT_TRUE(a.engine->RepairSessions(*a.host, mismatch).ok());
  body = a.engine->Encrypt(*a.host, conv, Text("two"));
  ASSERT_TRUE(body.ok());
  ASSERT_EQ(body->ciphertexts_size(), 2);
  EXPECT_EQ(*Read(b2, For(*body, a, b2, "c_d")), "two");

  // bob's device 1 sends: to alice and to its own device 2.
  auto from_b = b.engine->Encrypt(*b.host, conv, Text("from bob"));
  ASSERT_TRUE(from_b.ok()) << from_b.status();
  ASSERT_EQ(from_b->ciphertexts_size(), 2);
  EXPECT_TRUE(For(*from_b, b, a, "c_d").has_value());
  EXPECT_EQ(*Read(b2, For(*from_b, b, b2, "c_d")), "from bob");

  // bob's device 2 is reinstalled (new identity, new registration id).
  b2.host->Forget();
  b2.engine.reset();
  std::filesystem::remove_all(root_ + "/a_bob.2");
  Device b2new = NewDevice("a_bob", 2);
  mismatch.Clear();
  x = mismatch.add_stale();
  x->set_account_id("a_bob");
  x->set_device_id(2);
  ASSERT_TRUE(a.engine->RepairSessions(*a.host, mismatch).ok());
  body = a.engine->Encrypt(*a.host, conv, Text("three"));
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*Read(b2new, For(*body, a, b2new, "c_d")), "three");
  // The identity change of bob.2 was noticed (TOFU per device).
  auto changes = a.engine->TakeIdentityChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].account_id, "a_bob");
  EXPECT_EQ(changes[0].device_id, 2u);
  EXPECT_FALSE(changes[0].blocked);
  auto pending = a.engine->PendingIdentityChanges();
  ASSERT_EQ(pending.size(), 1u);
  a.engine->AcknowledgeIdentityChanges("a_bob");
  EXPECT_TRUE(a.engine->PendingIdentityChanges().empty());

  // Extra: bob removed device 2.
  mismatch.Clear();
  x = mismatch.add_extra();
  x->set_account_id("a_bob");
  x->set_device_id(2);
  ASSERT_TRUE(a.engine->RepairSessions(*a.host, mismatch).ok());
  body = a.engine->Encrypt(*a.host, conv, Text("four"));
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->ciphertexts_size(), 1);
}

TEST_F(SignalEngineTest, GroupSenderKeysRotateWhenAMemberIsRemoved) {
  Device a = NewDevice("a_alice", 1);
  Device b = NewDevice("a_bob", 1);
  Device c = NewDevice("a_carol", 1);
  auto conv = Conversation("c_g", v1::CONVERSATION_KIND_GROUP,
                           {"a_alice", "a_bob", "a_carol"});
  // First message: pairwise, carrying alice's sender key.
  auto m1 = a.engine->Encrypt(*a.host, conv, Text("first"));
  ASSERT_TRUE(m1.ok()) << m1.status();
  ASSERT_EQ(m1->ciphertexts_size(), 2);
  for (const auto& ct : m1->ciphertexts()) EXPECT_EQ(ct.type(), 3u);
  a.engine->Sent(conv, *m1);
  EXPECT_EQ(*Read(b, For(*m1, a, b, "c_g", 1)), "first");
  EXPECT_EQ(*Read(c, For(*m1, a, c, "c_g", 1)), "first");
  // Second: one sender-key ciphertext for everybody.
  auto m2 = a.engine->Encrypt(*a.host, conv, Text("second"));
  ASSERT_TRUE(m2.ok());
  ASSERT_EQ(m2->ciphertexts_size(), 2);
  EXPECT_EQ(m2->ciphertexts(0).type(), 4u);
  EXPECT_EQ(m2->ciphertexts(1).type(), 4u);
  EXPECT_EQ(m2->ciphertexts(0).ciphertext(), m2->ciphertexts(1).ciphertext());
  a.engine->Sent(conv, *m2);
  EXPECT_EQ(*Read(b, For(*m2, a, b, "c_g", 2)), "second");
  EXPECT_EQ(*Read(c, For(*m2, a, c, "c_g", 2)), "second");
  // bob answers (his own sender key) and carol reads it.
  auto m3 = b.engine->Encrypt(*b.host, conv, Text("bob here"));
  ASSERT_TRUE(m3.ok());
  b.engine->Sent(conv, *m3);
  EXPECT_EQ(*Read(a, For(*m3, b, a, "c_g", 3)), "bob here");
  EXPECT_EQ(*Read(c, For(*m3, b, c, "c_g", 3)), "bob here");

  // carol is removed: alice's next message uses a new sender key that only
  // bob receives; carol cannot read it even if she got the bytes.
  conv = Conversation("c_g", v1::CONVERSATION_KIND_GROUP, {"a_alice", "a_bob"});
  auto m4 = a.engine->Encrypt(*a.host, conv, Text("after carol left"));
  ASSERT_TRUE(m4.ok());
  ASSERT_EQ(m4->ciphertexts_size(), 1);
  EXPECT_EQ(m4->ciphertexts(0).type(), 2u);  // new key, pairwise
  a.engine->Sent(conv, *m4);
  EXPECT_EQ(*Read(b, For(*m4, a, b, "c_g", 4)), "after carol left");
  auto m5 = a.engine->Encrypt(*a.host, conv, Text("secret plans"));
  ASSERT_TRUE(m5.ok());
  ASSERT_EQ(m5->ciphertexts(0).type(), 4u);
  a.engine->Sent(conv, *m5);
  auto to_bob = For(*m5, a, b, "c_g", 5);
  EXPECT_EQ(*Read(b, to_bob), "secret plans");
  // The server (or anyone) hands bob's sender-key ciphertext to carol.
  v1::Message leaked = *to_bob;
  leaked.mutable_ciphertext()->set_account_id("a_carol");
  auto r = c.engine->Decrypt(*c.host, leaked);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
}

TEST_F(SignalEngineTest, SessionsWithoutOneTimePreKeys) {
  Device a = NewDevice("a_alice", 1);
  Device b = NewDevice("a_bob", 1);
  {
    absl::MutexLock l(&dir_.mu);
    dir_.drop_one_time_keys = true;  // the server ran out
  }
  const auto conv =
      Conversation("c_d", v1::CONVERSATION_KIND_DIRECT, {"a_alice", "a_bob"});
  auto body = a.engine->Encrypt(*a.host, conv, Text("signed pre-key only"));
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(*Read(b, For(*body, a, b, "c_d")), "signed pre-key only");
  // Decrypting a pre-key message replenished bob's keys on the server.
  EXPECT_GE(*b.host->PreKeyCount(), 100u);
}

TEST_F(SignalEngineTest, SafetyNumbersMatchOnBothSides) {
  Device a = NewDevice("a_alice", 1);
  Device b = NewDevice("a_bob", 1);
  auto na = a.engine->SafetyNumbers(*a.host, "a_bob");
  ASSERT_TRUE(na.ok()) << na.status();
  auto nb = b.engine->SafetyNumbers(*b.host, "a_alice");
  ASSERT_TRUE(nb.ok()) << nb.status();
  ASSERT_EQ(na->size(), 1u);
  ASSERT_EQ(nb->size(), 1u);
  EXPECT_EQ((*na)[0].digits.size(), 60u);
  EXPECT_EQ((*na)[0].digits, (*nb)[0].digits);
  EXPECT_FALSE((*na)[0].verified);
  ASSERT_TRUE(a.engine->MarkVerified("a_bob").ok());
  EXPECT_TRUE(*a.engine->IsVerified("a_bob"));
  EXPECT_TRUE(a.engine->SafetyNumbers(*a.host, "a_bob")->at(0).verified);
  EXPECT_FALSE(a.engine->SafetyNumbers(*a.host, "a_alice").ok());
}

}  // namespace
}  // namespace parley
