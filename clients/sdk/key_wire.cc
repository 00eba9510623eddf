// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/sdk/key_wire.h"

#include <algorithm>

namespace parley {

crypto::PreKeyBundle BundleFromProto(const v1::PreKeyBundle& b) {
  crypto::PreKeyBundle cb;
  cb.registration_id = b.registration_id();
  cb.device_id = static_cast<int32_t>(b.device_id());
  cb.identity_key = crypto::PublicKey::FromSerialized(b.identity_key());
  cb.signed_pre_key.id = b.signed_pre_key().key_id();
  cb.signed_pre_key.key =
      crypto::PublicKey::FromSerialized(b.signed_pre_key().public_key());
  cb.signed_pre_key.signature = b.signed_pre_key().signature();
  if (b.has_one_time_pre_key() && !b.one_time_pre_key().public_key().empty()) {
    cb.one_time_pre_key = crypto::OneTimePreKeyPublic{
        b.one_time_pre_key().key_id(),
        crypto::PublicKey::FromSerialized(b.one_time_pre_key().public_key())};
  }
  return cb;
}

std::vector<v1::UploadKeysRequest> UploadRequests(const crypto::PreKeyUpload& up,
                                                  size_t max_pre_keys) {
  max_pre_keys = std::max<size_t>(max_pre_keys, 1);
  std::vector<v1::UploadKeysRequest> out;
  size_t next = 0;
  do {
    v1::UploadKeysRequest& req = out.emplace_back();
    req.set_identity_key(up.identity_key.serialized());
    req.set_registration_id(up.registration_id);
    v1::SignedPreKey* spk = req.mutable_signed_pre_key();
    spk->set_key_id(up.signed_pre_key.id);
    spk->set_public_key(up.signed_pre_key.key.serialized());
    spk->set_signature(up.signed_pre_key.signature);
    for (size_t n = 0; n < max_pre_keys && next < up.one_time_pre_keys.size();
         ++n, ++next) {
      v1::PreKey* k = req.add_one_time_pre_keys();
      k->set_key_id(up.one_time_pre_keys[next].id);
      k->set_public_key(up.one_time_pre_keys[next].key.serialized());
    }
  } while (next < up.one_time_pre_keys.size());
  return out;
}

}  // namespace parley
