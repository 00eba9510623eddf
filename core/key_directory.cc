// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/key_directory.h"

#include <signal/curve.h>
#include <signal/signal_protocol.h>

#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/ids.h"
#include "core/status_macros.h"

namespace parley::core {
namespace {

constexpr unsigned char kDjbType = 0x05;  // libsignal's Curve25519 key type

const uint8_t* Bytes(const std::string& s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

// Owns one reference to a libsignal ec_public_key. The object is local to
// one call, so libsignal's non-atomic reference count is never shared.
class PublicKeyRef {
 public:
  PublicKeyRef() = default;
  PublicKeyRef(const PublicKeyRef&) = delete;
  PublicKeyRef& operator=(const PublicKeyRef&) = delete;
  ~PublicKeyRef() {
    if (key_ != nullptr) SIGNAL_UNREF(key_);
  }
  ec_public_key** out() { return &key_; }
  const ec_public_key* get() const { return key_; }

 private:
  ec_public_key* key_ = nullptr;
};

// Decodes a validated serialized public key. curve_decode_point only logs
// through the context, and signal_log accepts a null one.
absl::Status Decode(const std::string& key, absl::string_view field, PublicKeyRef* out) {
  if (curve_decode_point(out->out(), Bytes(key), key.size(), /*global_context=*/nullptr) != 0 ||
      out->get() == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not a valid Curve25519 public key"));
  }
  return absl::OkStatus();
}

absl::Status Named(const absl::Status& s, absl::string_view what) {
  if (absl::IsNotFound(s)) return absl::NotFoundError(absl::StrCat(what, " not found"));
  return s;
}

}  // namespace

absl::Status KeyDirectory::ValidatePublicKey(absl::string_view key, absl::string_view field) {
  if (key.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": is required"));
  if (key.size() != kPublicKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be a ", kPublicKeyBytes,
                     "-byte serialized Curve25519 public key (0x05 + 32 bytes), got ", key.size(),
                     " bytes"));
  }
  const auto type = static_cast<unsigned char>(key[0]);
  if (type != kDjbType) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": unknown key type 0x",
                                                   absl::Hex(type, absl::kZeroPad2),
                                                   " (expected 0x05, Curve25519)"));
  }
  PublicKeyRef decoded;
  return Decode(std::string(key), field, &decoded);
}

absl::Status KeyDirectory::ValidateUpload(const v1::UploadKeysRequest& req) {
  PARLEY_RETURN_IF_ERROR(ValidatePublicKey(req.identity_key(), "identity_key"));
  if (req.registration_id() < kMinRegistrationId || req.registration_id() > kMaxRegistrationId) {
    return absl::InvalidArgumentError(absl::StrCat("registration_id: must be ", kMinRegistrationId,
                                                   "..", kMaxRegistrationId, ", got ",
                                                   req.registration_id()));
  }
  if (!req.has_signed_pre_key()) {
    return absl::InvalidArgumentError("signed_pre_key: is required");
  }
  const v1::SignedPreKey& spk = req.signed_pre_key();
  PARLEY_RETURN_IF_ERROR(ValidatePublicKey(spk.public_key(), "signed_pre_key.public_key"));
  if (spk.signature().size() != kSignatureBytes) {
    return absl::InvalidArgumentError(absl::StrCat("signed_pre_key.signature: must be ",
                                                   kSignatureBytes, " bytes, got ",
                                                   spk.signature().size()));
  }
  // The identity key signs the serialized (33-byte) signed pre-key, as
  // libsignal's session builder checks it.
  PublicKeyRef identity;
  PARLEY_RETURN_IF_ERROR(Decode(req.identity_key(), "identity_key", &identity));
  if (curve_verify_signature(identity.get(), Bytes(spk.public_key()), spk.public_key().size(),
                             Bytes(spk.signature()), spk.signature().size()) != 1) {
    return absl::InvalidArgumentError(
        "signed_pre_key.signature: does not verify with identity_key");
  }

  if (static_cast<size_t>(req.one_time_pre_keys_size()) > kMaxPreKeysPerUpload) {
    return absl::InvalidArgumentError(absl::StrCat("one_time_pre_keys: at most ",
                                                   kMaxPreKeysPerUpload, " per upload, got ",
                                                   req.one_time_pre_keys_size()));
  }
  absl::flat_hash_set<uint32_t> ids;
  for (int i = 0; i < req.one_time_pre_keys_size(); ++i) {
    const v1::PreKey& k = req.one_time_pre_keys(i);
    PARLEY_RETURN_IF_ERROR(
        ValidatePublicKey(k.public_key(), absl::StrCat("one_time_pre_keys[", i, "].public_key")));
    if (!ids.insert(k.key_id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("one_time_pre_keys[", i, "].key_id: duplicate id ", k.key_id()));
    }
  }
  return absl::OkStatus();
}

