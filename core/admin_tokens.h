// Admin tokens: bearer secrets with a role, for the admin service only.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// A token is "padm_" + 64 hex characters (256 random bits); the store keeps
// only its SHA-256. Device tokens (bare hex) never authenticate here.
//
// Threading: all methods may be called concurrently. Ownership: does not own
// the store.
#ifndef PARLEY_CORE_ADMIN_TOKENS_H_
#define PARLEY_CORE_ADMIN_TOKENS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parley/v1/admin.pb.h"
#include "storage/storage.h"

namespace parley::core {

// The authenticated caller of an admin RPC.
struct AdminPrincipal {
  std::string token_id;
  std::string name;
  v1::AdminRole role = v1::ADMIN_ROLE_UNSPECIFIED;
  // "operator:ops (t_0123...)" — for audit records.
  std::string Describe() const;
};

// "operator", "auditor", "moderator", "lawful_access".
std::string RoleName(v1::AdminRole role);
// Inverse of RoleName; INVALID_ARGUMENT naming `field` for anything else.
absl::StatusOr<v1::AdminRole> ParseRole(absl::string_view name, absl::string_view field);

struct NewAdminToken {
  storage::AdminTokenRecord record;
  std::string secret;  // shown once
};

class AdminTokens {
 public:
  AdminTokens(storage::AdminTokenStore* store, std::function<int64_t()> now_ms)
      : store_(store), now_ms_(std::move(now_ms)) {}

  // Resolves an "authorization" metadata value. UNAUTHENTICATED for a
  // missing, malformed, unknown or revoked token.
  absl::StatusOr<AdminPrincipal> Authenticate(absl::string_view authorization) const;

  // Creates a token. Name: 1-64 printable characters, unique among tokens
  // that are not revoked (ALREADY_EXISTS otherwise).
  absl::StatusOr<NewAdminToken> Create(v1::AdminRole role, const std::string& name,
                                       const std::string& created_by);
  absl::StatusOr<std::vector<storage::AdminTokenRecord>> List() const;
  // NOT_FOUND for an unknown id; revoking twice is OK (keeps the first time).
  absl::StatusOr<storage::AdminTokenRecord> Revoke(const std::string& token_id);

  // On first start (no admin token exists at all): creates an operator token
  // named "initial-operator" and writes its secret to `path` (mode 0600, the
  // directory 0700). Returns true if it created one. Later starts do nothing,
  // even if the file was deleted (create more with `parleyctl tokens create`).
  absl::StatusOr<bool> EnsureInitialOperator(const std::string& path);

 private:
  storage::AdminTokenStore* const store_;
  const std::function<int64_t()> now_ms_;
};

void ToProto(const storage::AdminTokenRecord& r, v1::AdminToken* out);

}  // namespace parley::core

#endif  // PARLEY_CORE_ADMIN_TOKENS_H_
