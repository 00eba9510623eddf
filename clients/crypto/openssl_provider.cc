// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/crypto/openssl_provider.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace parley::crypto {
namespace {

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

// Fetched once; EVP_MAC objects are immutable and shareable across threads.
EVP_MAC* HmacAlgorithm() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

int Random(uint8_t* data, size_t len, void* /*user_data*/) {
  while (len > 0) {
    const int chunk = len > INT_MAX ? INT_MAX : static_cast<int>(len);
    if (RAND_bytes(data, chunk) != 1) return SG_ERR_UNKNOWN;
    data += chunk;
    len -= static_cast<size_t>(chunk);
  }
  return SG_SUCCESS;
}

int HmacInit(void** hmac_context, const uint8_t* key, size_t key_len,
             void* /*user_data*/) {
  EVP_MAC* mac = HmacAlgorithm();
  if (mac == nullptr) return SG_ERR_UNKNOWN;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  if (ctx == nullptr) return SG_ERR_NOMEM;
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  // HMAC zero-pads the key to the block size, so an empty key is the same as
  // a single zero byte; OpenSSL refuses a zero-length key.
  static const uint8_t kZero = 0;
  const uint8_t* k = key_len == 0 ? &kZero : key;
  const size_t kl = key_len == 0 ? 1 : key_len;
  if (EVP_MAC_init(ctx, k, kl, params) != 1) {
    EVP_MAC_CTX_free(ctx);
    return SG_ERR_UNKNOWN;
  }
  *hmac_context = ctx;
  return SG_SUCCESS;
}

int HmacUpdate(void* hmac_context, const uint8_t* data, size_t data_len,
               void* /*user_data*/) {
  if (data_len == 0) return SG_SUCCESS;
  return EVP_MAC_update(static_cast<EVP_MAC_CTX*>(hmac_context), data,
                        data_len) == 1
             ? SG_SUCCESS
             : SG_ERR_UNKNOWN;
}

int HmacFinal(void* hmac_context, signal_buffer** output,
              void* /*user_data*/) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t out_len = 0;
  if (EVP_MAC_final(static_cast<EVP_MAC_CTX*>(hmac_context), out, &out_len,
                    sizeof(out)) != 1) {
    return SG_ERR_UNKNOWN;
  }
  signal_buffer* buf = signal_buffer_create(out, out_len);
  OPENSSL_cleanse(out, sizeof(out));
  if (buf == nullptr) return SG_ERR_NOMEM;
  *output = buf;
  return SG_SUCCESS;
}

void HmacCleanup(void* hmac_context, void* /*user_data*/) {
  EVP_MAC_CTX_free(static_cast<EVP_MAC_CTX*>(hmac_context));
}

int Sha512Init(void** digest_context, void* /*user_data*/) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return SG_ERR_NOMEM;
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    return SG_ERR_UNKNOWN;
  }
  *digest_context = ctx;
  return SG_SUCCESS;
}

int Sha512Update(void* digest_context, const uint8_t* data, size_t data_len,
                 void* /*user_data*/) {
  if (data_len == 0) return SG_SUCCESS;
  return EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(digest_context), data,
                          data_len) == 1
             ? SG_SUCCESS
             : SG_ERR_UNKNOWN;
}

int Sha512Final(void* digest_context, signal_buffer** output,
                void* /*user_data*/) {
  auto* ctx = static_cast<EVP_MD_CTX*>(digest_context);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int out_len = 0;
  if (EVP_DigestFinal_ex(ctx, out, &out_len) != 1) return SG_ERR_UNKNOWN;
  signal_buffer* buf = signal_buffer_create(out, out_len);
  OPENSSL_cleanse(out, sizeof(out));
  if (buf == nullptr) return SG_ERR_NOMEM;
  // The contract asks for a context ready for reuse.
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) != 1) {
    signal_buffer_free(buf);
    return SG_ERR_UNKNOWN;
  }
  *output = buf;
  return SG_SUCCESS;
}

void Sha512Cleanup(void* digest_context, void* /*user_data*/) {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(digest_context));
}

