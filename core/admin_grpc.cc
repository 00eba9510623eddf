// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/admin_grpc.h"

#include <chrono>
#include <functional>
#include <optional>
#include <thread>

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

std::string Authorization(grpc::ServerContextBase* ctx) {
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
  if (method == "GetRetentionStatus" || method == "RunRetention" || method == "GetServerStats") {
    return {kOperator};
  }
  if (method == "ValidatePolicy" || method == "GetPolicy" || method == "ListPolicyRevisions" ||
      method == "PlanPolicy" || method == "ApplyPolicy" || method == "RollbackPolicy" ||
      method == "ExplainConversation" || method == "ListConversations" || method == "CreateToken" ||
      method == "ListTokens" || method == "RevokeToken") {
    return {kOperator};
  }
  return {};
}

template <typename Fn>
grpc::Status AdminGrpc::Call(grpc::ServerContextBase* ctx, const std::string& method,
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

grpc::ServerUnaryReactor* AdminGrpc::WhoAmI(grpc::CallbackServerContext* ctx, const v1::WhoAmIRequest*, v1::WhoAmIResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "WhoAmI", "", [&](const AdminPrincipal& p) { return Take(admin_->WhoAmI(p), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::ValidatePolicy(grpc::CallbackServerContext* ctx, const v1::ValidatePolicyRequest* req, v1::ValidatePolicyResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "ValidatePolicy", req->file_name(),
              [&](const AdminPrincipal&) { return Take(admin_->ValidatePolicy(*req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::GetPolicy(grpc::CallbackServerContext* ctx, const v1::GetPolicyRequest* req, v1::GetPolicyResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "GetPolicy", absl::StrCat(req->number()),
              [&](const AdminPrincipal&) { return Take(admin_->GetPolicy(*req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::ListPolicyRevisions(grpc::CallbackServerContext* ctx, const v1::ListPolicyRevisionsRequest* req, v1::ListPolicyRevisionsResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "ListPolicyRevisions", "",
              [&](const AdminPrincipal&) { return Take(admin_->ListPolicyRevisions(*req), resp); });
  });
}

grpc::ServerWriteReactor<v1::PlanPolicyResponse>* AdminGrpc::PlanPolicy(grpc::CallbackServerContext* ctx,
                                                                        const v1::PlanPolicyRequest* req) {
  // Progress reports while the plan runs (one write in flight; a report
  // that finds a write in flight is skipped), then the plan and the status.
  class Reactor final : public grpc::ServerWriteReactor<v1::PlanPolicyResponse> {
   public:
    void OnWriteDone(bool) override {
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
    void OnDone() override { delete this; }
    // Called by the worker thread.
    void Progress(uint64_t scanned, uint64_t estimate) {
      absl::MutexLock lock(&mu_);
      if (writing_) return;
      writing_ = true;
      progress_.mutable_progress()->set_scanned(scanned);
      progress_.mutable_progress()->set_total_estimate(estimate);
      StartWrite(&progress_);
    }
    void Done(const grpc::Status& s, std::optional<v1::PolicyPlan> plan) {
      {
        // Bounded: a write completes (or fails) once the client reads or
        // goes away; wait at most 30 s for it.
        absl::MutexLock lock(&mu_);
        auto not_writing = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_; };
        mu_.AwaitWithTimeout(absl::Condition(&not_writing), absl::Seconds(30));
      }
      if (s.ok() && plan.has_value()) {
        *final_.mutable_plan() = std::move(*plan);
        StartWriteAndFinish(&final_, grpc::WriteOptions(), s);
      } else {
        Finish(s);
      }
    }

   private:
    absl::Mutex mu_;
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    v1::PlanPolicyResponse progress_;
    v1::PlanPolicyResponse final_;
  };
  auto* reactor = new Reactor();
  Spawn([=, this] {
    std::optional<v1::PolicyPlan> result;
    grpc::Status s = Call(ctx, "PlanPolicy", req->file_name(), [&](const AdminPrincipal&) -> absl::Status {
      auto last = std::chrono::steady_clock::now();
      auto plan = admin_->PlanPolicy(*req, [&](uint64_t scanned, uint64_t estimate) {
        auto now = std::chrono::steady_clock::now();
        if (now - last < std::chrono::milliseconds(100)) return;
        last = now;
        reactor->Progress(scanned, estimate);
      });
      if (!plan.ok()) return plan.status();
      result = std::move(*plan);
      return absl::OkStatus();
    });
    reactor->Done(s, std::move(result));
  });
  return reactor;
}

grpc::ServerUnaryReactor* AdminGrpc::ApplyPolicy(grpc::CallbackServerContext* ctx, const v1::ApplyPolicyRequest* req, v1::ApplyPolicyResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "ApplyPolicy", req->file_name(),
              [&](const AdminPrincipal& p) { return Take(admin_->ApplyPolicy(p, *req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::RollbackPolicy(grpc::CallbackServerContext* ctx, const v1::RollbackPolicyRequest* req, v1::ApplyPolicyResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "RollbackPolicy", absl::StrCat(req->number()),
              [&](const AdminPrincipal& p) { return Take(admin_->RollbackPolicy(p, *req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::ExplainConversation(grpc::CallbackServerContext* ctx, const v1::ExplainConversationRequest* req, v1::ExplainConversationResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "ExplainConversation", req->conversation_id(),
              [&](const AdminPrincipal&) { return Take(admin_->ExplainConversation(*req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::ListConversations(grpc::CallbackServerContext* ctx, const v1::AdminListConversationsRequest* req, v1::AdminListConversationsResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "ListConversations", "",
              [&](const AdminPrincipal&) { return Take(admin_->ListConversations(*req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::TailAudit(grpc::CallbackServerContext* ctx, const v1::TailAuditRequest* req, v1::TailAuditResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "TailAudit", "",
              [&](const AdminPrincipal&) { return Take(admin_->TailAudit(*req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::CreateToken(grpc::CallbackServerContext* ctx, const v1::CreateTokenRequest* req, v1::CreateTokenResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "CreateToken", req->name(),
              [&](const AdminPrincipal& p) { return Take(admin_->CreateToken(p, *req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::ListTokens(grpc::CallbackServerContext* ctx, const v1::ListTokensRequest*, v1::ListTokensResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "ListTokens", "",
              [&](const AdminPrincipal&) { return Take(admin_->ListTokens(), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::RevokeToken(grpc::CallbackServerContext* ctx, const v1::RevokeTokenRequest* req, v1::RevokeTokenResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "RevokeToken", req->token_id(),
              [&](const AdminPrincipal& p) { return Take(admin_->RevokeToken(p, *req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::VerifyAudit(grpc::CallbackServerContext* ctx, const v1::VerifyAuditRequest*, v1::VerifyAuditResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "VerifyAudit", "", [&](const AdminPrincipal&) { return Take(safety_->VerifyAudit(), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::ListReports(grpc::CallbackServerContext* ctx, const v1::ListReportsRequest* req, v1::ListReportsResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "ListReports", "",
              [&](const AdminPrincipal&) { return Take(safety_->ListReports(*req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::GetReport(grpc::CallbackServerContext* ctx, const v1::GetReportRequest* req, v1::GetReportResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "GetReport", req->report_id(),
              [&](const AdminPrincipal& p) { return Take(safety_->GetReport(p, *req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::ResolveReport(grpc::CallbackServerContext* ctx, const v1::ResolveReportRequest* req, v1::ResolveReportResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "ResolveReport", req->report_id(),
              [&](const AdminPrincipal& p) { return Take(safety_->ResolveReport(p, *req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::SetAccountSuspended(grpc::CallbackServerContext* ctx, const v1::SetAccountSuspendedRequest* req, v1::SetAccountSuspendedResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "SetAccountSuspended", req->account_id(),
              [&](const AdminPrincipal& p) { return Take(safety_->SetAccountSuspended(p, *req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::ExportConversation(grpc::CallbackServerContext* ctx, const v1::ExportConversationRequest* req, v1::ExportConversationResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "ExportConversation", req->conversation_id(),
              [&](const AdminPrincipal& p) { return Take(safety_->ExportConversation(p, *req), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::GetRetentionStatus(grpc::CallbackServerContext* ctx, const v1::GetRetentionStatusRequest*, v1::GetRetentionStatusResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "GetRetentionStatus", "",
              [&](const AdminPrincipal&) { return Take(safety_->GetRetentionStatus(), resp); });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::RunRetention(grpc::CallbackServerContext* ctx, const v1::RunRetentionRequest*, v1::RunRetentionResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "RunRetention", "", [&](const AdminPrincipal&) -> absl::Status {
    auto run = safety_->RunRetention();
    if (!run.ok()) return run.status();
    *resp->mutable_run() = *run;
    return absl::OkStatus();
  });
  });
}

grpc::ServerUnaryReactor* AdminGrpc::GetServerStats(grpc::CallbackServerContext* ctx, const v1::GetServerStatsRequest*,
                                                    v1::GetServerStatsResponse* resp) {
  return Offload(ctx, [=, this] {
    return Call(ctx, "GetServerStats", "", [&](const AdminPrincipal&) {
      *resp = admin_->GetServerStats();
      return absl::OkStatus();
    });
  });
}

AdminGrpc::~AdminGrpc() {
  absl::MutexLock lock(&threads_mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(threads_mu_) { return running_ == 0; };
  threads_mu_.Await(absl::Condition(&idle));
}

void AdminGrpc::Spawn(std::function<void()> fn) {
  {
    absl::MutexLock lock(&threads_mu_);
    ++running_;
  }
  std::thread([this, fn = std::move(fn)] {
    fn();
    absl::MutexLock lock(&threads_mu_);
    --running_;
  }).detach();
}

grpc::ServerUnaryReactor* AdminGrpc::Offload(grpc::CallbackServerContext* ctx, std::function<grpc::Status()> fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  Spawn([reactor, fn = std::move(fn)] { reactor->Finish(fn()); });
  return reactor;
}

}  // namespace parley::core
