// gRPC adapter of the admin service (synchronous API: admin traffic is low
// and a plan streams progress from a long-running scan).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Each RPC: authenticates the admin token, checks the role (table in
// admin_grpc.cc, documented in api/parley/v1/admin.proto), calls Admin,
// writes one audit record of the call (actor, method, target, outcome) and
// converts the status. Threading: called from gRPC's thread pool; stateless.
#ifndef PARLEY_CORE_ADMIN_GRPC_H_
#define PARLEY_CORE_ADMIN_GRPC_H_

#include <vector>

#include "core/admin.h"
#include "core/safety.h"
#include "parley/v1/admin.grpc.pb.h"

namespace parley::core {

// Roles allowed to call `method` (e.g. "ApplyPolicy"); empty if unknown.
std::vector<v1::AdminRole> AllowedRoles(const std::string& method);

class AdminGrpc final : public v1::AdminService::Service {
 public:
  AdminGrpc(Admin* admin, AdminTokens* tokens, AuditLog* audit, Safety* safety)
      : admin_(admin), tokens_(tokens), audit_(audit), safety_(safety) {}

  grpc::Status WhoAmI(grpc::ServerContext*, const v1::WhoAmIRequest*, v1::WhoAmIResponse*) override;
  grpc::Status ValidatePolicy(grpc::ServerContext*, const v1::ValidatePolicyRequest*,
                              v1::ValidatePolicyResponse*) override;
  grpc::Status GetPolicy(grpc::ServerContext*, const v1::GetPolicyRequest*,
                         v1::GetPolicyResponse*) override;
  grpc::Status ListPolicyRevisions(grpc::ServerContext*, const v1::ListPolicyRevisionsRequest*,
                                   v1::ListPolicyRevisionsResponse*) override;
  grpc::Status PlanPolicy(grpc::ServerContext*, const v1::PlanPolicyRequest*,
                          grpc::ServerWriter<v1::PlanPolicyResponse>*) override;
  grpc::Status ApplyPolicy(grpc::ServerContext*, const v1::ApplyPolicyRequest*,
                           v1::ApplyPolicyResponse*) override;
  grpc::Status RollbackPolicy(grpc::ServerContext*, const v1::RollbackPolicyRequest*,
                              v1::ApplyPolicyResponse*) override;
  grpc::Status ExplainConversation(grpc::ServerContext*, const v1::ExplainConversationRequest*,
                                   v1::ExplainConversationResponse*) override;
  grpc::Status ListConversations(grpc::ServerContext*, const v1::AdminListConversationsRequest*,
                                 v1::AdminListConversationsResponse*) override;
  grpc::Status TailAudit(grpc::ServerContext*, const v1::TailAuditRequest*,
                         v1::TailAuditResponse*) override;
  grpc::Status CreateToken(grpc::ServerContext*, const v1::CreateTokenRequest*,
                           v1::CreateTokenResponse*) override;
  grpc::Status ListTokens(grpc::ServerContext*, const v1::ListTokensRequest*,
                          v1::ListTokensResponse*) override;
  grpc::Status RevokeToken(grpc::ServerContext*, const v1::RevokeTokenRequest*,
                           v1::RevokeTokenResponse*) override;
  grpc::Status VerifyAudit(grpc::ServerContext*, const v1::VerifyAuditRequest*,
                           v1::VerifyAuditResponse*) override;
  grpc::Status ListReports(grpc::ServerContext*, const v1::ListReportsRequest*,
                           v1::ListReportsResponse*) override;
  grpc::Status GetReport(grpc::ServerContext*, const v1::GetReportRequest*, v1::GetReportResponse*) override;
  grpc::Status ResolveReport(grpc::ServerContext*, const v1::ResolveReportRequest*,
                             v1::ResolveReportResponse*) override;
  grpc::Status SetAccountSuspended(grpc::ServerContext*, const v1::SetAccountSuspendedRequest*,
                                   v1::SetAccountSuspendedResponse*) override;
  grpc::Status ExportConversation(grpc::ServerContext*, const v1::ExportConversationRequest*,
                                  v1::ExportConversationResponse*) override;
  grpc::Status GetRetentionStatus(grpc::ServerContext*, const v1::GetRetentionStatusRequest*,
                                  v1::GetRetentionStatusResponse*) override;
  grpc::Status RunRetention(grpc::ServerContext*, const v1::RunRetentionRequest*,
                            v1::RunRetentionResponse*) override;

 private:
  // Authenticates and authorizes; on success runs fn(principal) and audits.
  template <typename Fn>
  grpc::Status Call(grpc::ServerContext* ctx, const std::string& method, const std::string& target,
                    Fn fn);
  Admin* const admin_;
  AdminTokens* const tokens_;
  AuditLog* const audit_;
  Safety* const safety_;
};

}  // namespace parley::core

#endif  // PARLEY_CORE_ADMIN_GRPC_H_
