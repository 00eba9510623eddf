// gRPC adapter of the admin service (callback API; each call runs on a
// thread of its own, since admin calls are rare and some are long scans:
// an apply or plan walks every conversation, and a synchronous gRPC server
// in the same process slowed the message service's callback server down
// twelvefold under load, see BENCHMARKS.md).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Each RPC: authenticates the admin token, checks the role (table in
// admin_grpc.cc, documented in api/parley/v1/admin.proto), calls Admin,
// writes one audit record of the call (actor, method, target, outcome) and
// converts the status. Threading: called from gRPC's thread pool; stateless.
#ifndef PARLEY_CORE_ADMIN_GRPC_H_
#define PARLEY_CORE_ADMIN_GRPC_H_

#include <functional>
#include <vector>

#include "absl/synchronization/mutex.h"

#include "core/admin.h"
#include "core/safety.h"
#include "parley/v1/admin.grpc.pb.h"

namespace parley::core {

// Roles allowed to call `method` (e.g. "ApplyPolicy"); empty if unknown.
std::vector<v1::AdminRole> AllowedRoles(const std::string& method);

class AdminGrpc final : public v1::AdminService::CallbackService {
 public:
  AdminGrpc(Admin* admin, AdminTokens* tokens, AuditLog* audit, Safety* safety)
      : admin_(admin), tokens_(tokens), audit_(audit), safety_(safety) {}
  // Waits for the calls' threads to end (the server is shut down first).
  ~AdminGrpc() override;

  grpc::ServerUnaryReactor* WhoAmI(grpc::CallbackServerContext*, const v1::WhoAmIRequest*, v1::WhoAmIResponse*) override;
  grpc::ServerUnaryReactor* ValidatePolicy(grpc::CallbackServerContext*, const v1::ValidatePolicyRequest*,
                              v1::ValidatePolicyResponse*) override;
  grpc::ServerUnaryReactor* GetPolicy(grpc::CallbackServerContext*, const v1::GetPolicyRequest*,
                         v1::GetPolicyResponse*) override;
  grpc::ServerUnaryReactor* ListPolicyRevisions(grpc::CallbackServerContext*, const v1::ListPolicyRevisionsRequest*,
                                   v1::ListPolicyRevisionsResponse*) override;
  grpc::ServerWriteReactor<v1::PlanPolicyResponse>* PlanPolicy(grpc::CallbackServerContext*,
                                                               const v1::PlanPolicyRequest*) override;
  grpc::ServerUnaryReactor* ApplyPolicy(grpc::CallbackServerContext*, const v1::ApplyPolicyRequest*,
                           v1::ApplyPolicyResponse*) override;
  grpc::ServerUnaryReactor* RollbackPolicy(grpc::CallbackServerContext*, const v1::RollbackPolicyRequest*,
                              v1::ApplyPolicyResponse*) override;
  grpc::ServerUnaryReactor* ExplainConversation(grpc::CallbackServerContext*, const v1::ExplainConversationRequest*,
                                   v1::ExplainConversationResponse*) override;
  grpc::ServerUnaryReactor* ListConversations(grpc::CallbackServerContext*, const v1::AdminListConversationsRequest*,
                                 v1::AdminListConversationsResponse*) override;
  grpc::ServerUnaryReactor* TailAudit(grpc::CallbackServerContext*, const v1::TailAuditRequest*,
                         v1::TailAuditResponse*) override;
  grpc::ServerUnaryReactor* CreateToken(grpc::CallbackServerContext*, const v1::CreateTokenRequest*,
                           v1::CreateTokenResponse*) override;
  grpc::ServerUnaryReactor* ListTokens(grpc::CallbackServerContext*, const v1::ListTokensRequest*,
                          v1::ListTokensResponse*) override;
  grpc::ServerUnaryReactor* RevokeToken(grpc::CallbackServerContext*, const v1::RevokeTokenRequest*,
                           v1::RevokeTokenResponse*) override;
  grpc::ServerUnaryReactor* VerifyAudit(grpc::CallbackServerContext*, const v1::VerifyAuditRequest*,
                           v1::VerifyAuditResponse*) override;
  grpc::ServerUnaryReactor* ListReports(grpc::CallbackServerContext*, const v1::ListReportsRequest*,
                           v1::ListReportsResponse*) override;
  grpc::ServerUnaryReactor* GetReport(grpc::CallbackServerContext*, const v1::GetReportRequest*, v1::GetReportResponse*) override;
  grpc::ServerUnaryReactor* ResolveReport(grpc::CallbackServerContext*, const v1::ResolveReportRequest*,
                             v1::ResolveReportResponse*) override;
  grpc::ServerUnaryReactor* SetAccountSuspended(grpc::CallbackServerContext*, const v1::SetAccountSuspendedRequest*,
                                   v1::SetAccountSuspendedResponse*) override;
  grpc::ServerUnaryReactor* ExportConversation(grpc::CallbackServerContext*, const v1::ExportConversationRequest*,
                                  v1::ExportConversationResponse*) override;
  grpc::ServerUnaryReactor* GetRetentionStatus(grpc::CallbackServerContext*, const v1::GetRetentionStatusRequest*,
                                  v1::GetRetentionStatusResponse*) override;
  grpc::ServerUnaryReactor* RunRetention(grpc::CallbackServerContext*, const v1::RunRetentionRequest*,
                            v1::RunRetentionResponse*) override;
  grpc::ServerUnaryReactor* GetServerStats(grpc::CallbackServerContext*, const v1::GetServerStatsRequest*,
                                           v1::GetServerStatsResponse*) override;

 private:
  // Authenticates and authorizes; on success runs fn(principal) and audits.
  template <typename Fn>
  grpc::Status Call(grpc::ServerContextBase* ctx, const std::string& method, const std::string& target,
                    Fn fn);
  // Runs fn on a thread of its own and finishes the call with its status.
  grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* ctx, std::function<grpc::Status()> fn);
  void Spawn(std::function<void()> fn);
  Admin* const admin_;
  AdminTokens* const tokens_;
  AuditLog* const audit_;
  Safety* const safety_;
  absl::Mutex threads_mu_;
  int running_ ABSL_GUARDED_BY(threads_mu_) = 0;
};

}  // namespace parley::core

#endif  // PARLEY_CORE_ADMIN_GRPC_H_
