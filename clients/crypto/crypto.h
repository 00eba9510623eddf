// SPDX-License-Identifier: GPL-3.0-or-later
//
// parley::crypto::DeviceCrypto — the client's end-to-end encryption layer.
//
// One DeviceCrypto is one device's Signal-protocol state (libsignal-protocol-c
// 2.3.3, protocol version 3, X3DH + double ratchet, sender keys for groups)
// persisted in a profile directory. It is a pure library: no network, no gRPC.
// The caller moves the opaque byte strings it produces (pre-key uploads,
// ciphertexts, sender-key distribution messages) over its own transport.
//
// Contract
// --------
// * Threading: a DeviceCrypto is thread-safe by internal serialization:
//   every public method takes one internal mutex (absl::Mutex), so calls from
//   several threads are safe but run one at a time. libsignal objects (whose reference
//   counts are not atomic) never leave the object, so no other thread can ever
//   touch them. Two DeviceCrypto objects must not open the same directory at
//   the same time (RocksDB's LOCK file refuses the second Open).
// * Ownership: Open() returns a std::unique_ptr; everything returned is a value
//   owned by the caller. No pointer into the object is ever handed out.
// * Key material: private keys never leave the store. Public keys leave only
//   as opaque serialized `PublicKey` values (Signal's 33-byte encoding) meant
//   for transport and comparison. Buffers holding private-key serializations
//   and decrypted plaintext inside this layer are wiped (OPENSSL_cleanse /
//   signal_buffer_bzero_free) after use. Nothing here logs keys or plaintext
//   (libsignal's log hook is not installed; RocksDB's info log is discarded).
// * Storage: <dir> is created 0700, the RocksDB key store lives in
//   <dir>/keystore (0700) and every file in it is 0600. Writes go through the
//   WAL; with Options::sync_writes they are fsync'ed (survive power loss)
//   otherwise they survive a process crash only. Identity creation is always
//   synced. Keys are NOT encrypted at rest: the profile relies on the 0700
//   directory and on OS / disk encryption (wrapping with an OS keystore is
//   the embedding app's job).
// * Errors (absl::Status codes):
//     InvalidArgument    malformed input: bad address, bad/forged/corrupt
//                        message (SG_ERR_INVALID_MESSAGE/_MAC/_KEY/_PROTO_BUF,
//                        _VERSION, _LEGACY_MESSAGE), bad bundle signature.
//     AlreadyExists      a message that was already decrypted
//                        (SG_ERR_DUPLICATE_MESSAGE); safe to drop.
//     NotFound           no session (SG_ERR_NO_SESSION), unknown pre-key /
//                        signed pre-key / sender-key id (SG_ERR_INVALID_KEY_ID):
//                        the peer must re-fetch a bundle or resend a
//                        distribution message.
//     FailedPrecondition the remote identity key changed for a *verified*
//                        contact and Options::block_verified_identity_changes
//                        is set (SG_ERR_UNTRUSTED_IDENTITY): "identity key of
//                        <name>.<device> changed". Also: group encrypt without
//                        a sender key.
//     ResourceExhausted  out of memory (SG_ERR_NOMEM).
//     Internal/Unavailable  crypto-provider or key-store I/O failure.
//
// Identity policy (is_trusted_identity)
// -------------------------------------
// Trust on first use, per device address (name, device_id): an address with no
// stored identity key trusts the first key it sees. When an address presents a
// different key than the stored one:
//  * contact not verified (default): the new key is accepted, stored, and an
//    IdentityChange{blocked=false} is queued ("safety number changed" notice);
//  * contact verified (MarkVerified) and Options::block_verified_identity_changes
//    (default true): the key is refused — ProcessBundle / Decrypt return
//    FailedPrecondition — an IdentityChange{blocked=true} is queued, and nothing
//    is stored. Once the user has acknowledged the new safety number the app
//    calls MarkUnverified(name) and retries (keep the undecryptable message to
//    retry Decrypt); the change is then accepted like an unverified one.
//  Any accepted change clears the contact's verified flag (IsVerified -> false).
//  A first-seen device of a known contact is not a change (TOFU per device).
//
// Interoperability: the byte strings are libsignal's own wire encodings
// (protocol version 3), so any Signal v3 implementation can read them.
#ifndef PARLEY_CLIENTS_CRYPTO_CRYPTO_H_
#define PARLEY_CLIENTS_CRYPTO_CRYPTO_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace parley::crypto {

