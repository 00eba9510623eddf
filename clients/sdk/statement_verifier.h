// parley::StatementVerifier: client-side downgrade protection.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// parleyd signs every conversation security state (SecurityState.
// signed_statement + signature, see api/parley/v1/common.proto and
// api/parley/statement/statement.h) with an Ed25519 key. The client pins the
// server's public key at registration and gives it to a StatementVerifier,
// which
//   - verifies each state it is shown (signature by the pinned key, statement
//     about this conversation, statement fields equal to the visible ones),
//   - remembers per conversation the strongest verified state: the highest
//     verified epoch (and its mode) and the highest epoch verified as E2EE,
//     persisted in the profile directory,
//   - refuses replays (a verified state older than one already verified) and
//     unsigned or forged states that would lower protection,
//   - decides whether plaintext may be sent into a conversation that was
//     end-to-end encrypted: only after a verified statement, newer than the
//     last E2EE one, says it no longer is (and, with refuse_downgrade, never).
//
// The statement format and its verification (statement::Verify) are the
// API's (api/parley/statement/statement.h), shared with parleyd's signer; the
// SDK does not depend on core/.
//
// Status codes:
//   PERMISSION_DENIED   a state is forged, signed by another key, about
//                       another conversation, disagrees with its statement,
//                       conflicts with a verified state of the same epoch,
//                       or is unsigned where that would lower protection;
//   FAILED_PRECONDITION an authentic state older than one already verified
//                       (a replay, or history such as SecurityChange.
//                       old_state); plaintext refused by CheckPlaintextAllowed
//                       (E2EE, downgrade not newer, refuse_downgrade);
//   INTERNAL            the state file could not be written (the verified
//                       state is remembered in memory anyway);
//   DATA_LOSS / PERMISSION_DENIED from Create for a corrupt or world-readable
//                       state file; FAILED_PRECONDITION when it was written
//                       for another server key.
//
// Persistence: <dir>/security_states.json (mode 0600, written atomically:
// temp file + fsync + rename; <dir> is made 0700). Empty dir: memory only.
//
// Thread safety: all methods may be called concurrently.
#ifndef PARLEY_CLIENTS_SDK_STATEMENT_VERIFIER_H_
#define PARLEY_CLIENTS_SDK_STATEMENT_VERIFIER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "api/parley/statement/statement.h"
#include "parley/v1/common.pb.h"

namespace parley {

struct StatementVerifierOptions {
  // Never allow plaintext into a conversation once verified (or seen) as
  // E2EE, even after a verified, newer downgrade: the app stops sending
  // there and must tell the user.
  bool refuse_downgrade = false;
  // Refuse every unsigned state (default: unsigned states are refused only
  // where they would lower protection).
  bool require_signed = false;
  // Optional last step of an allowed downgrade (e.g. "the user was shown the
  // change and accepted it"): its status is returned by
  // CheckPlaintextAllowed / VerifyDowngrade. Called without locks held.
  std::function<absl::Status(const std::string& conversation_id,
                             const v1::SecurityStatement& downgrade,
                             uint64_t last_e2ee_epoch)>
      confirm_downgrade;
};

// What a StatementVerifier remembers about one conversation.
struct RememberedSecurity {
  uint64_t epoch = 0;  // highest verified epoch (0: none verified yet)
  v1::SecurityMode mode = v1::SECURITY_MODE_UNSPECIFIED;  // at that epoch
  uint64_t e2ee_epoch = 0;  // highest epoch verified as E2EE (0: never)
  // Highest epoch unsigned evidence said was E2EE (unsigned E2EE states,
  // ciphertext messages' security_epoch); 0: none.
  uint64_t unverified_e2ee_epoch = 0;
  // The verified statement at `epoch` and its signature (evidence).
  std::string signed_statement;
  std::string signature;

  bool e2ee_verified() const { return e2ee_epoch != 0; }
  // A plaintext downgrade must be verified at an epoch above this (0: the
  // conversation was never known as E2EE).
  uint64_t e2ee_threshold() const {
    return e2ee_epoch > unverified_e2ee_epoch ? e2ee_epoch
                                              : unverified_e2ee_epoch;
  }
};

// Plugs into parley::Client as ConnectOptions::verifier through
// AsSecurityVerifier below (this header does not include client.h, so the
// verifier builds and tests on its own).
class StatementVerifier {
 public:
  static constexpr char kStateFile[] = "security_states.json";

  // `server_public_key`: the pinned raw 32-byte Ed25519 key (from the
  // registration response). `dir`: the profile directory (empty: remember in
  // memory only). Loads <dir>/security_states.json if it exists.
  static absl::StatusOr<std::unique_ptr<StatementVerifier>> Create(
      std::string server_public_key, std::string dir,
      StatementVerifierOptions options = {});

