// Server-signed security statements (downgrade protection).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// parleyd signs every conversation security state it hands out with an
// Ed25519 key kept in its data directory (suggested path:
// <data_dir>/keys/statement.key, see kDefaultStatementKeyFile). Clients pin
// the public key when they register and refuse states that are not signed by
// it, that name another conversation, that disagree with the signed fields, or
// that are older than a state they already verified (clients/sdk/
// statement_verifier.h).
//
// Wire format (api/parley/v1/common.proto):
//   SecurityState.signed_statement = deterministic serialization of a
//       v1::SecurityStatement built from the state (StatementFromState)
//   SecurityState.signature = Ed25519(key, "parley-security-statement-v1\0"
//       || signed_statement)   (StatementSigningInput)
// Ed25519 is deterministic: the same state signed twice gives the same bytes.
//
// Thread safety: a StatementSigner is immutable after LoadOrCreate; Sign and
// the accessors may be called from any number of threads. The free functions
// are thread-safe.
#ifndef PARLEY_CORE_STATEMENT_H_
#define PARLEY_CORE_STATEMENT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parley/v1/common.pb.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace parley::core {

// Domain separation: prefixed to the statement bytes before signing. 29
// bytes: the text and one NUL.
inline constexpr absl::string_view kStatementSigningContext(
    "parley-security-statement-v1\0", 29);
inline constexpr uint32_t kStatementVersion = 1;
inline constexpr size_t kEd25519PublicKeySize = 32;
inline constexpr size_t kEd25519SignatureSize = 64;
// Relative to the data directory.
inline constexpr char kDefaultStatementKeyFile[] = "keys/statement.key";

// The bytes that are signed: kStatementSigningContext + signed_statement.
std::string StatementSigningInput(absl::string_view signed_statement);

// First 16 lower-case hex characters of SHA-256(public_key).
std::string StatementKeyId(absl::string_view public_key);

// The statement for `state` of `conversation_id` (signed_statement,
// signature, reason, notice and the consent lists are not part of it).
v1::SecurityStatement StatementFromState(const std::string& conversation_id,
                                         const v1::SecurityState& state,
                                         absl::string_view server_key_id);

// Deterministic serialization (fields in number order; equal statements give
// equal bytes with the same protobuf library).
absl::StatusOr<std::string> SerializeStatement(
    const v1::SecurityStatement& statement);

class StatementSigner {
 public:
  // Loads the Ed25519 private key at `path`, or creates it on first start
  // (EVP_PKEY_ED25519 keygen, written as unencrypted PKCS#8 PEM, mode 0600,
  // created atomically: two processes starting at once end up with the same
  // key). Missing parent directories are created with mode 0700.
  // Accepted contents: PEM ("-----BEGIN PRIVATE KEY-----", Ed25519) or the
  // 32 raw private-key bytes.
  // Errors (all name `path`): PermissionDenied when the file is readable or
  // writable by group/others (fix with chmod 600) or cannot be opened;
  // FailedPrecondition when it is not a regular file; DataLoss when its
  // content is not an Ed25519 private key; Internal for OpenSSL failures.
  static absl::StatusOr<std::unique_ptr<StatementSigner>> LoadOrCreate(
      const std::string& path);

  ~StatementSigner();
  StatementSigner(const StatementSigner&) = delete;
  StatementSigner& operator=(const StatementSigner&) = delete;

  // The raw 32-byte Ed25519 public key (what clients pin).
  std::string public_key() const { return public_key_; }
  // StatementKeyId(public_key()).
  std::string key_id() const { return key_id_; }
  const std::string& path() const { return path_; }

  // Builds the statement of `*state` for `conversation_id`, serializes it
  // deterministically and sets state->signed_statement and state->signature
  // (replacing any previous ones). InvalidArgument for an empty id.
  absl::Status Sign(const std::string& conversation_id,
                    v1::SecurityState* state) const;

  // Signs arbitrary bytes (StatementSigningInput is applied by Sign only).
  // Exposed for tests that need to forge well-formed statements.
  absl::StatusOr<std::string> SignBytes(absl::string_view message) const;

 private:
  StatementSigner(std::string path, EVP_PKEY* key, std::string public_key);

  const std::string path_;
  EVP_PKEY* const key_;  // owned; EVP_PKEY_free (clears the key) in the dtor
  const std::string public_key_;
  const std::string key_id_;
};

// Verifies `state` against the pinned `public_key` (32 raw bytes) and returns
// its statement. Errors (PermissionDenied unless noted) name what is wrong:
// the public key is not 32 bytes (InvalidArgument); the state is unsigned;
// the signature is not 64 bytes or does not verify; the statement does not
// parse, has another version, names another conversation or another key id;
// a field of the statement (mode, epoch, policy_revision, rule_id,
// effective_at_ms, pending mode / effective time, locked, e2ee_ever_enabled)
// disagrees with the state's visible field.
absl::StatusOr<v1::SecurityStatement> VerifyStatement(
    absl::string_view public_key, const v1::SecurityState& state,
    const std::string& expected_conversation_id);

}  // namespace parley::core

#endif  // PARLEY_CORE_STATEMENT_H_
