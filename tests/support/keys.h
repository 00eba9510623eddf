// Test support: gives a registered device real Signal keys (clients/crypto)
// and uploads them to the key directory.
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TESTS_SUPPORT_KEYS_H_
#define PARLEY_TESTS_SUPPORT_KEYS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "clients/crypto/crypto.h"
#include "tests/support/api_client.h"

namespace parley::testing {

// Opens a crypto profile in `profile_dir`, generates `prekeys` one-time
// pre-keys and uploads everything for device `d`.
inline absl::StatusOr<std::unique_ptr<crypto::DeviceCrypto>> UploadFreshKeys(ApiClient& client, const Device& d,
                                                                             const std::string& profile_dir,
                                                                             size_t prekeys = 5) {
  auto c = crypto::DeviceCrypto::Open(profile_dir);
  if (!c.ok()) return c.status();
  auto up = (*c)->GeneratePreKeys(prekeys);
  if (!up.ok()) return up.status();
  v1::UploadKeysRequest req;
  req.set_identity_key(up->identity_key.serialized());
  req.set_registration_id(up->registration_id);
  req.mutable_signed_pre_key()->set_key_id(up->signed_pre_key.id);
  req.mutable_signed_pre_key()->set_public_key(up->signed_pre_key.key.serialized());
  req.mutable_signed_pre_key()->set_signature(up->signed_pre_key.signature);
  for (const auto& p : up->one_time_pre_keys) {
    auto* pk = req.add_one_time_pre_keys();
    pk->set_key_id(p.id);
    pk->set_public_key(p.key.serialized());
  }
  v1::UploadKeysResponse resp;
  auto ctx = client.Ctx(d);
  grpc::Status s = client.keys->UploadKeys(ctx.get(), req, &resp);
  if (!s.ok()) return absl::InternalError(absl::StrCat("UploadKeys: ", s.error_message()));
  return std::move(*c);
}

}  // namespace parley::testing

#endif  // PARLEY_TESTS_SUPPORT_KEYS_H_
