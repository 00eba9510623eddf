// SPDX-License-Identifier: GPL-3.0-or-later
// Known-answer tests for the OpenSSL 3 crypto provider.
#include <signal/signal_protocol.h>

#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "clients/crypto/openssl_provider.h"
#include "gtest/gtest.h"

namespace parley::crypto {
namespace {

const signal_crypto_provider& P() { return OpenSslCryptoProvider(); }

std::string Unhex(const std::string& hex) { return absl::HexStringToBytes(hex); }
std::string Hex(signal_buffer* b) {
  std::string out = absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(signal_buffer_data(b)), signal_buffer_len(b)));
  signal_buffer_free(b);
  return out;
}
const uint8_t* U(const std::string& s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

std::string Hmac(const std::string& key, const std::string& data) {
  void* ctx = nullptr;
  EXPECT_EQ(P().hmac_sha256_init_func(&ctx, U(key), key.size(), nullptr), 0);
  // Feed in two pieces to exercise update.
  const size_t half = data.size() / 2;
  EXPECT_EQ(P().hmac_sha256_update_func(ctx, U(data), half, nullptr), 0);
  EXPECT_EQ(P().hmac_sha256_update_func(ctx, U(data) + half, data.size() - half,
                                        nullptr),
            0);
  signal_buffer* out = nullptr;
  EXPECT_EQ(P().hmac_sha256_final_func(ctx, &out, nullptr), 0);
  P().hmac_sha256_cleanup_func(ctx, nullptr);
  return Hex(out);
}

TEST(ProviderTest, HmacSha256Rfc4231Case1) {
  EXPECT_EQ(Hmac(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST(ProviderTest, HmacSha256Rfc4231Case2) {
  EXPECT_EQ(Hmac("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(ProviderTest, HmacSha256EmptyKey) {
  EXPECT_EQ(Hmac("", ""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(ProviderTest, Sha512FipsAbcAndReuse) {
  void* ctx = nullptr;
  ASSERT_EQ(P().sha512_digest_init_func(&ctx, nullptr), 0);
  const std::string kAbc = "abc";
  const std::string kExpected =
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
      "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
  for (int round = 0; round < 2; ++round) {  // final() must leave ctx reusable
    ASSERT_EQ(P().sha512_digest_update_func(ctx, U(kAbc), 1, nullptr), 0);
    ASSERT_EQ(P().sha512_digest_update_func(ctx, U(kAbc) + 1, 2, nullptr), 0);
    signal_buffer* out = nullptr;
    ASSERT_EQ(P().sha512_digest_final_func(ctx, &out, nullptr), 0);
    EXPECT_EQ(Hex(out), kExpected) << "round " << round;
  }
  P().sha512_digest_cleanup_func(ctx, nullptr);
}

const char kAes256Key[] =
    "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";

TEST(ProviderTest, AesCbc256Sp800_38aF25FirstBlock) {
  const std::string key = Unhex(kAes256Key);
  const std::string iv = Unhex("000102030405060708090a0b0c0d0e0f");
  const std::string pt = Unhex("6bc1bee22e409f96e93d7e117393172a");
  signal_buffer* out = nullptr;
  ASSERT_EQ(P().encrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, U(key), key.size(), U(iv),
                             iv.size(), U(pt), pt.size(), nullptr),
            0);
  const std::string hex = Hex(out);
  ASSERT_EQ(hex.size(), 64u);  // one block + one full padding block
  EXPECT_EQ(hex.substr(0, 32), "f58c4c04d6e5f1ba779eabfb5f7bfbd6");
}

TEST(ProviderTest, AesCbcPkcs5RoundTripAllLengths) {
  for (size_t key_len : {16u, 32u}) {
    const std::string key(key_len, '\x42');
    const std::string iv(16, '\x07');
    for (size_t n = 0; n <= 40; ++n) {
      std::string pt(n, '\0');
      for (size_t i = 0; i < n; ++i) pt[i] = static_cast<char>(i * 7 + 1);
      signal_buffer* ct = nullptr;
      ASSERT_EQ(P().encrypt_func(&ct, SG_CIPHER_AES_CBC_PKCS5, U(key), key.size(),
                                 U(iv), iv.size(), U(pt), pt.size(), nullptr),
                0);
      EXPECT_EQ(signal_buffer_len(ct), (n / 16 + 1) * 16) << n;
      signal_buffer* back = nullptr;
      ASSERT_EQ(P().decrypt_func(&back, SG_CIPHER_AES_CBC_PKCS5, U(key), key.size(),
                                 U(iv), iv.size(), signal_buffer_data(ct),
                                 signal_buffer_len(ct), nullptr),
                0);
      EXPECT_EQ(std::string(reinterpret_cast<char*>(signal_buffer_data(back)),
                            signal_buffer_len(back)),
                pt);
      signal_buffer_free(back);
      signal_buffer_free(ct);
    }
  }
}

TEST(ProviderTest, AesCbcRejectsBadPaddingAndBadKeyLength) {
  const std::string key(32, '\x01');
  const std::string iv(16, '\x02');
  const std::string garbage(16, '\x55');
  signal_buffer* out = nullptr;
  // Encrypt one block (-> block + padding block), then flip a bit of the last
  // byte of C1: the decrypted padding byte becomes 0x11, which is invalid.
  ASSERT_EQ(P().encrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, U(key), key.size(), U(iv),
                             iv.size(), U(garbage), garbage.size(), nullptr),
            0);
  std::string ct(reinterpret_cast<char*>(signal_buffer_data(out)),
                 signal_buffer_len(out));
  signal_buffer_free(out);
  out = nullptr;
  ASSERT_EQ(ct.size(), 32u);
  ct[15] = static_cast<char>(ct[15] ^ 0x01);
  EXPECT_LT(P().decrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, U(key), key.size(), U(iv),
                             iv.size(), U(ct), ct.size(), nullptr),
            0);
  EXPECT_EQ(P().encrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, U(key), 20, U(iv),
                             iv.size(), U(garbage), garbage.size(), nullptr),
            SG_ERR_INVAL);
  EXPECT_EQ(P().encrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, U(key), 32, U(iv), 8,
                             U(garbage), garbage.size(), nullptr),
            SG_ERR_INVAL);
  EXPECT_EQ(P().encrypt_func(&out, 99, U(key), 32, U(iv), 16, U(garbage),
                             garbage.size(), nullptr),
            SG_ERR_INVAL);
  // Truncated ciphertext (not a whole block) must fail.
  EXPECT_LT(P().decrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, U(key), key.size(), U(iv),
                             iv.size(), U(garbage), 15, nullptr),
            0);
}

TEST(ProviderTest, AesCtr256Sp800_38aF55) {
  const std::string key = Unhex(kAes256Key);
  const std::string ctr = Unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
  const std::string pt = Unhex(
      "6bc1bee22e409f96e93d7e117393172a"
      "ae2d8a571e03ac9c9eb76fac45af8e51"
      "30c81c46a35ce411e5fbc1191a0a52ef"
      "f69f2445df4f9b17ad2b417be66c3710");
  const std::string expected =
      "601ec313775789a5b7a7f504bbf3d228"
      "f443e3ca4d62b59aca84e990cacaf5c5"
      "2b0930daa23de94ce87017ba2d84988d"
      "dfc9c58db67aada613c2dd08457941a6";
  signal_buffer* out = nullptr;
  ASSERT_EQ(P().encrypt_func(&out, SG_CIPHER_AES_CTR_NOPADDING, U(key), key.size(),
                             U(ctr), ctr.size(), U(pt), pt.size(), nullptr),
            0);
  EXPECT_EQ(Hex(out), expected);
  const std::string ct = Unhex(expected);
  ASSERT_EQ(P().decrypt_func(&out, SG_CIPHER_AES_CTR_NOPADDING, U(key), key.size(),
                             U(ctr), ctr.size(), U(ct), ct.size(), nullptr),
            0);
  EXPECT_EQ(Hex(out), absl::BytesToHexString(pt));
  // CTR is a stream mode: odd lengths, no padding.
  ASSERT_EQ(P().encrypt_func(&out, SG_CIPHER_AES_CTR_NOPADDING, U(key), key.size(),
                             U(ctr), ctr.size(), U(pt), 5, nullptr),
            0);
  EXPECT_EQ(Hex(out), expected.substr(0, 10));
}

TEST(ProviderTest, RandomFillsBuffer) {
  uint8_t a[64] = {};
  uint8_t b[64] = {};
  ASSERT_EQ(P().random_func(a, sizeof(a), nullptr), 0);
  ASSERT_EQ(P().random_func(b, sizeof(b), nullptr), 0);
  EXPECT_NE(std::string(reinterpret_cast<char*>(a), 64),
            std::string(reinterpret_cast<char*>(b), 64));
}

}  // namespace
}  // namespace parley::crypto
