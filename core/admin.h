// The admin service's domain logic: deployment policy, conversation
// metadata, admin tokens and the audit log, for operators and safety staff.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Transport-agnostic like ParleyService: takes parley.v1 admin messages and
// returns absl::Status. Authentication, role checks and the per-call audit
// record are the adapter's job (admin_grpc.h); this class writes the audit
// records of what it changes (policy revisions, tokens).
//
// Threading: all methods may be called concurrently; policy applies and
// rollbacks are serialized. Ownership: owns nothing; every dependency must
// outlive it.
#ifndef PARLEY_CORE_ADMIN_H_
#define PARLEY_CORE_ADMIN_H_

#include <functional>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/admin_tokens.h"
#include "core/audit.h"
#include "core/delivery.h"
#include "core/policy_engine.h"
#include "core/service.h"
#include "parley/v1/admin.pb.h"

namespace parley::core {

class Admin {
 public:
  struct Deps {
    ParleyService* service = nullptr;
    PolicyEngine* policy = nullptr;
    AuditLog* audit = nullptr;
    AdminTokens* tokens = nullptr;
    storage::Storage* storage = nullptr;
    // GetServerStats: the open Receive streams, the clock, and when the
    // server started (Unix epoch ms).
    const DeliveryHub* hub = nullptr;
    std::function<int64_t()> now_ms;
    int64_t started_at_ms = 0;
  };
  explicit Admin(Deps deps);

  using Progress = std::function<void(uint64_t scanned, uint64_t estimate)>;

  absl::StatusOr<v1::WhoAmIResponse> WhoAmI(const AdminPrincipal& p);
  absl::StatusOr<v1::ValidatePolicyResponse> ValidatePolicy(const v1::ValidatePolicyRequest& req);
  absl::StatusOr<v1::GetPolicyResponse> GetPolicy(const v1::GetPolicyRequest& req);
  absl::StatusOr<v1::ListPolicyRevisionsResponse> ListPolicyRevisions(
      const v1::ListPolicyRevisionsRequest& req);
  absl::StatusOr<v1::PolicyPlan> PlanPolicy(const v1::PlanPolicyRequest& req, const Progress& progress);
  absl::StatusOr<v1::ApplyPolicyResponse> ApplyPolicy(const AdminPrincipal& p,
                                                      const v1::ApplyPolicyRequest& req);
  absl::StatusOr<v1::ApplyPolicyResponse> RollbackPolicy(const AdminPrincipal& p,
                                                         const v1::RollbackPolicyRequest& req);
  absl::StatusOr<v1::ExplainConversationResponse> ExplainConversation(
      const v1::ExplainConversationRequest& req);
  absl::StatusOr<v1::AdminListConversationsResponse> ListConversations(
      const v1::AdminListConversationsRequest& req);
  absl::StatusOr<v1::TailAuditResponse> TailAudit(const v1::TailAuditRequest& req);
  absl::StatusOr<v1::CreateTokenResponse> CreateToken(const AdminPrincipal& p,
                                                      const v1::CreateTokenRequest& req);
  absl::StatusOr<v1::ListTokensResponse> ListTokens();
  absl::StatusOr<v1::RevokeTokenResponse> RevokeToken(const AdminPrincipal& p,
                                                      const v1::RevokeTokenRequest& req);
  // Counters and gauges of the running server; reads no stored data.
  v1::GetServerStatsResponse GetServerStats();

 private:
  // Commits `content` and re-evaluates every conversation; audited.
  absl::StatusOr<v1::ApplyPolicyResponse> CommitAndApply(const AdminPrincipal& p,
                                                         const std::string& content,
                                                         const std::string& file_name,
                                                         const std::string& comment,
                                                         uint64_t rollback_of);
  Deps d_;
  absl::Mutex apply_mu_;  // one apply/rollback at a time
};

}  // namespace parley::core

#endif  // PARLEY_CORE_ADMIN_H_
