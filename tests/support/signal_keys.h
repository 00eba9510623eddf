// Test helper: real Signal-protocol key material (Curve25519 key pairs,
// XEdDSA-signed pre-keys) made with libsignal-protocol-c, for tests that
// upload keys through the KeyService. Link PkgConfig::SIGNAL and
// OpenSSL::Crypto.
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TESTS_SUPPORT_SIGNAL_KEYS_H_
#define PARLEY_TESTS_SUPPORT_SIGNAL_KEYS_H_

#include <openssl/rand.h>
#include <signal/curve.h>
#include <signal/signal_protocol.h>

#include <string>

#include "gtest/gtest.h"
#include "parley/v1/parley.pb.h"

namespace parley::testing::signal_keys {

// libsignal's key generation and signing use only the provider's random
// function; the HMAC functions are mandatory fields but unused here.
inline int Random(uint8_t* data, size_t len, void*) {
  return RAND_bytes(data, static_cast<int>(len)) == 1 ? 0 : SG_ERR_UNKNOWN;
}
inline int HmacInit(void**, const uint8_t*, size_t, void*) { return SG_ERR_UNKNOWN; }
inline int HmacUpdate(void*, const uint8_t*, size_t, void*) { return SG_ERR_UNKNOWN; }
inline int HmacFinal(void*, signal_buffer**, void*) { return SG_ERR_UNKNOWN; }
inline void HmacCleanup(void*, void*) {}

inline std::string Take(signal_buffer* b) {
  std::string s(reinterpret_cast<const char*>(signal_buffer_const_data(b)), signal_buffer_len(b));
  signal_buffer_free(b);
  return s;
}

// Makes the key material of simulated client installs (test thread only).
class KeyMaker {
 public:
  KeyMaker() {
    EXPECT_EQ(signal_context_create(&ctx_, nullptr), 0);
    signal_crypto_provider p = {};
    p.random_func = Random;
    p.hmac_sha256_init_func = HmacInit;
    p.hmac_sha256_update_func = HmacUpdate;
    p.hmac_sha256_final_func = HmacFinal;
    p.hmac_sha256_cleanup_func = HmacCleanup;
    EXPECT_EQ(signal_context_set_crypto_provider(ctx_, &p), 0);
  }
  ~KeyMaker() { signal_context_destroy(ctx_); }
  KeyMaker(const KeyMaker&) = delete;
  KeyMaker& operator=(const KeyMaker&) = delete;

  // One install: an identity key pair, signing fresh signed pre-keys.
  class Install {
   public:
    Install(KeyMaker* m, uint32_t registration_id) : m_(m), registration_id_(registration_id) {
      EXPECT_EQ(curve_generate_key_pair(m_->ctx_, &identity_), 0);
    }
    ~Install() { SIGNAL_UNREF(identity_); }
    Install(const Install&) = delete;
    Install& operator=(const Install&) = delete;

    v1::UploadKeysRequest Upload(int one_time, uint32_t signed_id = 1) {
      v1::UploadKeysRequest req;
      req.set_identity_key(Public(identity_));
      req.set_registration_id(registration_id_);
      ec_key_pair* spk = m_->NewPair();
      const std::string spk_public = Public(spk);
      SIGNAL_UNREF(spk);
      signal_buffer* sig = nullptr;
      EXPECT_EQ(curve_calculate_signature(m_->ctx_, &sig, ec_key_pair_get_private(identity_),
                                          reinterpret_cast<const uint8_t*>(spk_public.data()),
                                          spk_public.size()),
                0);
      req.mutable_signed_pre_key()->set_key_id(signed_id);
      req.mutable_signed_pre_key()->set_public_key(spk_public);
      req.mutable_signed_pre_key()->set_signature(Take(sig));
      for (int i = 0; i < one_time; ++i) {
        ec_key_pair* kp = m_->NewPair();
        v1::PreKey* k = req.add_one_time_pre_keys();
        k->set_key_id(next_id_++);
        k->set_public_key(Public(kp));
        SIGNAL_UNREF(kp);
      }
      return req;
    }

   private:
    KeyMaker* m_;
    uint32_t registration_id_;
    ec_key_pair* identity_ = nullptr;
    uint32_t next_id_ = 1;
  };

 private:
  ec_key_pair* NewPair() {
    ec_key_pair* kp = nullptr;
    EXPECT_EQ(curve_generate_key_pair(ctx_, &kp), 0);
    return kp;
  }
  static std::string Public(const ec_key_pair* kp) {
    signal_buffer* b = nullptr;
    EXPECT_EQ(ec_public_key_serialize(&b, ec_key_pair_get_public(kp)), 0);
    return Take(b);
  }

  signal_context* ctx_ = nullptr;
};

}  // namespace parley::testing::signal_keys

#endif  // PARLEY_TESTS_SUPPORT_SIGNAL_KEYS_H_
