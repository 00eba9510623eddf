// SignalEngine: the SDK's E2eeEngine over the Signal protocol
// (clients/crypto DeviceCrypto: X3DH, Double Ratchet, sender keys).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Storage: everything lives in one directory inside the profile, by
// convention <profile>/e2ee (0700; every file 0600):
//   keystore/            DeviceCrypto's key store (identity key pair,
//                        pre-keys, sessions, sender keys, contacts' identity
//                        keys and verified flags)
//   published            "account_id device_id registration_id": the keys of
//                        this identity were uploaded for that device
//   groups/<hex(conv)>   sender-key bookkeeping: the devices ("account_id
//                        device_id registration_id" lines) that hold this
//                        device's current sender key for the conversation
//   identity-changes/<hex(account)>.<device>
//                        an identity change of that contact device the user
//                        has not been told about yet ("was_verified blocked")
// Keys are not encrypted at rest (see crypto.h): the profile relies on the
// directory permissions and on OS / disk encryption.
//
// Keys: MaintainKeys publishes the identity key, registration id, signed
// pre-key and 100 one-time pre-keys on first use (or when forced, after
// Register / LinkDevice), uploads 100 more whenever the server holds fewer
// than 20, and rotates the signed pre-key when due (weekly).
//
// Sending (Encrypt): for every member account of the conversation, the
// devices this device has sessions with; an account without any is fetched
// once per engine (FetchBundles + ProcessBundle). The server's DeviceMismatch
// drives the rest (RepairSessions): extra -> session deleted, stale ->
// session deleted and rebuilt, missing -> session built.
//  * Direct conversations (and every kind but groups/broadcasts): pairwise
//    fan-out, one Double Ratchet ciphertext (type 2, or 3 until the peer
//    answered) per device, each over the same InnerEnvelope.
//  * Groups and broadcasts: sender keys. The content is encrypted once with
//    this device's sender key for the conversation (type 4, the same bytes
//    for every device). A device that does not hold the current sender key
//    yet gets, instead, a pairwise ciphertext of an InnerEnvelope carrying
//    the sender-key distribution message and the content. After the server
//    accepted the message (Sent) those devices are recorded as holding the
//    key. When an account that holds it is no longer a member (removed or
//    left) or one of its devices is gone, the sender key is rotated before
//    the next message and redistributed to the remaining devices only: a
//    removed member cannot read anything sent after its removal.
// Receiving (Decrypt): type 2/3 with the sender's (account, device) pairwise
// session, type 4 with the sender's sender key for the conversation; the
// InnerEnvelope must name the carrying message's conversation. After a
// pre-key message the server's one-time pre-key count is checked.
//
// Identity: trust on first use per device. A changed identity key is
// reported by TakeIdentityChanges (Client: Event::kIdentityChange) and kept
// as pending until AcknowledgeIdentityChanges (the CLI warns before the
// next send). A verified contact's changed key is refused until
// MarkUnverified (crypto::Options::block_verified_identity_changes).
//
// Threading: thread-safe; operations run one at a time (one internal
// mutex; RPCs of an operation run under it, bounded by the Client's
// deadline). With keep_open=false the key store is opened per operation and
// closed afterwards, so that several processes can share one profile (the
// CLI: `parley listen` in one terminal, `parley send` in another); opening
// waits up to lock_wait for another process to release it.
//
// Never logs; statuses name devices and key ids, never content or keys.
#ifndef PARLEY_CLIENTS_SDK_SIGNAL_ENGINE_H_
#define PARLEY_CLIENTS_SDK_SIGNAL_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clients/crypto/crypto.h"
#include "clients/sdk/client.h"

