// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/admin_grpc.h"

#include <chrono>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/grpc_services.h"
#include "spdlog/spdlog.h"

namespace parley::core {
namespace {

constexpr v1::AdminRole kOperator = v1::ADMIN_ROLE_OPERATOR;
constexpr v1::AdminRole kAuditor = v1::ADMIN_ROLE_AUDITOR;
constexpr v1::AdminRole kModerator = v1::ADMIN_ROLE_MODERATOR;
constexpr v1::AdminRole kLawful = v1::ADMIN_ROLE_LAWFUL_ACCESS;

std::string Authorization(grpc::ServerContext* ctx) {
  auto it = ctx->client_metadata().find("authorization");
  if (it == ctx->client_metadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// Sets *out from a StatusOr and returns its status.
template <typename T>
absl::Status Take(absl::StatusOr<T> r, T* out) {
  if (!r.ok()) return r.status();
  *out = std::move(*r);
  return absl::OkStatus();
}

}  // namespace

std::vector<v1::AdminRole> AllowedRoles(const std::string& method) {
  if (method == "WhoAmI") return {kOperator, kAuditor, kModerator, kLawful};
  if (method == "TailAudit" || method == "VerifyAudit") return {kOperator, kAuditor};
  if (method == "ListReports") return {kModerator, kOperator};
  if (method == "GetReport" || method == "ResolveReport" || method == "SetAccountSuspended") {
    return {kModerator};
  }
  if (method == "ExportConversation") return {kLawful};
  if (method == "GetRetentionStatus" || method == "RunRetention") return {kOperator};
  if (method == "ValidatePolicy" || method == "GetPolicy" || method == "ListPolicyRevisions" ||
      method == "PlanPolicy" || method == "ApplyPolicy" || method == "RollbackPolicy" ||
      method == "ExplainConversation" || method == "ListConversations" || method == "CreateToken" ||
      method == "ListTokens" || method == "RevokeToken") {
    return {kOperator};
  }
  return {};
}

template <typename Fn>
grpc::Status AdminGrpc::Call(grpc::ServerContext* ctx, const std::string& method,
                             const std::string& target, Fn fn) {
  auto p = tokens_->Authenticate(Authorization(ctx));
  absl::Status s;
  std::string actor;
  if (!p.ok()) {
    s = p.status();
    actor = absl::StrCat("unauthenticated (", ctx->peer(), ")");
  } else {
    actor = p->Describe();
    auto roles = AllowedRoles(method);
    if (std::find(roles.begin(), roles.end(), p->role) == roles.end()) {
      s = absl::PermissionDeniedError(
          absl::StrCat("role ", RoleName(p->role), " may not call ", method));
    } else {
      s = fn(*p);
    }
  }
  auto logged = audit_->Append(
      actor, absl::StrCat("admin.", method), target.substr(0, 200),
      absl::StrCat("{\"code\":", JsonQuote(absl::StatusCodeToString(s.code())), "}"));
  if (!logged.ok()) {
    spdlog::error("event=audit_error method={} error=\"{}\"", method, std::string(logged.status().message()));
    // An admin action that cannot be audited does not report success.
    if (s.ok()) s = absl::UnavailableError("the audit log could not be written; the call was not recorded");
  }
  spdlog::info("event=admin method={} actor=\"{}\" target=\"{}\" code={}", method, actor, target,
               absl::StatusCodeToString(s.code()));
  return ToGrpc(s);
}

grpc::Status AdminGrpc::WhoAmI(grpc::ServerContext* ctx, const v1::WhoAmIRequest*,
                               v1::WhoAmIResponse* resp) {
  return Call(ctx, "WhoAmI", "", [&](const AdminPrincipal& p) { return Take(admin_->WhoAmI(p), resp); });
}

grpc::Status AdminGrpc::ValidatePolicy(grpc::ServerContext* ctx, const v1::ValidatePolicyRequest* req,
                                       v1::ValidatePolicyResponse* resp) {
  return Call(ctx, "ValidatePolicy", req->file_name(),
              [&](const AdminPrincipal&) { return Take(admin_->ValidatePolicy(*req), resp); });
}

grpc::Status AdminGrpc::GetPolicy(grpc::ServerContext* ctx, const v1::GetPolicyRequest* req,
                                  v1::GetPolicyResponse* resp) {
  return Call(ctx, "GetPolicy", absl::StrCat(req->number()),
              [&](const AdminPrincipal&) { return Take(admin_->GetPolicy(*req), resp); });
}

grpc::Status AdminGrpc::ListPolicyRevisions(grpc::ServerContext* ctx,
                                            const v1::ListPolicyRevisionsRequest* req,
                                            v1::ListPolicyRevisionsResponse* resp) {
  return Call(ctx, "ListPolicyRevisions", "",
              [&](const AdminPrincipal&) { return Take(admin_->ListPolicyRevisions(*req), resp); });
}

grpc::Status AdminGrpc::PlanPolicy(grpc::ServerContext* ctx, const v1::PlanPolicyRequest* req,
                                   grpc::ServerWriter<v1::PlanPolicyResponse>* writer) {
  return Call(ctx, "PlanPolicy", req->file_name(), [&](const AdminPrincipal&) -> absl::Status {
    auto last = std::chrono::steady_clock::now();
    auto plan = admin_->PlanPolicy(*req, [&](uint64_t scanned, uint64_t estimate) {
      auto now = std::chrono::steady_clock::now();
      if (now - last < std::chrono::milliseconds(100)) return;
      last = now;
      v1::PlanPolicyResponse r;
      r.mutable_progress()->set_scanned(scanned);
      r.mutable_progress()->set_total_estimate(estimate);
      writer->Write(r);  // a gone client makes this fail; the scan ends anyway
    });
    if (!plan.ok()) return plan.status();
    v1::PlanPolicyResponse r;
    *r.mutable_plan() = std::move(*plan);
    if (!writer->Write(r)) return absl::CancelledError("client went away");
    return absl::OkStatus();
  });
}

grpc::Status AdminGrpc::ApplyPolicy(grpc::ServerContext* ctx, const v1::ApplyPolicyRequest* req,
                                    v1::ApplyPolicyResponse* resp) {
  return Call(ctx, "ApplyPolicy", req->file_name(),
              [&](const AdminPrincipal& p) { return Take(admin_->ApplyPolicy(p, *req), resp); });
}

grpc::Status AdminGrpc::RollbackPolicy(grpc::ServerContext* ctx, const v1::RollbackPolicyRequest* req,
                                       v1::ApplyPolicyResponse* resp) {
  return Call(ctx, "RollbackPolicy", absl::StrCat(req->number()),
              [&](const AdminPrincipal& p) { return Take(admin_->RollbackPolicy(p, *req), resp); });
}

grpc::Status AdminGrpc::ExplainConversation(grpc::ServerContext* ctx,
                                            const v1::ExplainConversationRequest* req,
                                            v1::ExplainConversationResponse* resp) {
  return Call(ctx, "ExplainConversation", req->conversation_id(),
              [&](const AdminPrincipal&) { return Take(admin_->ExplainConversation(*req), resp); });
}

grpc::Status AdminGrpc::ListConversations(grpc::ServerContext* ctx,
                                          const v1::AdminListConversationsRequest* req,
                                          v1::AdminListConversationsResponse* resp) {
  return Call(ctx, "ListConversations", "",
              [&](const AdminPrincipal&) { return Take(admin_->ListConversations(*req), resp); });
}

grpc::Status AdminGrpc::TailAudit(grpc::ServerContext* ctx, const v1::TailAuditRequest* req,
                                  v1::TailAuditResponse* resp) {
  return Call(ctx, "TailAudit", "",
              [&](const AdminPrincipal&) { return Take(admin_->TailAudit(*req), resp); });
}

grpc::Status AdminGrpc::CreateToken(grpc::ServerContext* ctx, const v1::CreateTokenRequest* req,
                                    v1::CreateTokenResponse* resp) {
  return Call(ctx, "CreateToken", req->name(),
              [&](const AdminPrincipal& p) { return Take(admin_->CreateToken(p, *req), resp); });
}

grpc::Status AdminGrpc::ListTokens(grpc::ServerContext* ctx, const v1::ListTokensRequest*,
                                   v1::ListTokensResponse* resp) {
  return Call(ctx, "ListTokens", "",
              [&](const AdminPrincipal&) { return Take(admin_->ListTokens(), resp); });
}

grpc::Status AdminGrpc::RevokeToken(grpc::ServerContext* ctx, const v1::RevokeTokenRequest* req,
                                    v1::RevokeTokenResponse* resp) {
  return Call(ctx, "RevokeToken", req->token_id(),
              [&](const AdminPrincipal& p) { return Take(admin_->RevokeToken(p, *req), resp); });
}

grpc::Status AdminGrpc::VerifyAudit(grpc::ServerContext* ctx, const v1::VerifyAuditRequest*,
                                    v1::VerifyAuditResponse* resp) {
  return Call(ctx, "VerifyAudit", "", [&](const AdminPrincipal&) { return Take(safety_->VerifyAudit(), resp); });
}

grpc::Status AdminGrpc::ListReports(grpc::ServerContext* ctx, const v1::ListReportsRequest* req,
                                    v1::ListReportsResponse* resp) {
  return Call(ctx, "ListReports", "",
              [&](const AdminPrincipal&) { return Take(safety_->ListReports(*req), resp); });
}

grpc::Status AdminGrpc::GetReport(grpc::ServerContext* ctx, const v1::GetReportRequest* req,
                                  v1::GetReportResponse* resp) {
  return Call(ctx, "GetReport", req->report_id(),
              [&](const AdminPrincipal& p) { return Take(safety_->GetReport(p, *req), resp); });
}

grpc::Status AdminGrpc::ResolveReport(grpc::ServerContext* ctx, const v1::ResolveReportRequest* req,
                                      v1::ResolveReportResponse* resp) {
  return Call(ctx, "ResolveReport", req->report_id(),
              [&](const AdminPrincipal& p) { return Take(safety_->ResolveReport(p, *req), resp); });
}

grpc::Status AdminGrpc::SetAccountSuspended(grpc::ServerContext* ctx, const v1::SetAccountSuspendedRequest* req,
                                            v1::SetAccountSuspendedResponse* resp) {
  return Call(ctx, "SetAccountSuspended", req->account_id(),
              [&](const AdminPrincipal& p) { return Take(safety_->SetAccountSuspended(p, *req), resp); });
}

grpc::Status AdminGrpc::ExportConversation(grpc::ServerContext* ctx, const v1::ExportConversationRequest* req,
                                           v1::ExportConversationResponse* resp) {
  return Call(ctx, "ExportConversation", req->conversation_id(),
              [&](const AdminPrincipal& p) { return Take(safety_->ExportConversation(p, *req), resp); });
}

grpc::Status AdminGrpc::GetRetentionStatus(grpc::ServerContext* ctx, const v1::GetRetentionStatusRequest*,
                                           v1::GetRetentionStatusResponse* resp) {
  return Call(ctx, "GetRetentionStatus", "",
              [&](const AdminPrincipal&) { return Take(safety_->GetRetentionStatus(), resp); });
}

grpc::Status AdminGrpc::RunRetention(grpc::ServerContext* ctx, const v1::RunRetentionRequest*,
                                     v1::RunRetentionResponse* resp) {
  return Call(ctx, "RunRetention", "", [&](const AdminPrincipal&) -> absl::Status {
    auto run = safety_->RunRetention();
    if (!run.ok()) return run.status();
    *resp->mutable_run() = *run;
    return absl::OkStatus();
  });
}

}  // namespace parley::core
