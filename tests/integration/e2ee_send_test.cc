// Integration tests of end-to-end encrypted Send on the real server: device
// sets checked against the key directory (missing / extra / stale with a
// structured DeviceMismatch), per-device delivery, no readable history.
// Keys and ciphertexts are real (clients/crypto over libsignal-protocol-c).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <filesystem>

#include "clients/crypto/crypto.h"
#include "core/server.h"
#include "core/tls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/api_client.h"
#include "tests/support/keys.h"

namespace parley {
namespace {

using ::parley::testing::ApiClient;
using ::parley::testing::Device;
using ::parley::testing::Stream;
using ::testing::HasSubstr;

struct KeyedDevice {
  Device d;
  std::unique_ptr<crypto::DeviceCrypto> crypto;
};

class E2eeSendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_e2_XXXXXX";
    dir_ = mkdtemp(tmpl);
    core::ServerOptions o;
    o.data_dir = dir_ + "/server";
    o.listen = "127.0.0.1:0";
    o.admin_listen = "";
    o.policy_file = "preset:signal";
    auto s = core::Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto ca = core::ReadFile(server_->ca_cert_path());
    ASSERT_TRUE(ca.ok());
    client_ = std::make_unique<ApiClient>(
        testing::MakeChannel("127.0.0.1:" + std::to_string(server_->port()), *ca));
  }
  void TearDown() override {
    client_.reset();
    server_->Shutdown();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Uploads keys for `d` from a fresh crypto profile.
  void Upload(KeyedDevice* k) {
    auto c = testing::UploadFreshKeys(*client_, k->d, dir_ + "/" + k->d.username + std::to_string(k->d.device_id));
    ASSERT_TRUE(c.ok()) << c.status();
    k->crypto = std::move(*c);
  }
  KeyedDevice Reg(const std::string& name, bool keys = true) {
    KeyedDevice k;
    EXPECT_TRUE(client_->Register(name, &k.d).ok());
    if (keys) Upload(&k);
    return k;
  }
  KeyedDevice Link(const KeyedDevice& existing, bool keys = true) {
    KeyedDevice k;
    EXPECT_TRUE(client_->Link(existing.d, &k.d).ok());
    if (keys) Upload(&k);
    return k;
  }
  v1::DeviceCiphertext Ct(const KeyedDevice& to, const std::string& bytes = "opaque-ciphertext") {
    v1::DeviceCiphertext c;
    c.set_account_id(to.d.account_id);
    c.set_device_id(to.d.device_id);
    c.set_registration_id(to.crypto ? to.crypto->registration_id() : 0);
    c.set_type(3);
    c.set_ciphertext(bytes);
    return c;
  }
  grpc::Status Send(const KeyedDevice& from, const std::string& conv, const std::string& id,
                    const std::vector<v1::DeviceCiphertext>& cts, v1::DeviceMismatch* mismatch = nullptr,
                    v1::SendResponse* out = nullptr) {
    v1::SendRequest req;
    req.set_conversation_id(conv);
    req.set_client_message_id(id);
    for (const auto& c : cts) *req.mutable_body()->mutable_encrypted()->add_ciphertexts() = c;
    v1::SendResponse resp;
    auto ctx = client_->Ctx(from.d);
    grpc::Status s = client_->messaging->Send(ctx.get(), req, &resp);
    if (out) *out = resp;
    if (mismatch && !s.error_details().empty()) {
      v1::RpcStatus rich;
      EXPECT_TRUE(rich.ParseFromString(s.error_details()));
      EXPECT_EQ(rich.code(), static_cast<int>(s.error_code()));
      for (const auto& any : rich.details()) {
        if (any.type_url() == "type.googleapis.com/parley.v1.DeviceMismatch") {
          EXPECT_TRUE(mismatch->ParseFromString(any.value()));
        }
      }
    }
    return s;
  }
  std::string Direct(const KeyedDevice& a, const KeyedDevice& b) {
    v1::Conversation c;
    EXPECT_TRUE(client_->Direct(a.d, b.d.username, &c).ok());
    EXPECT_EQ(c.security().mode(), v1::SECURITY_MODE_E2EE);
    return c.conversation_id();
  }

  std::string dir_;
  std::unique_ptr<core::Server> server_;
  std::unique_ptr<ApiClient> client_;
};

TEST_F(E2eeSendTest, EachDeviceGetsItsOwnCiphertextAndNothingReadableIsKept) {
  KeyedDevice a = Reg("alice"), b1 = Reg("bob");
  KeyedDevice b2 = Link(b1), a2 = Link(a);
  std::string conv = Direct(a, b1);
  Stream s_b2(*client_, b2.d), s_a2(*client_, a2.d);
  v1::SendResponse resp;
  grpc::Status s = Send(a, conv, "m1", {Ct(b1, "for-b1"), Ct(b2, "for-b2"), Ct(a2, "for-a2")}, nullptr, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.seq(), 1u);
  v1::Envelope e;
  ASSERT_TRUE(s_b2.NextEnvelope(&e));
  ASSERT_TRUE(e.message().has_ciphertext());
  EXPECT_EQ(e.message().ciphertext().ciphertext(), "for-b2");
  EXPECT_EQ(e.message().sender_account_id(), a.d.account_id);
  ASSERT_TRUE(s_a2.NextEnvelope(&e));
  EXPECT_EQ(e.message().ciphertext().ciphertext(), "for-a2");
  // A retry is a duplicate, not a second message.
  ASSERT_TRUE(Send(a, conv, "m1", {Ct(b1, "for-b1"), Ct(b2, "for-b2"), Ct(a2, "for-a2")}, nullptr, &resp).ok());
  EXPECT_TRUE(resp.duplicate());
  // The server keeps no readable history of E2EE content.
  v1::GetHistoryRequest hr;
  hr.set_conversation_id(conv);
  v1::GetHistoryResponse hist;
  auto ctx = client_->Ctx(b1.d);
  ASSERT_TRUE(client_->messaging->GetHistory(ctx.get(), hr, &hist).ok());
  for (const auto& m : hist.messages()) EXPECT_FALSE(m.has_ciphertext() || m.has_plain());
}

TEST_F(E2eeSendTest, MismatchedDeviceSetsAreRefusedWithStructuredDetails) {
  KeyedDevice a = Reg("alice"), b1 = Reg("bob"), m = Reg("mallory");
  KeyedDevice b2 = Link(b1);
  KeyedDevice b3 = Link(b1, /*keys=*/false);  // no keys: cannot receive E2EE, not expected
  std::string conv = Direct(a, b1);

  v1::DeviceMismatch mm;
  grpc::Status s = Send(a, conv, "x1", {Ct(b1)}, &mm);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("1 missing, 0 extra, 0 stale"));
  ASSERT_EQ(mm.missing_size(), 1);
  EXPECT_EQ(mm.missing(0).account_id(), b2.d.account_id);
  EXPECT_EQ(mm.missing(0).device_id(), b2.d.device_id);

