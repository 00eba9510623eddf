// Tests of KeyDirectory over real RocksDB storage (a mkdtemp directory per
// test), with real Curve25519 keys and XEdDSA signatures made by
// libsignal-protocol-c.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/key_directory.h"

#include <openssl/rand.h>
#include <signal/curve.h>
#include <signal/signal_protocol.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/ids.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/rocksdb_storage.h"
#include "storage/storage.h"

namespace parley::core {
namespace {

using ::testing::HasSubstr;

// ------------------------------------------------------ key material

// libsignal needs a crypto provider to generate keys and signatures; both
// use only its random function (XEdDSA hashes with libsignal's own SHA-512).
// The HMAC functions are mandatory fields but unused here.
int Random(uint8_t* data, size_t len, void*) {
  return RAND_bytes(data, static_cast<int>(len)) == 1 ? 0 : SG_ERR_UNKNOWN;
}
int HmacInit(void**, const uint8_t*, size_t, void*) { return SG_ERR_UNKNOWN; }
int HmacUpdate(void*, const uint8_t*, size_t, void*) { return SG_ERR_UNKNOWN; }
int HmacFinal(void*, signal_buffer**, void*) { return SG_ERR_UNKNOWN; }
void HmacCleanup(void*, void*) {}

struct KeyPairDeleter {
  void operator()(ec_key_pair* p) const { SIGNAL_UNREF(p); }
};
using KeyPairPtr = std::unique_ptr<ec_key_pair, KeyPairDeleter>;

std::string Take(signal_buffer* b) {
  std::string s(reinterpret_cast<const char*>(signal_buffer_const_data(b)), signal_buffer_len(b));
  signal_buffer_free(b);
  return s;
}

// One signal_context, used from the test's main thread only.
class Signal {
 public:
  Signal() {
    EXPECT_EQ(signal_context_create(&ctx_, nullptr), 0);
    signal_crypto_provider p = {};
    p.random_func = Random;
    p.hmac_sha256_init_func = HmacInit;
    p.hmac_sha256_update_func = HmacUpdate;
    p.hmac_sha256_final_func = HmacFinal;
    p.hmac_sha256_cleanup_func = HmacCleanup;
    EXPECT_EQ(signal_context_set_crypto_provider(ctx_, &p), 0);
  }
  ~Signal() { signal_context_destroy(ctx_); }
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;

  KeyPairPtr NewKeyPair() {
    ec_key_pair* kp = nullptr;
    EXPECT_EQ(curve_generate_key_pair(ctx_, &kp), 0);
    return KeyPairPtr(kp);
  }
  static std::string Public(const ec_key_pair* kp) {
    signal_buffer* b = nullptr;
    EXPECT_EQ(ec_public_key_serialize(&b, ec_key_pair_get_public(kp)), 0);
    return Take(b);
  }
  std::string Sign(const ec_key_pair* kp, const std::string& message) {
    signal_buffer* b = nullptr;
    EXPECT_EQ(curve_calculate_signature(ctx_, &b, ec_key_pair_get_private(kp),
                                        reinterpret_cast<const uint8_t*>(message.data()),
                                        message.size()),
              0);
    return Take(b);
  }

