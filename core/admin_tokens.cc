// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/admin_tokens.h"

#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/ids.h"
#include "core/status_macros.h"
#include "core/tls.h"

namespace parley::core {
namespace {
constexpr absl::string_view kPrefix = "padm_";
}

std::string AdminPrincipal::Describe() const {
  return absl::StrCat(RoleName(role), ":", name, " (", token_id, ")");
}

std::string RoleName(v1::AdminRole role) {
  switch (role) {
    case v1::ADMIN_ROLE_OPERATOR: return "operator";
    case v1::ADMIN_ROLE_AUDITOR: return "auditor";
    case v1::ADMIN_ROLE_MODERATOR: return "moderator";
    case v1::ADMIN_ROLE_LAWFUL_ACCESS: return "lawful_access";
    default: return "unspecified";
  }
}

absl::StatusOr<v1::AdminRole> ParseRole(absl::string_view name, absl::string_view field) {
  for (v1::AdminRole r : {v1::ADMIN_ROLE_OPERATOR, v1::ADMIN_ROLE_AUDITOR, v1::ADMIN_ROLE_MODERATOR,
                          v1::ADMIN_ROLE_LAWFUL_ACCESS}) {
    if (name == RoleName(r)) return r;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": unknown role \"", name, "\" (expected operator, auditor, moderator or lawful_access)"));
}

void ToProto(const storage::AdminTokenRecord& r, v1::AdminToken* out) {
  out->set_token_id(r.token_id);
  auto role = ParseRole(r.role, "role");
  out->set_role(role.ok() ? *role : v1::ADMIN_ROLE_UNSPECIFIED);
  out->set_name(r.name);
  out->set_created_by(r.created_by);
  out->set_created_at_ms(r.created_at_ms);
  out->set_revoked(r.revoked);
  out->set_revoked_at_ms(r.revoked_at_ms);
}

absl::StatusOr<AdminPrincipal> AdminTokens::Authenticate(absl::string_view authorization) const {
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "missing authorization metadata (expected \"authorization: Bearer <admin token>\")");
  }
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(authorization, kBearer)) {
    return absl::UnauthenticatedError("authorization: expected \"Bearer <admin token>\"");
  }
  absl::string_view token = authorization.substr(kBearer.size());
  if (!absl::StartsWith(token, kPrefix) || token.size() != kPrefix.size() + 64) {
    return absl::UnauthenticatedError(
        "authorization: not an admin token (admin tokens start with \"padm_\"; device tokens are "
        "not accepted here)");
  }
  auto rec = store_->FindAdminTokenByHash(Sha256(token));
  if (absl::IsNotFound(rec.status())) return absl::UnauthenticatedError("unknown admin token");
  if (!rec.ok()) return rec.status();
  if (rec->revoked) return absl::UnauthenticatedError("admin token was revoked");
  AdminPrincipal p;
  p.token_id = rec->token_id;
  p.name = rec->name;
  PARLEY_ASSIGN_OR_RETURN(p.role, ParseRole(rec->role, "stored token role"));
  return p;
}

absl::StatusOr<NewAdminToken> AdminTokens::Create(v1::AdminRole role, const std::string& name,
                                                  const std::string& created_by) {
  if (role == v1::ADMIN_ROLE_UNSPECIFIED || !v1::AdminRole_IsValid(role)) {
    return absl::InvalidArgumentError("role: is required (operator, auditor, moderator, lawful_access)");
  }
  PARLEY_RETURN_IF_ERROR(ValidateText(name, 64, false, "name"));
  PARLEY_ASSIGN_OR_RETURN(auto existing, store_->ListAdminTokens());
  for (const auto& t : existing) {
    if (!t.revoked && t.name == name) {
      return absl::AlreadyExistsError(absl::StrCat("name: a live token named \"", name,
                                                   "\" exists (", t.token_id, ")"));
    }
  }
  NewAdminToken out;
  out.secret = absl::StrCat(kPrefix, RandomHex(32));
  out.record.token_id = absl::StrCat("t_", RandomHex(8));
  out.record.token_hash = Sha256(out.secret);
  out.record.role = RoleName(role);
  out.record.name = name;
  out.record.created_by = created_by;
  out.record.created_at_ms = now_ms_();
  PARLEY_RETURN_IF_ERROR(store_->PutAdminToken(out.record));
  return out;
}

absl::StatusOr<std::vector<storage::AdminTokenRecord>> AdminTokens::List() const {
  return store_->ListAdminTokens();
}

absl::StatusOr<storage::AdminTokenRecord> AdminTokens::Revoke(const std::string& token_id) {
  auto rec = store_->GetAdminToken(token_id);
  if (absl::IsNotFound(rec.status())) {
    return absl::NotFoundError(absl::StrCat("token ", token_id, " not found"));
  }
  if (!rec.ok()) return rec.status();
  if (rec->revoked) return *rec;
  rec->revoked = true;
  rec->revoked_at_ms = now_ms_();
  PARLEY_RETURN_IF_ERROR(store_->PutAdminToken(*rec));
  return *rec;
}

absl::StatusOr<bool> AdminTokens::EnsureInitialOperator(const std::string& path) {
  PARLEY_ASSIGN_OR_RETURN(auto existing, store_->ListAdminTokens());
  if (!existing.empty()) return false;
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) {
    std::filesystem::create_directories(dir, ec);
    if (ec) return absl::UnavailableError(absl::StrCat(dir.string(), ": ", ec.message()));
    ::chmod(dir.c_str(), 0700);
  }
  NewAdminToken t;
  t.secret = absl::StrCat(kPrefix, RandomHex(32));
  t.record.token_id = absl::StrCat("t_", RandomHex(8));
  t.record.token_hash = Sha256(t.secret);
  t.record.role = RoleName(v1::ADMIN_ROLE_OPERATOR);
  t.record.name = "initial-operator";
  t.record.created_by = "parleyd";
  t.record.created_at_ms = now_ms_();
  // The file first: if storing fails, the next start writes a new one.
  PARLEY_RETURN_IF_ERROR(WriteFileAtomic(path, t.secret + "\n", 0600));
  PARLEY_RETURN_IF_ERROR(store_->PutAdminToken(t.record));
  return true;
}

}  // namespace parley::core
