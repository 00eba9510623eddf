// The Signal-protocol key directory (server side of KeyService), modelled on
// Signal-Server's keys API.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Every device publishes its identity key, registration id, one signed
// pre-key and a batch of one-time pre-keys. A device that wants to start an
// end-to-end encrypted session with an account fetches one bundle per device
// of that account; each fetch consumes one one-time pre-key per device (at
// most once: storage::KeyStore::TakeOneTimePreKey), and a bundle has none when
// the device ran out (X3DH then falls back to the signed pre-key alone).
//
// Transport-agnostic: takes and returns parley.v1 messages and absl::Status
// (errors are INVALID_ARGUMENT naming the offending field, NOT_FOUND,
// FAILED_PRECONDITION, RESOURCE_EXHAUSTED, or a storage error); the gRPC
// adapter (KeyGrpc in grpc_services.h) authenticates the caller.
//
// Verification: public keys must be serialized Curve25519 keys (33 bytes: the
// type byte 0x05 and 32 key bytes) and the signed pre-key's signature (64
// bytes, XEdDSA) must verify over the serialized signed pre-key with the
// identity key, both checked with libsignal-protocol-c (no signal_context
// needed: verification uses no crypto provider).
//
// Thread-safe: all methods may be called concurrently. Does not own the
// storage, which must outlive it.
#ifndef PARLEY_CORE_KEY_DIRECTORY_H_
#define PARLEY_CORE_KEY_DIRECTORY_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parley/v1/parley.pb.h"
#include "storage/storage.h"

namespace parley::core {

class KeyDirectory {
 public:
  // Registration ids are 14-bit values chosen by the client (libsignal's
  // key helper generates 1..16380).
  static constexpr uint32_t kMinRegistrationId = 1;
  static constexpr uint32_t kMaxRegistrationId = 16380;
  static constexpr size_t kMaxPreKeysPerUpload = 100;
  static constexpr size_t kPublicKeyBytes = 33;  // 0x05 + 32
  static constexpr size_t kSignatureBytes = 64;

  explicit KeyDirectory(storage::Storage* storage) : storage_(storage) {}

  // Publishes the calling device's keys: replaces its identity key,
  // registration id and signed pre-key and adds the one-time pre-keys (a key
  // with the id of a stored one replaces it). A different identity key than
  // the stored one (a reinstall) discards the device's old one-time pre-keys.
  // The registration id is also recorded on the device (ListDevices).
  // INVALID_ARGUMENT names the bad field (e.g. "signed_pre_key.signature:
  // does not verify with identity_key"); RESOURCE_EXHAUSTED when the device
  // would store more than storage::KeyStore::kMaxOneTimePreKeys one-time
  // pre-keys (the identity and signed pre-key are updated even then).
  absl::Status Upload(const std::string& account_id, uint32_t device_id,
                      const v1::UploadKeysRequest& req);

  // The number of one-time pre-keys the calling device has left on the
  // server (clients upload more when it runs low).
  absl::StatusOr<v1::GetPreKeyCountResponse> Count(const std::string& account_id,
                                                   uint32_t device_id);

  // One bundle per device of `req.account_id()` that has published keys,
  // ascending by device id, each with one one-time pre-key taken from the
  // directory (absent when none is left). When the caller fetches its own
  // account, its own device is left out. NOT_FOUND for an unknown account;
  // FAILED_PRECONDITION when no (other) device of the account has published
  // keys.
  absl::StatusOr<v1::FetchBundlesResponse> Fetch(const std::string& account_id,
                                                 uint32_t device_id,
                                                 const v1::FetchBundlesRequest& req);

  // INVALID_ARGUMENT naming `field` unless `key` is a serialized Curve25519
  // public key.
  static absl::Status ValidatePublicKey(absl::string_view key, absl::string_view field);
  // Validates the whole request (keys, signature, registration id, pre-key
  // count and ids) without touching storage.
  static absl::Status ValidateUpload(const v1::UploadKeysRequest& req);

 private:
  storage::Storage* const storage_;
};

}  // namespace parley::core

#endif  // PARLEY_CORE_KEY_DIRECTORY_H_