 private:
  signal_context* ctx_ = nullptr;
};

// The key material of one (simulated) client install.
struct Install {
  KeyPairPtr identity;
  uint32_t registration_id = 0;
  uint32_t next_pre_key_id = 1;
};

bool Verifies(const std::string& identity, const std::string& message, const std::string& sig) {
  ec_public_key* key = nullptr;
  if (curve_decode_point(&key, reinterpret_cast<const uint8_t*>(identity.data()), identity.size(),
                         nullptr) != 0) {
    return false;
  }
  const int r = curve_verify_signature(key, reinterpret_cast<const uint8_t*>(message.data()),
                                       message.size(),
                                       reinterpret_cast<const uint8_t*>(sig.data()), sig.size());
  SIGNAL_UNREF(key);
  return r == 1;
}

// --------------------------------------------------------------- fixture

class KeyDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_keys_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    storage::RocksDbOptions o;
    o.path = dir_ + "/db";
    o.block_cache_bytes = 8 << 20;
    o.write_buffer_bytes = 4 << 20;
    auto s = storage::OpenRocksDbStorage(o);
    ASSERT_TRUE(s.ok()) << s.status();
    storage_ = std::move(*s);
    keys_ = std::make_unique<KeyDirectory>(storage_.get());
  }
  void TearDown() override {
    keys_.reset();
    storage_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A new account with one device; returns its id.
  std::string NewAccount() {
    storage::AccountRecord a;
    a.account_id = NewAccountId();
    a.username = "u" + a.account_id.substr(2);
    storage::DeviceRecord d;
    d.name = "phone";
    d.token_hash = Sha256(a.account_id);
    EXPECT_TRUE(storage_->accounts().CreateAccount(a, d).ok());
    return a.account_id;
  }
  uint32_t AddDevice(const std::string& account_id) {
    storage::DeviceRecord d;
    d.account_id = account_id;
    d.name = "laptop";
    d.token_hash = Sha256(RandomHex(16));
    auto added = storage_->accounts().AddDevice(d);
    EXPECT_TRUE(added.ok()) << added.status();
    return added->device_id;
  }

  Install NewInstall(uint32_t registration_id = 1234) {
    Install i;
    i.identity = signal_.NewKeyPair();
    i.registration_id = registration_id;
    return i;
  }

  // A valid upload by `install` with a fresh signed pre-key and `n` fresh
  // one-time pre-keys.
  v1::UploadKeysRequest Upload(Install& install, int n, uint32_t signed_id = 7) {
    v1::UploadKeysRequest req;
    req.set_identity_key(Signal::Public(install.identity.get()));
    req.set_registration_id(install.registration_id);
    KeyPairPtr spk = signal_.NewKeyPair();
    const std::string spk_public = Signal::Public(spk.get());
    req.mutable_signed_pre_key()->set_key_id(signed_id);
    req.mutable_signed_pre_key()->set_public_key(spk_public);
    req.mutable_signed_pre_key()->set_signature(signal_.Sign(install.identity.get(), spk_public));
    for (int i = 0; i < n; ++i) {
      v1::PreKey* k = req.add_one_time_pre_keys();
      k->set_key_id(install.next_pre_key_id++);
      KeyPairPtr kp = signal_.NewKeyPair();
      k->set_public_key(Signal::Public(kp.get()));
    }
    return req;
  }

  uint32_t Count(const std::string& account, uint32_t device) {
    auto r = keys_->Count(account, device);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->count() : 0;
  }

  v1::FetchBundlesResponse Fetch(const std::string& account) {
    v1::FetchBundlesRequest req;
    req.set_account_id(account);
    auto r = keys_->Fetch(fetcher_, 1, req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::FetchBundlesResponse();
  }
  absl::Status FetchStatus(const std::string& caller, uint32_t device, const std::string& account) {
    v1::FetchBundlesRequest req;
    req.set_account_id(account);
    return keys_->Fetch(caller, device, req).status();
  }

  void ExpectInvalid(const v1::UploadKeysRequest& req, const std::string& account,
                     absl::string_view message) {
    absl::Status s = keys_->Upload(account, 1, req);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(message)));
  }

  std::string dir_;
  std::unique_ptr<storage::Storage> storage_;
  std::unique_ptr<KeyDirectory> keys_;
  Signal signal_;
  std::string fetcher_ = NewAccountId();  // a caller from another account
};

// ----------------------------------------------------------------- tests

