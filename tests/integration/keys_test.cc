// Integration tests of KeyService: the real server (TLS, RocksDB on a temp
// directory, port 0) driven over gRPC, with real Curve25519 keys and XEdDSA
// signatures made by libsignal-protocol-c.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <openssl/rand.h>
#include <signal/curve.h>
#include <signal/signal_protocol.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "core/server.h"
#include "core/tls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/api_client.h"
#include "tests/support/signal_keys.h"

namespace parley {
namespace {

using ::parley::testing::ApiClient;
using ::parley::testing::Device;
using ::testing::HasSubstr;

using ::parley::testing::signal_keys::KeyMaker;

class KeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_keys_it_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Start();
  }
  void TearDown() override {
    client_.reset();
    if (server_) server_->Shutdown();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Start() {
    core::ServerOptions o;
    o.data_dir = dir_;
    o.listen = "127.0.0.1:0";
    o.admin_listen = "127.0.0.1:0";
    auto s = core::Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto ca = core::ReadFile(server_->ca_cert_path());
    ASSERT_TRUE(ca.ok());
    client_ = std::make_unique<ApiClient>(
        testing::MakeChannel("127.0.0.1:" + std::to_string(server_->port()), *ca));
  }
  void Restart() {
    client_.reset();
    server_->Shutdown();
    server_.reset();
    Start();
  }
  Device Reg(const std::string& name) {
    Device d;
    grpc::Status s = client_->Register(name, &d);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return d;
  }

  grpc::Status Upload(const Device& d, const v1::UploadKeysRequest& req) {
    v1::UploadKeysResponse resp;
    auto ctx = client_->Ctx(d);
    return client_->keys->UploadKeys(ctx.get(), req, &resp);
  }
  uint32_t Count(const Device& d) {
    v1::GetPreKeyCountResponse resp;
    auto ctx = client_->Ctx(d);
    grpc::Status s = client_->keys->GetPreKeyCount(ctx.get(), {}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.count();
  }
  grpc::Status Fetch(const Device& d, const std::string& account_id, v1::FetchBundlesResponse* out) {
    v1::FetchBundlesRequest req;
    req.set_account_id(account_id);
    auto ctx = client_->Ctx(d);
    return client_->keys->FetchBundles(ctx.get(), req, out);
  }

  std::string dir_;
  std::unique_ptr<core::Server> server_;
  std::unique_ptr<ApiClient> client_;
  KeyMaker keys_;
};

TEST_F(KeysTest, AuthenticationIsRequired) {
  Device alice = Reg("alice");
  KeyMaker::Install install(&keys_, 5);
  const v1::UploadKeysRequest req = install.Upload(1);
  for (const std::string& token : {std::string(), std::string("garbage"), std::string(64, 'a')}) {
    v1::UploadKeysResponse ur;
    auto c1 = ApiClient::Ctx(token);
    EXPECT_EQ(client_->keys->UploadKeys(c1.get(), req, &ur).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    v1::GetPreKeyCountResponse cr;
    auto c2 = ApiClient::Ctx(token);
    EXPECT_EQ(client_->keys->GetPreKeyCount(c2.get(), {}, &cr).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    v1::FetchBundlesRequest fr;
    fr.set_account_id(alice.account_id);
    v1::FetchBundlesResponse fresp;
    auto c3 = ApiClient::Ctx(token);
    EXPECT_EQ(client_->keys->FetchBundles(c3.get(), fr, &fresp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(Count(alice), 0u);  // nothing was stored
}

TEST_F(KeysTest, UploadCountFetch) {
  Device alice = Reg("alice"), bob = Reg("bob");
  KeyMaker::Install install(&keys_, 4242);
  const v1::UploadKeysRequest req = install.Upload(3);
  ASSERT_TRUE(Upload(alice, req).ok());
  EXPECT_EQ(Count(alice), 3u);
  EXPECT_EQ(Count(bob), 0u);

  v1::ListDevicesResponse devs;
  auto lc = client_->Ctx(alice);
  ASSERT_TRUE(client_->accounts->ListDevices(lc.get(), {}, &devs).ok());
  ASSERT_EQ(devs.devices_size(), 1);
  EXPECT_EQ(devs.devices(0).registration_id(), 4242u);

  for (int i = 0; i < 4; ++i) {
    v1::FetchBundlesResponse r;
    grpc::Status s = Fetch(bob, alice.account_id, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(r.bundles_size(), 1);
    const v1::PreKeyBundle& b = r.bundles(0);
    EXPECT_EQ(b.device_id(), alice.device_id);
    EXPECT_EQ(b.registration_id(), 4242u);
    EXPECT_EQ(b.identity_key(), req.identity_key());
    EXPECT_EQ(b.signed_pre_key().public_key(), req.signed_pre_key().public_key());
    EXPECT_EQ(b.signed_pre_key().signature(), req.signed_pre_key().signature());
    if (i < 3) {
      ASSERT_TRUE(b.has_one_time_pre_key());
      EXPECT_EQ(b.one_time_pre_key().key_id(), req.one_time_pre_keys(i).key_id());
      EXPECT_EQ(b.one_time_pre_key().public_key(), req.one_time_pre_keys(i).public_key());
    } else {
      EXPECT_FALSE(b.has_one_time_pre_key());  // ran out: signed pre-key only
    }
    EXPECT_EQ(Count(alice), static_cast<uint32_t>(i < 3 ? 2 - i : 0));
  }
}

TEST_F(KeysTest, UploadErrors) {
  Device alice = Reg("alice");
  KeyMaker::Install install(&keys_, 7), other(&keys_, 8);

  v1::UploadKeysRequest req = install.Upload(1);
  req.mutable_signed_pre_key()->set_signature(other.Upload(0).signed_pre_key().signature());
  grpc::Status s = Upload(alice, req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "signed_pre_key.signature: does not verify with identity_key");

  req = install.Upload(1);
  req.set_identity_key(req.identity_key().substr(1));
  s = Upload(alice, req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("identity_key:"));

  req = install.Upload(101);
  s = Upload(alice, req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("one_time_pre_keys: at most 100"));

  req = install.Upload(0);
  req.set_registration_id(0);
  s = Upload(alice, req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("registration_id"));

  EXPECT_EQ(Upload(alice, v1::UploadKeysRequest()).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Count(alice), 0u);

  // The per-device cap.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Upload(alice, install.Upload(100)).ok());
  EXPECT_EQ(Count(alice), 1000u);
  s = Upload(alice, install.Upload(1));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
}

TEST_F(KeysTest, FetchErrors) {
  Device alice = Reg("alice"), bob = Reg("bob");
  v1::FetchBundlesResponse r;
  EXPECT_EQ(Fetch(bob, "", &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status s = Fetch(bob, "bogus", &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("account_id"));
  EXPECT_EQ(Fetch(bob, "a_000000000000000000000000", &r).error_code(), grpc::StatusCode::NOT_FOUND);
  s = Fetch(bob, alice.account_id, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("has not published keys"));
  // One's own device is never in one's own fetch.
  KeyMaker::Install install(&keys_, 9);
  ASSERT_TRUE(Upload(alice, install.Upload(2)).ok());
  EXPECT_EQ(Fetch(alice, alice.account_id, &r).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Count(alice), 2u);
}

TEST_F(KeysTest, LinkedDevicesReinstallAndRemoval) {
  Device alice = Reg("alice"), bob = Reg("bob");
  Device laptop;
  ASSERT_TRUE(client_->Link(alice, &laptop).ok());
  KeyMaker::Install phone_keys(&keys_, 11), laptop_keys(&keys_, 22);
  ASSERT_TRUE(Upload(alice, phone_keys.Upload(5)).ok());
  ASSERT_TRUE(Upload(laptop, laptop_keys.Upload(5)).ok());

  v1::FetchBundlesResponse r;
  ASSERT_TRUE(Fetch(bob, alice.account_id, &r).ok());
  ASSERT_EQ(r.bundles_size(), 2);
  EXPECT_EQ(r.bundles(0).device_id(), alice.device_id);
  EXPECT_EQ(r.bundles(1).device_id(), laptop.device_id);
  EXPECT_EQ(r.bundles(1).registration_id(), 22u);
  EXPECT_EQ(Count(alice), 4u);
  EXPECT_EQ(Count(laptop), 4u);

  // The laptop fetching its own account gets the phone only.
  ASSERT_TRUE(Fetch(laptop, alice.account_id, &r).ok());
  ASSERT_EQ(r.bundles_size(), 1);
  EXPECT_EQ(r.bundles(0).device_id(), alice.device_id);
  EXPECT_EQ(Count(alice), 3u);

  // Reinstall of the laptop: a new identity drops its old one-time pre-keys.
  KeyMaker::Install reinstall(&keys_, 33);
  const v1::UploadKeysRequest fresh = reinstall.Upload(0);
  ASSERT_TRUE(Upload(laptop, fresh).ok());
  EXPECT_EQ(Count(laptop), 0u);
  ASSERT_TRUE(Fetch(bob, alice.account_id, &r).ok());
  ASSERT_EQ(r.bundles_size(), 2);
  EXPECT_EQ(r.bundles(1).identity_key(), fresh.identity_key());
  EXPECT_EQ(r.bundles(1).registration_id(), 33u);
  EXPECT_FALSE(r.bundles(1).has_one_time_pre_key());

  // Removing the laptop removes its keys.
  v1::RemoveDeviceRequest rm;
  rm.set_device_id(laptop.device_id);
  v1::RemoveDeviceResponse rmr;
  auto ctx = client_->Ctx(alice);
  ASSERT_TRUE(client_->accounts->RemoveDevice(ctx.get(), rm, &rmr).ok());
  ASSERT_TRUE(Fetch(bob, alice.account_id, &r).ok());
  ASSERT_EQ(r.bundles_size(), 1);
  EXPECT_EQ(r.bundles(0).device_id(), alice.device_id);
}

TEST_F(KeysTest, KeysSurviveRestart) {
  Device alice = Reg("alice"), bob = Reg("bob");
  KeyMaker::Install install(&keys_, 77);
  const v1::UploadKeysRequest req = install.Upload(2);
  ASSERT_TRUE(Upload(alice, req).ok());
  Restart();
  EXPECT_EQ(Count(alice), 2u);
  v1::FetchBundlesResponse r;
  ASSERT_TRUE(Fetch(bob, alice.account_id, &r).ok());
  ASSERT_EQ(r.bundles_size(), 1);
  EXPECT_EQ(r.bundles(0).identity_key(), req.identity_key());
  EXPECT_EQ(r.bundles(0).one_time_pre_key().key_id(), req.one_time_pre_keys(0).key_id());
}

}  // namespace
}  // namespace parley