// A remote device: the account name (user id) and its device id (>= 1).
struct Address {
  std::string name;
  int32_t device_id = 1;

  std::string ToString() const;  // "<name>.<device_id>"
  friend bool operator==(const Address&, const Address&) = default;
};

// An opaque, serialized Curve25519 public key (identity key, pre-key, ...).
// Only for transport and comparison; it carries no private material.
class PublicKey {
 public:
  PublicKey() = default;
  // Wraps bytes received from the wire. They are validated when used.
  static PublicKey FromSerialized(std::string bytes) {
    PublicKey k;
    k.bytes_ = std::move(bytes);
    return k;
  }
  const std::string& serialized() const { return bytes_; }
  bool empty() const { return bytes_.empty(); }
  friend bool operator==(const PublicKey&, const PublicKey&) = default;

 private:
  std::string bytes_;
};

struct SignedPreKeyPublic {
  uint32_t id = 0;
  PublicKey key;
  std::string signature;  // XEd25519 signature by the identity key (64 bytes).
  int64_t timestamp_ms = 0;
};

struct OneTimePreKeyPublic {
  uint32_t id = 0;
  PublicKey key;
};

// Everything a device uploads to the key directory. Like Signal-Server, the
// server should verify signed_pre_key.signature and replace its lists.
struct PreKeyUpload {
  PublicKey identity_key;
  uint32_t registration_id = 0;
  SignedPreKeyPublic signed_pre_key;
  std::vector<OneTimePreKeyPublic> one_time_pre_keys;
};

// What a sender fetches for one remote device (one one-time pre-key consumed
// per fetch, or none when the server ran out).
struct PreKeyBundle {
  uint32_t registration_id = 0;
  int32_t device_id = 1;
  PublicKey identity_key;
  SignedPreKeyPublic signed_pre_key;
  std::optional<OneTimePreKeyPublic> one_time_pre_key;
};

enum class MessageType : int {
  kSignal = 2,  // SignalMessage (session established)
  kPreKey = 3,  // PreKeySignalMessage (until the peer answers)
};

struct Ciphertext {
  MessageType type = MessageType::kSignal;
  std::string bytes;
  // Registration id of the remote device the session was built with; a
  // server reporting a different one (410 stale device) means: rebuild.
  uint32_t remote_registration_id = 0;
};

// A remote identity key changed (see "Identity policy" above).
struct IdentityChange {
  Address address;
  PublicKey old_key;
  PublicKey new_key;
  bool was_verified = false;  // the contact had been verified before
  bool blocked = false;       // the new key was refused (verified contact)
};

struct Options {
  // A new signed pre-key is created when the current one is this old.
  absl::Duration signed_pre_key_rotation = absl::Hours(24 * 7);
  // Replaced signed pre-keys are kept this long (in-flight first messages).
  absl::Duration signed_pre_key_grace = absl::Hours(24 * 30);
  // Refuse a changed identity key of a verified contact (see policy above).
  bool block_verified_identity_changes = true;
  // fsync every key-store write (durable across power loss, ~ms per write).
  bool sync_writes = false;
  // Safety-number iterations (Signal: 5200).
  int fingerprint_iterations = 5200;
};

class DeviceCrypto {
 public:
  // Opens (or, on first use, creates: identity key pair, registration id,
  // first signed pre-key) the profile in `dir`.
  static absl::StatusOr<std::unique_ptr<DeviceCrypto>> Open(
      const std::string& dir, const Options& options = Options());

  DeviceCrypto(const DeviceCrypto&) = delete;
  DeviceCrypto& operator=(const DeviceCrypto&) = delete;
  ~DeviceCrypto();

  // ---- Local identity and pre-keys -------------------------------------
  uint32_t registration_id() const;
  PublicKey identity_key() const;

