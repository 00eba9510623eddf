// SPDX-License-Identifier: GPL-3.0-or-later
#include "api/parley/franking/franking.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "absl/strings/str_cat.h"

namespace parley::franking {
namespace {

void PutBE32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutBE64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutLP(std::string* out, absl::string_view s) {
  PutBE32(out, static_cast<uint32_t>(s.size()));
  out->append(s.data(), s.size());
}

absl::StatusOr<std::string> HmacSha256(absl::string_view key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t out_len = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, sizeof(out),
                &out_len) == nullptr ||
      out_len != 32) {
    return absl::InternalError("franking: HMAC-SHA256 failed in OpenSSL");
  }
  return std::string(reinterpret_cast<const char*>(out), out_len);
}

}  // namespace

absl::StatusOr<std::string> NewKey() {
  std::string key(kKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    return absl::InternalError("franking: the random generator failed");
  }
  return key;
}

absl::StatusOr<std::string> Commit(absl::string_view franking_key, const CommitInput& in) {
  if (franking_key.size() != kKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("franking key: ", franking_key.size(), " bytes, expected ", kKeyBytes));
  }
  std::string data = "parley-franking-v1";
  PutLP(&data, in.conversation_id);
  PutLP(&data, in.sender_account_id);
  PutBE32(&data, in.sender_device_id);
  PutLP(&data, in.client_message_id);
  PutBE64(&data, static_cast<uint64_t>(in.sent_at_ms));
  PutLP(&data, in.content_type);
  PutLP(&data, in.content);
  auto mac = HmacSha256(franking_key, data);
  OPENSSL_cleanse(data.data(), data.size());  // holds plaintext
  return mac;
}

absl::StatusOr<std::string> Stamp(absl::string_view server_key, const StampInput& in) {
  if (server_key.size() < 32) {
    return absl::InvalidArgumentError("franking: the server stamp key must be at least 32 bytes");
  }
  if (in.commitment.size() != kCommitmentBytes) {
    return absl::InvalidArgumentError(absl::StrCat("franking commitment: ", in.commitment.size(),
                                                   " bytes, expected ", kCommitmentBytes));
  }
  std::string data = "parley-stamp-v1";
  PutLP(&data, in.commitment);
  PutLP(&data, in.conversation_id);
  PutLP(&data, in.sender_account_id);
  PutBE32(&data, in.sender_device_id);
  PutLP(&data, in.client_message_id);
  PutBE64(&data, in.seq);
  PutBE64(&data, static_cast<uint64_t>(in.server_time_ms));
  return HmacSha256(server_key, data);
}

bool Equal(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace parley::franking