TEST_F(KeyDirectoryTest, ValidUploadIsStoredAndFetchable) {
  const std::string alice = NewAccount();
  Install install = NewInstall(4321);
  v1::UploadKeysRequest req = Upload(install, 5);
  ASSERT_TRUE(keys_->Upload(alice, 1, req).ok());
  EXPECT_EQ(Count(alice, 1), 5u);

  // The registration id is shown on the device (ListDevices).
  auto dev = storage_->accounts().GetDevice(alice, 1);
  ASSERT_TRUE(dev.ok());
  EXPECT_EQ(dev->registration_id, 4321u);

  v1::FetchBundlesResponse resp = Fetch(alice);
  ASSERT_EQ(resp.bundles_size(), 1);
  const v1::PreKeyBundle& b = resp.bundles(0);
  EXPECT_EQ(b.device_id(), 1u);
  EXPECT_EQ(b.registration_id(), 4321u);
  EXPECT_EQ(b.identity_key(), req.identity_key());
  EXPECT_EQ(b.identity_key().size(), 33u);
  EXPECT_EQ(b.signed_pre_key().key_id(), 7u);
  EXPECT_EQ(b.signed_pre_key().public_key(), req.signed_pre_key().public_key());
  EXPECT_EQ(b.signed_pre_key().signature(), req.signed_pre_key().signature());
  EXPECT_TRUE(Verifies(b.identity_key(), b.signed_pre_key().public_key(),
                       b.signed_pre_key().signature()));
  ASSERT_TRUE(b.has_one_time_pre_key());
  EXPECT_EQ(b.one_time_pre_key().key_id(), req.one_time_pre_keys(0).key_id());
  EXPECT_EQ(b.one_time_pre_key().public_key(), req.one_time_pre_keys(0).public_key());
  EXPECT_EQ(Count(alice, 1), 4u);
}

TEST_F(KeyDirectoryTest, UploadWithoutOneTimePreKeysAndReplacement) {
  const std::string alice = NewAccount();
  Install install = NewInstall();
  ASSERT_TRUE(keys_->Upload(alice, 1, Upload(install, 0)).ok());
  EXPECT_EQ(Count(alice, 1), 0u);
  ASSERT_TRUE(keys_->Upload(alice, 1, Upload(install, 3)).ok());
  // Same identity, new signed pre-key and more one-time pre-keys: added.
  v1::UploadKeysRequest again = Upload(install, 2, /*signed_id=*/8);
  ASSERT_TRUE(keys_->Upload(alice, 1, again).ok());
  EXPECT_EQ(Count(alice, 1), 5u);
  v1::FetchBundlesResponse resp = Fetch(alice);
  ASSERT_EQ(resp.bundles_size(), 1);
  EXPECT_EQ(resp.bundles(0).signed_pre_key().key_id(), 8u);
  EXPECT_EQ(resp.bundles(0).signed_pre_key().public_key(), again.signed_pre_key().public_key());
  // Re-uploading an id replaces that key.
  v1::UploadKeysRequest replace = Upload(install, 0, 8);
  v1::PreKey* k = replace.add_one_time_pre_keys();
  k->set_key_id(2);
  k->set_public_key(again.one_time_pre_keys(0).public_key());
  ASSERT_TRUE(keys_->Upload(alice, 1, replace).ok());
  EXPECT_EQ(Count(alice, 1), 4u);
  resp = Fetch(alice);
  EXPECT_EQ(resp.bundles(0).one_time_pre_key().key_id(), 2u);
  EXPECT_EQ(resp.bundles(0).one_time_pre_key().public_key(), again.one_time_pre_keys(0).public_key());
}