namespace parley {

struct SignalEngineOptions {
  int one_time_pre_keys = 100;  // per upload (the server takes <= 100)
  int replenish_below = 20;     // upload more when the server holds fewer
  // Keep the key store open between operations (one process per profile).
  bool keep_open = true;
  // How long to wait for another process holding the key store.
  absl::Duration lock_wait = absl::Seconds(15);
  crypto::Options crypto;
};

// One line of `parley verify`.
struct SafetyNumberInfo {
  uint32_t device_id = 0;
  std::string digits;  // 60 digits
  bool verified = false;
  // The device presents a new identity key that was refused because the
  // contact is verified (MarkUnverified accepts it).
  bool refused = false;
};

class SignalEngine final : public E2eeEngine {
 public:
  // `dir`: the engine's directory (e.g. <profile>/e2ee). Nothing is opened
  // or created before the first operation.
  static absl::StatusOr<std::shared_ptr<SignalEngine>> Create(
      std::string dir, SignalEngineOptions options = {});
  ~SignalEngine() override;

  // ---- E2eeEngine
  absl::Status MaintainKeys(E2eeHost& host, bool force) override;
  absl::StatusOr<v1::EncryptedBody> Encrypt(
      E2eeHost& host, const v1::Conversation& conversation,
      const E2eeContent& content) override;
  absl::Status RepairSessions(E2eeHost& host,
                              const v1::DeviceMismatch& mismatch) override;
  void Sent(const v1::Conversation& conversation,
            const v1::EncryptedBody& body) override;
  absl::StatusOr<E2eeContent> Decrypt(E2eeHost& host,
                                      const v1::Message& message) override;
  std::vector<IdentityChangeNotice> TakeIdentityChanges() override;

  // ---- Verification
  // The safety number of this device with each device of `account_id` this
  // device has a session with; when there is none, with the keys the server
  // presents (sessions are built with them, unless refused). Both sides see
  // the same digits. Sorted by device id.
  absl::StatusOr<std::vector<SafetyNumberInfo>> SafetyNumbers(
      E2eeHost& host, const std::string& account_id);
  absl::Status MarkVerified(const std::string& account_id);
  // Also accepts a changed identity key of a verified contact.
  absl::Status MarkUnverified(const std::string& account_id);
  absl::StatusOr<bool> IsVerified(const std::string& account_id);

  // Identity changes not yet acknowledged (persisted across processes).
  std::vector<IdentityChangeNotice> PendingIdentityChanges();
  // Forgets the pending changes of `account_id` (the user was told).
  void AcknowledgeIdentityChanges(const std::string& account_id);

  // This device's registration id and the number of local, unused one-time
  // pre-keys (diagnostics, tests).
  absl::StatusOr<uint32_t> RegistrationId();
  absl::StatusOr<int> LocalOneTimePreKeyCount();

  const std::string& dir() const { return dir_; }

 private:
  SignalEngine(std::string dir, SignalEngineOptions options);

  struct DeviceKey {
    std::string account_id;
    uint32_t device_id = 0;
    uint32_t registration_id = 0;
    friend auto operator<=>(const DeviceKey&, const DeviceKey&) = default;
  };
  class Use;  // opens the key store for one operation

  absl::StatusOr<crypto::DeviceCrypto*> OpenLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MaintainKeysLocked(E2eeHost& host, bool force)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status UploadLocked(E2eeHost& host, const crypto::PreKeyUpload& up)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Builds sessions from FetchBundles(account_id): with the devices in
  // `only` (all devices without a session when empty).
  absl::Status FetchSessionsLocked(E2eeHost& host,
                                   const std::string& account_id,
                                   const std::set<uint32_t>& only)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CollectIdentityChangesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::set<DeviceKey> LoadGroupLocked(const std::string& conversation_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SaveGroupLocked(const std::string& conversation_id,
                               const std::set<DeviceKey>& holders)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const SignalEngineOptions options_;

  absl::Mutex mu_;
  std::unique_ptr<crypto::DeviceCrypto> crypto_ ABSL_GUARDED_BY(mu_);
  int users_ ABSL_GUARDED_BY(mu_) = 0;
  // Accounts whose bundles were fetched by this engine (absent devices are
  // then learnt from DeviceMismatch, not by fetching on every send).
  std::set<std::string> fetched_ ABSL_GUARDED_BY(mu_);
  std::vector<IdentityChangeNotice> changes_ ABSL_GUARDED_BY(mu_);
  // Pre-key messages decrypted since the last key check.
  int pre_key_messages_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace parley

#endif  // PARLEY_CLIENTS_SDK_SIGNAL_ENGINE_H_
