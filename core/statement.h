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
// The statement's format, signing input, key id and verification are the
// API's (api/parley/statement/statement.h), shared with the SDK.
//
// Thread safety: a StatementSigner is immutable after LoadOrCreate; Sign and
// the accessors may be called from any number of threads.
#ifndef PARLEY_CORE_STATEMENT_H_
#define PARLEY_CORE_STATEMENT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "api/parley/statement/statement.h"
#include "parley/v1/common.pb.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace parley::core {

// Relative to the data directory.
inline constexpr char kDefaultStatementKeyFile[] = "keys/statement.key";

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
  // statement::KeyId(public_key()).
  std::string key_id() const { return key_id_; }
  const std::string& path() const { return path_; }

  // Builds the statement of `*state` for `conversation_id`, serializes it
  // deterministically and sets state->signed_statement and state->signature
  // (replacing any previous ones). InvalidArgument for an empty id.
  absl::Status Sign(const std::string& conversation_id,
                    v1::SecurityState* state) const;

  // Signs arbitrary bytes (statement::SigningInput is applied by Sign only).
  // Exposed for tests that need to forge well-formed statements.
  absl::StatusOr<std::string> SignBytes(absl::string_view message) const;

 private:
  StatementSigner(std::string path, EVP_PKEY* key, std::string public_key);

  const std::string path_;
  EVP_PKEY* const key_;  // owned; EVP_PKEY_free (clears the key) in the dtor
  const std::string public_key_;
  const std::string key_id_;
};

}  // namespace parley::core

#endif  // PARLEY_CORE_STATEMENT_H_