const EVP_CIPHER* SelectCipher(int cipher, size_t key_len) {
  switch (cipher) {
    case SG_CIPHER_AES_CBC_PKCS5:
      switch (key_len) {
        case 16: return EVP_aes_128_cbc();
        case 24: return EVP_aes_192_cbc();
        case 32: return EVP_aes_256_cbc();
        default: return nullptr;
      }
    case SG_CIPHER_AES_CTR_NOPADDING:
      switch (key_len) {
        case 16: return EVP_aes_128_ctr();
        case 24: return EVP_aes_192_ctr();
        case 32: return EVP_aes_256_ctr();
        default: return nullptr;
      }
    default:
      return nullptr;
  }
}

int Crypt(bool encrypt, signal_buffer** output, int cipher, const uint8_t* key,
          size_t key_len, const uint8_t* iv, size_t iv_len, const uint8_t* in,
          size_t in_len) {
  const EVP_CIPHER* evp = SelectCipher(cipher, key_len);
  if (evp == nullptr || key == nullptr || iv == nullptr || iv_len != 16 ||
      (in == nullptr && in_len > 0) || in_len > static_cast<size_t>(INT_MAX) - 64) {
    return SG_ERR_INVAL;
  }
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return SG_ERR_NOMEM;
  if (EVP_CipherInit_ex(ctx.get(), evp, nullptr, key, iv, encrypt ? 1 : 0) != 1) {
    return SG_ERR_UNKNOWN;
  }
  EVP_CIPHER_CTX_set_padding(ctx.get(), cipher == SG_CIPHER_AES_CBC_PKCS5 ? 1 : 0);

  std::vector<uint8_t> tmp(in_len + 32);
  int n1 = 0;
  int n2 = 0;
  int rc = SG_SUCCESS;
  if (in_len > 0 && EVP_CipherUpdate(ctx.get(), tmp.data(), &n1, in,
                                     static_cast<int>(in_len)) != 1) {
    rc = SG_ERR_UNKNOWN;
  } else if (EVP_CipherFinal_ex(ctx.get(), tmp.data() + n1, &n2) != 1) {
    rc = SG_ERR_UNKNOWN;  // e.g. bad PKCS#5 padding on decryption
  } else {
    signal_buffer* buf =
        signal_buffer_create(tmp.data(), static_cast<size_t>(n1 + n2));
    if (buf == nullptr) {
      rc = SG_ERR_NOMEM;
    } else {
      *output = buf;
    }
  }
  OPENSSL_cleanse(tmp.data(), tmp.size());
  return rc;
}

int Encrypt(signal_buffer** output, int cipher, const uint8_t* key,
            size_t key_len, const uint8_t* iv, size_t iv_len,
            const uint8_t* plaintext, size_t plaintext_len,
            void* /*user_data*/) {
  return Crypt(true, output, cipher, key, key_len, iv, iv_len, plaintext,
               plaintext_len);
}

int Decrypt(signal_buffer** output, int cipher, const uint8_t* key,
            size_t key_len, const uint8_t* iv, size_t iv_len,
            const uint8_t* ciphertext, size_t ciphertext_len,
            void* /*user_data*/) {
  return Crypt(false, output, cipher, key, key_len, iv, iv_len, ciphertext,
               ciphertext_len);
}

const signal_crypto_provider kProvider = {
    .random_func = Random,
    .hmac_sha256_init_func = HmacInit,
    .hmac_sha256_update_func = HmacUpdate,
    .hmac_sha256_final_func = HmacFinal,
    .hmac_sha256_cleanup_func = HmacCleanup,
    .sha512_digest_init_func = Sha512Init,
    .sha512_digest_update_func = Sha512Update,
    .sha512_digest_final_func = Sha512Final,
    .sha512_digest_cleanup_func = Sha512Cleanup,
    .encrypt_func = Encrypt,
    .decrypt_func = Decrypt,
    .user_data = nullptr,
};

}  // namespace

const signal_crypto_provider& OpenSslCryptoProvider() { return kProvider; }

void SignalLock(void* recursive_mutex) {
  static_cast<std::recursive_mutex*>(recursive_mutex)->lock();
}

void SignalUnlock(void* recursive_mutex) {
  static_cast<std::recursive_mutex*>(recursive_mutex)->unlock();
}

}  // namespace parley::crypto