  mm.Clear();
  s = Send(a, conv, "x2", {Ct(b1), Ct(b2), Ct(m)}, &mm);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_EQ(mm.extra_size(), 1);
  EXPECT_EQ(mm.extra(0).account_id(), m.d.account_id);

  mm.Clear();
  v1::DeviceCiphertext stale = Ct(b2);
  stale.set_registration_id(stale.registration_id() + 1);
  s = Send(a, conv, "x3", {Ct(b1), stale}, &mm);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_EQ(mm.stale_size(), 1);
  EXPECT_EQ(mm.stale(0).device_id(), b2.d.device_id);
  EXPECT_EQ(mm.missing_size(), 0);

  // A device that publishes keys later becomes expected.
  Upload(&b3);
  mm.Clear();
  s = Send(a, conv, "x4", {Ct(b1), Ct(b2)}, &mm);
  ASSERT_EQ(mm.missing_size(), 1);
  EXPECT_EQ(mm.missing(0).device_id(), b3.d.device_id);
  EXPECT_TRUE(Send(a, conv, "x5", {Ct(b1), Ct(b2), Ct(b3)}).ok());
}

TEST_F(E2eeSendTest, MalformedCiphertextsAreInvalid) {
  KeyedDevice a = Reg("alice"), b = Reg("bob");
  std::string conv = Direct(a, b);
  auto code = [&](v1::DeviceCiphertext c) { return Send(a, conv, "y", {c}).error_code(); };
  v1::DeviceCiphertext c = Ct(b);
  c.set_type(7);
  EXPECT_EQ(code(c), grpc::StatusCode::INVALID_ARGUMENT);
  c = Ct(b);
  c.set_ciphertext("");
  EXPECT_EQ(code(c), grpc::StatusCode::INVALID_ARGUMENT);
  c = Ct(b);
  c.set_account_id("bogus");
  EXPECT_EQ(code(c), grpc::StatusCode::INVALID_ARGUMENT);
  c = Ct(b);
  c.set_device_id(0);
  EXPECT_EQ(code(c), grpc::StatusCode::INVALID_ARGUMENT);
  c = Ct(b);
  c.set_ciphertext(std::string(1 << 20, 'x'));
  EXPECT_EQ(code(c), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Send(a, conv, "dup", {Ct(b), Ct(b)}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Send(a, conv, "none", {}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Plaintext is refused in an E2EE conversation; nothing was stored by any of these.
  EXPECT_EQ(client_->SendText(a.d, conv, "p", "plain").error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  v1::SendResponse resp;
  ASSERT_TRUE(Send(a, conv, "ok", {Ct(b)}, nullptr, &resp).ok());
  EXPECT_EQ(resp.seq(), 1u);
}

TEST_F(E2eeSendTest, NobodyWithKeysMeansNothingCanBeDelivered) {
  KeyedDevice a = Reg("alice"), b = Reg("bob", /*keys=*/false);
  std::string conv = Direct(a, b);
  grpc::Status s = Send(a, conv, "z", {Ct(b)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace parley