TEST_F(KeyDirectoryTest, BadSignatureIsRejected) {
  const std::string alice = NewAccount();
  Install install = NewInstall();
  Install other = NewInstall();
  // Signed by another identity key.
  v1::UploadKeysRequest req = Upload(install, 2);
  v1::UploadKeysRequest by_other = Upload(other, 0);
  req.mutable_signed_pre_key()->set_signature(by_other.signed_pre_key().signature());
  ExpectInvalid(req, alice, "signed_pre_key.signature: does not verify with identity_key");
  // A flipped bit.
  req = Upload(install, 2);
  std::string sig = req.signed_pre_key().signature();
  sig[10] ^= 0x01;
  req.mutable_signed_pre_key()->set_signature(sig);
  ExpectInvalid(req, alice, "signed_pre_key.signature: does not verify with identity_key");
  // A valid signature over a different key.
  req = Upload(install, 0);
  req.mutable_signed_pre_key()->set_public_key(by_other.signed_pre_key().public_key());
  ExpectInvalid(req, alice, "signed_pre_key.signature: does not verify with identity_key");
  // Wrong length.
  req = Upload(install, 0);
  req.mutable_signed_pre_key()->set_signature(std::string(63, 'x'));
  ExpectInvalid(req, alice, "signed_pre_key.signature: must be 64 bytes, got 63");
  req.clear_signed_pre_key();
  ExpectInvalid(req, alice, "signed_pre_key: is required");
  // Nothing was stored.
  EXPECT_EQ(storage_->keys().GetDeviceKeys(alice, 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Count(alice, 1), 0u);
  EXPECT_EQ(FetchStatus(fetcher_, 1, alice).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(KeyDirectoryTest, MalformedKeysAreRejectedNamingTheField) {
  const std::string alice = NewAccount();
  Install install = NewInstall();
  const v1::UploadKeysRequest good = Upload(install, 3);

  v1::UploadKeysRequest req = good;
  req.clear_identity_key();
  ExpectInvalid(req, alice, "identity_key: is required");
  req = good;
  req.set_identity_key(good.identity_key().substr(1));  // raw 32 bytes
  ExpectInvalid(req, alice, "identity_key: must be a 33-byte");
  req = good;
  req.set_identity_key(good.identity_key() + "x");
  ExpectInvalid(req, alice, "got 34 bytes");
  req = good;
  std::string bad_type = good.identity_key();
  bad_type[0] = 0x06;
  req.set_identity_key(bad_type);
  ExpectInvalid(req, alice, "identity_key: unknown key type 0x06");

  req = good;
  req.mutable_signed_pre_key()->set_public_key(good.signed_pre_key().public_key().substr(0, 20));
  ExpectInvalid(req, alice, "signed_pre_key.public_key: must be a 33-byte");
  req = good;
  std::string spk = good.signed_pre_key().public_key();
  spk[0] = 0x00;
  req.mutable_signed_pre_key()->set_public_key(spk);
  ExpectInvalid(req, alice, "signed_pre_key.public_key: unknown key type 0x00");

  req = good;
  req.mutable_one_time_pre_keys(2)->set_public_key(std::string(33, '\x07'));
  ExpectInvalid(req, alice, "one_time_pre_keys[2].public_key: unknown key type 0x07");
  req = good;
  req.mutable_one_time_pre_keys(1)->clear_public_key();
  ExpectInvalid(req, alice, "one_time_pre_keys[1].public_key: is required");
  req = good;
  req.mutable_one_time_pre_keys(2)->set_key_id(good.one_time_pre_keys(0).key_id());
  ExpectInvalid(req, alice, "one_time_pre_keys[2].key_id: duplicate id");

  for (uint32_t bad : {0u, 16381u, 70000u}) {
    req = good;
    req.set_registration_id(bad);
    ExpectInvalid(req, alice, "registration_id: must be 1..16380");
  }
  for (uint32_t ok : {1u, 16380u}) {
    req = good;
    req.set_registration_id(ok);
    EXPECT_TRUE(keys_->Upload(alice, 1, req).ok()) << ok;
  }
}

TEST_F(KeyDirectoryTest, TooManyPreKeys) {
  const std::string alice = NewAccount();
  Install install = NewInstall();
  ExpectInvalid(Upload(install, 101), alice, "one_time_pre_keys: at most 100 per upload, got 101");
  EXPECT_EQ(Count(alice, 1), 0u);
  // The per-device cap (1000): ten full uploads fit, the eleventh does not.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(keys_->Upload(alice, 1, Upload(install, 100)).ok());
  EXPECT_EQ(Count(alice, 1), 1000u);
  absl::Status s = keys_->Upload(alice, 1, Upload(install, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("one_time_pre_keys:"));
  EXPECT_EQ(Count(alice, 1), 1000u);
}

TEST_F(KeyDirectoryTest, FetchConsumesExactlyOnePerDeviceThenFallsBack) {
  const std::string alice = NewAccount();
  const uint32_t laptop = AddDevice(alice);
  const uint32_t tablet = AddDevice(alice);  // never uploads: skipped
  Install phone_keys = NewInstall(11), laptop_keys = NewInstall(22);
  v1::UploadKeysRequest phone_req = Upload(phone_keys, 2);
  v1::UploadKeysRequest laptop_req = Upload(laptop_keys, 1);
  ASSERT_TRUE(keys_->Upload(alice, 1, phone_req).ok());
  ASSERT_TRUE(keys_->Upload(alice, laptop, laptop_req).ok());

  v1::FetchBundlesResponse r1 = Fetch(alice);
  ASSERT_EQ(r1.bundles_size(), 2);
  EXPECT_EQ(r1.bundles(0).device_id(), 1u);
  EXPECT_EQ(r1.bundles(0).registration_id(), 11u);
  EXPECT_EQ(r1.bundles(1).device_id(), laptop);
  EXPECT_EQ(r1.bundles(1).registration_id(), 22u);
  EXPECT_EQ(r1.bundles(0).one_time_pre_key().public_key(), phone_req.one_time_pre_keys(0).public_key());
  EXPECT_EQ(r1.bundles(1).one_time_pre_key().public_key(), laptop_req.one_time_pre_keys(0).public_key());
  EXPECT_EQ(Count(alice, 1), 1u);
  EXPECT_EQ(Count(alice, laptop), 0u);
  EXPECT_EQ(Count(alice, tablet), 0u);

  v1::FetchBundlesResponse r2 = Fetch(alice);
  ASSERT_EQ(r2.bundles_size(), 2);
  EXPECT_EQ(r2.bundles(0).one_time_pre_key().key_id(), phone_req.one_time_pre_keys(1).key_id());
  EXPECT_FALSE(r2.bundles(1).has_one_time_pre_key());  // laptop ran out
  EXPECT_EQ(r2.bundles(1).signed_pre_key().public_key(), laptop_req.signed_pre_key().public_key());

  v1::FetchBundlesResponse r3 = Fetch(alice);
  ASSERT_EQ(r3.bundles_size(), 2);
  for (const auto& b : r3.bundles()) {
    EXPECT_FALSE(b.has_one_time_pre_key());
    EXPECT_TRUE(b.has_signed_pre_key());
    EXPECT_TRUE(Verifies(b.identity_key(), b.signed_pre_key().public_key(),
                         b.signed_pre_key().signature()));
  }
}

TEST_F(KeyDirectoryTest, FetchErrors) {
  const std::string alice = NewAccount();
  EXPECT_EQ(FetchStatus(fetcher_, 1, "").code(), absl::StatusCode::kInvalidArgument);
  absl::Status s = FetchStatus(fetcher_, 1, "not-an-id");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("account_id"));
  const std::string unknown = NewAccountId();
  s = FetchStatus(fetcher_, 1, unknown);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(unknown));
  s = FetchStatus(fetcher_, 1, alice);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(absl::StrCat("account ", alice, " has not published keys")));

  // Fetching one's own account leaves one's own device out.
  Install install = NewInstall();
  ASSERT_TRUE(keys_->Upload(alice, 1, Upload(install, 3)).ok());
  s = FetchStatus(alice, 1, alice);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(Count(alice, 1), 3u);
  const uint32_t laptop = AddDevice(alice);
  v1::FetchBundlesRequest req;
  req.set_account_id(alice);
  auto own = keys_->Fetch(alice, laptop, req);
  ASSERT_TRUE(own.ok()) << own.status();
  ASSERT_EQ(own->bundles_size(), 1);
  EXPECT_EQ(own->bundles(0).device_id(), 1u);
  EXPECT_EQ(Count(alice, 1), 2u);
}

TEST_F(KeyDirectoryTest, NewIdentityReplacesEverythingAndClearsPreKeys) {
  const std::string alice = NewAccount();
  Install old_install = NewInstall(100);
  ASSERT_TRUE(keys_->Upload(alice, 1, Upload(old_install, 10)).ok());
  EXPECT_EQ(Count(alice, 1), 10u);
  // Reinstall: a new identity key; the old one-time pre-keys are useless.
  Install reinstall = NewInstall(200);
  v1::UploadKeysRequest fresh = Upload(reinstall, 0);
  ASSERT_TRUE(keys_->Upload(alice, 1, fresh).ok());
  EXPECT_EQ(Count(alice, 1), 0u);
  v1::FetchBundlesResponse r = Fetch(alice);
  ASSERT_EQ(r.bundles_size(), 1);
  EXPECT_EQ(r.bundles(0).identity_key(), fresh.identity_key());
  EXPECT_EQ(r.bundles(0).registration_id(), 200u);
  EXPECT_FALSE(r.bundles(0).has_one_time_pre_key());
  EXPECT_EQ(storage_->accounts().GetDevice(alice, 1)->registration_id, 200u);
  // New one-time pre-keys under the new identity (ids may restart at 1).
  v1::UploadKeysRequest more = Upload(reinstall, 2);
  ASSERT_TRUE(keys_->Upload(alice, 1, more).ok());
  r = Fetch(alice);
  EXPECT_EQ(r.bundles(0).one_time_pre_key().public_key(), more.one_time_pre_keys(0).public_key());
}

TEST_F(KeyDirectoryTest, RemovedDeviceKeysAreGone) {
  const std::string alice = NewAccount();
  const uint32_t laptop = AddDevice(alice);
  Install a = NewInstall(), b = NewInstall();
  ASSERT_TRUE(keys_->Upload(alice, 1, Upload(a, 3)).ok());
  ASSERT_TRUE(keys_->Upload(alice, laptop, Upload(b, 3)).ok());
  ASSERT_TRUE(storage_->accounts().RemoveDevice(alice, laptop).ok());
  EXPECT_EQ(storage_->keys().GetDeviceKeys(alice, laptop).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Count(alice, laptop), 0u);
  v1::FetchBundlesResponse r = Fetch(alice);
  ASSERT_EQ(r.bundles_size(), 1);
  EXPECT_EQ(r.bundles(0).device_id(), 1u);
  // A removed device cannot publish again.
  EXPECT_EQ(keys_->Upload(alice, laptop, Upload(b, 1)).code(), absl::StatusCode::kNotFound);
}

// 8 threads fetch concurrently from an account with 2 devices of 50
// one-time pre-keys each: every key is handed out exactly once, and once
// they are gone bundles come without one.
TEST_F(KeyDirectoryTest, ConcurrentFetchersNeverShareAKey) {
  constexpr int kThreads = 8;
  constexpr int kKeysPerDevice = 50;
  constexpr int kFetchesPerThread = 10;  // 80 fetches > 50 keys per device
  const std::string alice = NewAccount();
  const uint32_t laptop = AddDevice(alice);
  Install a = NewInstall(1), b = NewInstall(2);
  ASSERT_TRUE(keys_->Upload(alice, 1, Upload(a, kKeysPerDevice)).ok());
  ASSERT_TRUE(keys_->Upload(alice, laptop, Upload(b, kKeysPerDevice)).ok());

  absl::Mutex mu;
  std::vector<std::string> handed_out;  // "device/key id"
  std::set<std::string> publics;
  int without_key = 0;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kFetchesPerThread; ++i) {
        v1::FetchBundlesRequest req;
        req.set_account_id(alice);
        auto r = keys_->Fetch(fetcher_, 1, req);
        if (!r.ok() || r->bundles_size() != 2) {
          ++errors;
          continue;
        }
        absl::MutexLock lock(&mu);
        for (const auto& bundle : r->bundles()) {
          if (bundle.has_one_time_pre_key()) {
            handed_out.push_back(
                absl::StrCat(bundle.device_id(), "/", bundle.one_time_pre_key().key_id()));
            publics.insert(bundle.one_time_pre_key().public_key());
          } else {
            ++without_key;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(handed_out.size(), 2u * kKeysPerDevice);
  std::set<std::string> distinct(handed_out.begin(), handed_out.end());
  EXPECT_EQ(distinct.size(), handed_out.size()) << "a key was handed out twice";
  EXPECT_EQ(publics.size(), 2u * kKeysPerDevice);
  EXPECT_EQ(without_key, 2 * (kThreads * kFetchesPerThread - kKeysPerDevice));
  EXPECT_EQ(Count(alice, 1), 0u);
  EXPECT_EQ(Count(alice, laptop), 0u);
  v1::FetchBundlesResponse after = Fetch(alice);
  ASSERT_EQ(after.bundles_size(), 2);
  EXPECT_FALSE(after.bundles(0).has_one_time_pre_key());
  EXPECT_FALSE(after.bundles(1).has_one_time_pre_key());
}

}  // namespace
}  // namespace parley::core