absl::Status KeyDirectory::Upload(const std::string& account_id, uint32_t device_id,
                                  const v1::UploadKeysRequest& req) {
  PARLEY_RETURN_IF_ERROR(ValidateUpload(req));
  storage::DeviceKeysRecord keys;
  keys.account_id = account_id;
  keys.device_id = device_id;
  keys.identity_key = req.identity_key();
  keys.registration_id = req.registration_id();
  keys.signed_pre_key = {.key_id = req.signed_pre_key().key_id(),
                         .public_key = req.signed_pre_key().public_key(),
                         .signature = req.signed_pre_key().signature()};
  // Replaces the identity and signed pre-key; a new identity also drops the
  // old one-time pre-keys in the same write.
  PARLEY_RETURN_IF_ERROR(
      Named(storage_->keys().SetDeviceKeys(keys), absl::StrCat("device ", device_id)));

  // Mirror the registration id on the device record (ListDevices). Rewritten
  // on every upload that changes it, so a lost race with another device
  // record update heals with the next upload; fetchers read the key store.
  PARLEY_ASSIGN_OR_RETURN(storage::DeviceRecord device,
                          storage_->accounts().GetDevice(account_id, device_id));
  if (device.registration_id != req.registration_id()) {
    device.registration_id = req.registration_id();
    PARLEY_RETURN_IF_ERROR(storage_->accounts().UpdateDevice(device));
  }

  if (req.one_time_pre_keys_size() == 0) return absl::OkStatus();
  std::vector<storage::PreKeyRecord> pre_keys;
  pre_keys.reserve(req.one_time_pre_keys_size());
  for (const v1::PreKey& k : req.one_time_pre_keys()) {
    pre_keys.push_back({.key_id = k.key_id(), .public_key = k.public_key()});
  }
  absl::Status s = storage_->keys().AddOneTimePreKeys(account_id, device_id, pre_keys);
  if (absl::IsResourceExhausted(s)) {
    return absl::ResourceExhaustedError(absl::StrCat("one_time_pre_keys: ", s.message()));
  }
  return Named(s, absl::StrCat("device ", device_id));
}

absl::StatusOr<v1::GetPreKeyCountResponse> KeyDirectory::Count(const std::string& account_id,
                                                               uint32_t device_id) {
  PARLEY_ASSIGN_OR_RETURN(size_t n, storage_->keys().CountOneTimePreKeys(account_id, device_id));
  v1::GetPreKeyCountResponse resp;
  resp.set_count(static_cast<uint32_t>(n));
  return resp;
}

absl::StatusOr<v1::FetchBundlesResponse> KeyDirectory::Fetch(const std::string& account_id,
                                                             uint32_t device_id,
                                                             const v1::FetchBundlesRequest& req) {
  const std::string& target = req.account_id();
  PARLEY_RETURN_IF_ERROR(ValidateAccountId(target, "account_id"));
  absl::StatusOr<storage::AccountRecord> account = storage_->accounts().GetAccount(target);
  if (!account.ok()) return Named(account.status(), absl::StrCat("account ", target));
  PARLEY_ASSIGN_OR_RETURN(std::vector<storage::DeviceRecord> devices,
                          storage_->accounts().ListDevices(target));
  const bool own_account = target == account_id;
  v1::FetchBundlesResponse resp;
  for (const storage::DeviceRecord& d : devices) {
    // A device never starts a session with itself.
    if (own_account && d.device_id == device_id) continue;
    absl::StatusOr<storage::DeviceKeysRecord> keys =
        storage_->keys().GetDeviceKeys(target, d.device_id);
    if (absl::IsNotFound(keys.status())) continue;  // no keys published (yet)
    if (!keys.ok()) return keys.status();
    absl::StatusOr<storage::PreKeyRecord> one_time =
        storage_->keys().TakeOneTimePreKey(target, d.device_id);
    if (!one_time.ok() && !absl::IsNotFound(one_time.status())) return one_time.status();
    if (one_time.ok()) {
      // An upload with a new identity key (reinstall) between the two reads
      // may have replaced the one-time pre-keys: the taken key might not
      // belong to `keys`. Hand out the new keys without a one-time pre-key
      // then (always a consistent bundle).
      absl::StatusOr<storage::DeviceKeysRecord> again =
          storage_->keys().GetDeviceKeys(target, d.device_id);
      if (absl::IsNotFound(again.status())) continue;  // device just removed
      if (!again.ok()) return again.status();
      if (again->identity_key != keys->identity_key) {
        keys = std::move(again);
        one_time = absl::NotFoundError("taken under a replaced identity key");
      }
    }
    v1::PreKeyBundle* b = resp.add_bundles();
    b->set_device_id(d.device_id);
    b->set_registration_id(keys->registration_id);
    b->set_identity_key(std::move(keys->identity_key));
    v1::SignedPreKey* spk = b->mutable_signed_pre_key();
    spk->set_key_id(keys->signed_pre_key.key_id);
    spk->set_public_key(std::move(keys->signed_pre_key.public_key));
    spk->set_signature(std::move(keys->signed_pre_key.signature));
    if (one_time.ok()) {
      v1::PreKey* pk = b->mutable_one_time_pre_key();
      pk->set_key_id(one_time->key_id);
      pk->set_public_key(std::move(one_time->public_key));
    }
  }
  if (resp.bundles_size() == 0) {
    return absl::FailedPreconditionError(
        own_account ? absl::StrCat("account ", target, " has no other device with published keys")
                    : absl::StrCat("account ", target, " has not published keys"));
  }
  return resp;
}

}  // namespace parley::core