  // Generates `count` new one-time pre-keys (stored locally) and returns them
  // with the identity key, registration id and current signed pre-key.
  absl::StatusOr<PreKeyUpload> GeneratePreKeys(int count);
  // The upload without new one-time pre-keys (e.g. after a rotation).
  absl::StatusOr<PreKeyUpload> CurrentPreKeys();
  // Creates a new signed pre-key when the current one is older than
  // Options::signed_pre_key_rotation (returns true then; upload again), and
  // deletes signed pre-keys replaced more than signed_pre_key_grace ago.
  absl::StatusOr<bool> RotateSignedPreKeyIfDue(absl::Time now);
  // Locally stored, not yet used one-time pre-keys.
  absl::StatusOr<int> OneTimePreKeyCount();

  // ---- Pairwise sessions -------------------------------------------------
  // X3DH as initiator: verifies the signed pre-key signature and builds a
  // session with `remote`. Subsequent Encrypt() calls produce PreKey messages
  // until `remote` answers.
  absl::Status ProcessBundle(const Address& remote, const PreKeyBundle& bundle);
  absl::StatusOr<Ciphertext> Encrypt(const Address& remote,
                                     std::string_view plaintext);
  // Decrypts a type 3 (creates the session as responder, consumes the
  // one-time pre-key) or type 2 message. Out-of-order messages are fine;
  // a replay returns AlreadyExists.
  absl::StatusOr<std::string> Decrypt(const Address& remote,
                                      const Ciphertext& ciphertext);
  bool HasSession(const Address& remote);
  absl::StatusOr<uint32_t> RemoteRegistrationId(const Address& remote);
  absl::Status DeleteSession(const Address& remote);
  absl::Status DeleteAllSessions(std::string_view name);
  // Device ids of `name` with which a session exists, ascending.
  std::vector<int32_t> SessionDevices(std::string_view name);

  // ---- Groups (sender keys) ------------------------------------------------
  // Our sender-key distribution message (type 5) for `group_id`, creating our
  // sender key if needed. Send it to every member device over the pairwise
  // sessions (Encrypt), never in clear.
  absl::StatusOr<std::string> CreateSenderKeyDistribution(
      std::string_view group_id);
  absl::Status ProcessSenderKeyDistribution(std::string_view group_id,
                                            const Address& sender,
                                            std::string_view distribution);
  // Sender-key message (type 4); one ciphertext for all members.
  absl::StatusOr<std::string> GroupEncrypt(std::string_view group_id,
                                           std::string_view plaintext);
  absl::StatusOr<std::string> GroupDecrypt(std::string_view group_id,
                                           const Address& sender,
                                           std::string_view ciphertext);
  // Drops our sender key for `group_id`: the next CreateSenderKeyDistribution
  // makes a fresh one (call after a member left, then redistribute to the
  // remaining members only).
  absl::Status RotateSenderKey(std::string_view group_id);

  // ---- Identities, verification, safety numbers ---------------------------
  // The 60-digit safety number (Signal's displayable fingerprint, version 1,
  // Options::fingerprint_iterations) of our identity and `remote_identity`.
  // Both sides get the same digits when they pass each other's stable ids.
  absl::StatusOr<std::string> SafetyNumber(std::string_view local_stable_id,
                                           std::string_view remote_stable_id,
                                           const PublicKey& remote_identity);
  // The identity key stored for `remote`, if any.
  std::optional<PublicKey> RemoteIdentity(const Address& remote);
  // Identity changes observed since the last call (oldest first). Kept in
  // memory only: take them before closing.
  std::vector<IdentityChange> TakeIdentityChanges();
  absl::Status MarkVerified(std::string_view name);
  absl::Status MarkUnverified(std::string_view name);
  bool IsVerified(std::string_view name);

  struct State;  // Implementation detail (crypto.cc).

 private:
  explicit DeviceCrypto(std::unique_ptr<State> state);

  mutable absl::Mutex mu_;
  std::unique_ptr<State> s_ ABSL_GUARDED_BY(mu_);
};

}  // namespace parley::crypto

#endif  // PARLEY_CLIENTS_CRYPTO_CRYPTO_H_