  ~StatementVerifier();
  StatementVerifier(const StatementVerifier&) = delete;
  StatementVerifier& operator=(const StatementVerifier&) = delete;

  // A security state the server reports for `conversation_id` as current
  // (GetConversation, ListConversations, CreateDirect/Group, AddMembers,
  // RequestSecurityChange, SecurityChange.new_state).
  // Signed: verified; an epoch below the remembered one -> FAILED_PRECONDITION
  // (replay; a verified E2EE state still raises e2ee_epoch); the same epoch
  // with another mode -> PERMISSION_DENIED; otherwise remembered (and
  // persisted). Unsigned: PERMISSION_DENIED with require_signed or when it
  // would lower protection (not E2EE while E2EE is the strongest state
  // known); an unsigned E2EE state is recorded as unverified evidence.
  absl::Status Observe(const std::string& conversation_id,
                       const v1::SecurityState& state);

  // Verifies without remembering anything (e.g. to label history).
  absl::StatusOr<v1::SecurityStatement> Verify(
      const std::string& conversation_id,
      const v1::SecurityState& state) const;

  // Unsigned evidence that the conversation was E2EE at `epoch` (a
  // ciphertext message's security_epoch, SecurityChange.old_state of an old
  // server): raises unverified_e2ee_epoch. Never lowers anything.
  absl::Status NoteE2eeEvidence(const std::string& conversation_id,
                                uint64_t epoch);

  // OK only if plaintext may be sent given `current` (the newest state the
  // caller has): `current` is not E2EE and either the conversation was never
  // known as E2EE (then `current`, if signed, must verify), or `current` is
  // a verified statement (Observe'd here) with an epoch above
  // e2ee_threshold(), refuse_downgrade is off and confirm_downgrade (if set)
  // accepts. Unsigned downgrades are refused (PERMISSION_DENIED).
  absl::Status CheckPlaintextAllowed(const std::string& conversation_id,
                                     const v1::SecurityState& current);

  // parley::SecurityVerifier::VerifyDowngrade (client.h): the Client calls
  // it only for conversations it has seen as E2EE. As CheckPlaintextAllowed,
  // except that a conversation this verifier has no E2EE record of is
  // refused (the epoch of the E2EE state the Client saw is unknown, so
  // "newer" cannot be checked; feed the verifier with Observe /
  // NoteE2eeEvidence where the Client marks conversations seen as E2EE).
  absl::Status VerifyDowngrade(const std::string& conversation_id,
                               const v1::SecurityState& current);

  std::optional<RememberedSecurity> Remembered(
      const std::string& conversation_id) const;

  const std::string& server_public_key() const { return public_key_; }
  const std::string& server_key_id() const { return key_id_; }
  // <dir>/security_states.json, or empty in memory-only mode.
  std::string state_path() const;

 private:
  StatementVerifier(std::string public_key, std::string dir,
                    StatementVerifierOptions options);
  absl::Status Load();
  absl::Status SaveLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ObserveImpl(const std::string& conversation_id,
                           const v1::SecurityState& state,
                           v1::SecurityStatement* verified);
  absl::Status CheckPlaintext(const std::string& conversation_id,
                              const v1::SecurityState& current,
                              bool client_saw_e2ee);

  const std::string public_key_;
  const std::string key_id_;
  const std::string dir_;
  const StatementVerifierOptions options_;

  mutable absl::Mutex mu_;
  std::map<std::string, RememberedSecurity> states_ ABSL_GUARDED_BY(mu_);
};

// Wraps `verifier` as an implementation of `Interface`, an interface with
// `virtual absl::Status VerifyDowngrade(const std::string&,
// const v1::SecurityState&)`, i.e. parley::SecurityVerifier of client.h:
//   options.verifier = AsSecurityVerifier<parley::SecurityVerifier>(v);
// The adapter shares ownership of `verifier` (which the app keeps to call
// Observe / CheckPlaintextAllowed itself).
template <typename Interface>
std::shared_ptr<Interface> AsSecurityVerifier(
    std::shared_ptr<StatementVerifier> verifier) {
  class Adapter final : public Interface {
   public:
    explicit Adapter(std::shared_ptr<StatementVerifier> v) : v_(std::move(v)) {}
    absl::Status VerifyDowngrade(const std::string& conversation_id,
                                 const v1::SecurityState& current) override {
      return v_->VerifyDowngrade(conversation_id, current);
    }

   private:
    const std::shared_ptr<StatementVerifier> v_;
  };
  return std::make_shared<Adapter>(std::move(verifier));
}

}  // namespace parley

#endif  // PARLEY_CLIENTS_SDK_STATEMENT_VERIFIER_H_
