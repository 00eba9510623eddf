// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/admin.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/ids.h"
#include "core/status_macros.h"

namespace parley::core {
namespace {

constexpr size_t kMaxDocumentBytes = 1 << 20;

absl::Status CheckDocument(const std::string& content) {
  if (content.empty()) return absl::InvalidArgumentError("content: the policy document is empty");
  if (content.size() > kMaxDocumentBytes) {
    return absl::InvalidArgumentError(absl::StrCat("content: ", content.size(),
                                                   " bytes exceeds the limit of ", kMaxDocumentBytes));
  }
  return absl::OkStatus();
}

std::string FileName(const std::string& f) { return f.empty() ? "policy.yaml" : f; }

size_t Samples(uint32_t requested) {
  return requested == 0 ? 3 : std::min<uint32_t>(requested, 20);
}

}  // namespace

Admin::Admin(Deps deps) : d_(deps) {
  if (!d_.service || !d_.policy || !d_.audit || !d_.tokens || !d_.storage || !d_.hub || !d_.now_ms) {
    std::abort();
  }
}

v1::GetServerStatsResponse Admin::GetServerStats() {
  v1::GetServerStatsResponse r;
  r.set_server_time_ms(d_.now_ms());
  r.set_started_at_ms(d_.started_at_ms);
  const ParleyService::Counters c = d_.service->counters();
  r.set_sends_stored(c.sends_stored);
  r.set_sends_duplicate(c.sends_duplicate);
  r.set_sends_refused(c.sends_refused);
  r.set_acked(c.acked);
  r.set_receive_streams(static_cast<uint32_t>(d_.hub->size()));
  const storage::StorageStats s = d_.storage->Stats();
  r.set_group_commits(s.group_commits);
  r.set_group_commit_waiters(s.group_commit_waiters);
  r.set_memtable_bytes(s.memtable_bytes);
  r.set_table_file_bytes(s.table_file_bytes);
  r.set_pending_compaction_bytes(s.pending_compaction_bytes);
  r.set_writes_stopped(s.writes_stopped);
  d_.service->SendLatency(r.mutable_send_latency());
  return r;
}

absl::StatusOr<v1::WhoAmIResponse> Admin::WhoAmI(const AdminPrincipal& p) {
  PARLEY_ASSIGN_OR_RETURN(auto rec, d_.storage->admin_tokens().GetAdminToken(p.token_id));
  v1::WhoAmIResponse resp;
  ToProto(rec, resp.mutable_token());
  return resp;
}

absl::StatusOr<v1::ValidatePolicyResponse> Admin::ValidatePolicy(const v1::ValidatePolicyRequest& req) {
  PARLEY_RETURN_IF_ERROR(CheckDocument(req.content()));
  v1::ValidatePolicyResponse resp;
  auto v = d_.policy->ParseCandidate(req.content(), FileName(req.file_name()));
  if (!v.ok()) {
    if (!absl::IsInvalidArgument(v.status())) return v.status();
    resp.set_valid(false);
    resp.set_errors(std::string(v.status().message()));
    return resp;
  }
  resp.set_valid(true);
  for (auto id : (*v)->policy.rule_ids()) resp.add_rule_ids(std::string(id));
  resp.set_name(std::string((*v)->policy.name()));
  return resp;
}

absl::StatusOr<v1::GetPolicyResponse> Admin::GetPolicy(const v1::GetPolicyRequest& req) {
  auto cur = d_.policy->current();
  v1::GetPolicyResponse resp;
  if (req.number() == 0 || req.number() == cur->record.number) {
    ToProto(*cur, true, resp.mutable_revision());
    resp.set_content(cur->record.content);
    return resp;
  }
  auto r = d_.storage->policies().GetRevision(req.number());
  if (absl::IsNotFound(r.status())) {
    return absl::NotFoundError(absl::StrCat("number: policy revision ", req.number(), " not found"));
  }
  if (!r.ok()) return r.status();
  auto parsed = d_.policy->ParseCandidate(r->content, "stored revision");
  ToProto(*r, parsed.ok() ? std::string((*parsed)->policy.name()) : "", false, resp.mutable_revision());
  resp.set_content(r->content);
  return resp;
}

absl::StatusOr<v1::ListPolicyRevisionsResponse> Admin::ListPolicyRevisions(
    const v1::ListPolicyRevisionsRequest& req) {
  if (req.limit() > 500) return absl::InvalidArgumentError("limit: at most 500");
  const size_t limit = req.limit() == 0 ? 50 : req.limit();
  PARLEY_ASSIGN_OR_RETURN(auto revs, d_.storage->policies().ListRevisions(req.before(), limit));
  auto cur = d_.policy->current();
  v1::ListPolicyRevisionsResponse resp;
  for (const auto& r : revs) {
    auto parsed = d_.policy->ParseCandidate(r.content, "stored revision");
    ToProto(r, parsed.ok() ? std::string((*parsed)->policy.name()) : "", r.number == cur->record.number,
            resp.add_revisions());
  }
  return resp;
}

absl::StatusOr<v1::PolicyPlan> Admin::PlanPolicy(const v1::PlanPolicyRequest& req,
                                                 const Progress& progress) {
  PARLEY_RETURN_IF_ERROR(CheckDocument(req.content()));
  if (req.samples() > 20) return absl::InvalidArgumentError("samples: at most 20");
  PARLEY_ASSIGN_OR_RETURN(auto v, d_.policy->ParseCandidate(req.content(), FileName(req.file_name())));
  return d_.policy->Plan(*v, Samples(req.samples()), progress);
}

absl::StatusOr<v1::ApplyPolicyResponse> Admin::CommitAndApply(const AdminPrincipal& p,
                                                              const std::string& content,
                                                              const std::string& file_name,
                                                              const std::string& comment,
                                                              uint64_t rollback_of) {
  absl::MutexLock lock(&apply_mu_);
  auto before = d_.policy->current();
  PARLEY_ASSIGN_OR_RETURN(auto v, d_.policy->Commit(content, file_name, p.name, comment, rollback_of));
  PARLEY_RETURN_IF_ERROR(
      d_.audit
          ->Append(p.Describe(), rollback_of ? "policy.rollback" : "policy.apply", v->revision_id,
                   absl::StrCat("{\"revision\":", JsonQuote(v->revision_id),
                                ",\"content_hash\":", JsonQuote(v->record.content_hash),
                                ",\"previous_revision\":", JsonQuote(before->revision_id),
                                ",\"previous_hash\":", JsonQuote(v->record.previous_hash),
                                ",\"rollback_of\":", rollback_of, ",\"comment\":", JsonQuote(comment),
                                "}"))
          .status());
  // The revision is in force for new conversations from here; existing ones
  // are switched now (each with its own SecurityChange event).
  PARLEY_ASSIGN_OR_RETURN(auto res, d_.service->ReevaluateAll(3, /*schedule_pending=*/false));
  v1::ApplyPolicyResponse resp;
  ToProto(*v, true, resp.mutable_revision());
  *resp.mutable_result() = std::move(res.plan);
  resp.set_conversations_changed(res.changed);
  return resp;
}

absl::StatusOr<v1::ApplyPolicyResponse> Admin::ApplyPolicy(const AdminPrincipal& p,
                                                           const v1::ApplyPolicyRequest& req) {
  PARLEY_RETURN_IF_ERROR(CheckDocument(req.content()));
  PARLEY_RETURN_IF_ERROR(ValidateText(req.comment(), 500, false, "comment"));
  return CommitAndApply(p, req.content(), FileName(req.file_name()), req.comment(), 0);
}

absl::StatusOr<v1::ApplyPolicyResponse> Admin::RollbackPolicy(const AdminPrincipal& p,
                                                              const v1::RollbackPolicyRequest& req) {
  if (req.number() == 0) return absl::InvalidArgumentError("number: the revision to restore is required");
  PARLEY_RETURN_IF_ERROR(ValidateText(req.comment(), 500, false, "comment"));
  auto r = d_.storage->policies().GetRevision(req.number());
  if (absl::IsNotFound(r.status())) {
    return absl::NotFoundError(absl::StrCat("number: policy revision ", req.number(), " not found"));
  }
  if (!r.ok()) return r.status();
  return CommitAndApply(p, r->content, absl::StrCat("revision ", req.number()), req.comment(), req.number());
}

absl::StatusOr<v1::ExplainConversationResponse> Admin::ExplainConversation(
    const v1::ExplainConversationRequest& req) {
  PARLEY_RETURN_IF_ERROR(ValidateConversationId(req.conversation_id(), "conversation_id"));
  std::shared_ptr<const PolicyVersion> v;
  if (req.content().empty()) {
    v = d_.policy->current();
  } else {
    PARLEY_RETURN_IF_ERROR(CheckDocument(req.content()));
    PARLEY_ASSIGN_OR_RETURN(v, d_.policy->ParseCandidate(req.content(), FileName(req.file_name())));
  }
  auto conv = d_.storage->conversations().GetConversation(req.conversation_id());
  if (absl::IsNotFound(conv.status())) {
    return absl::NotFoundError(absl::StrCat("conversation ", req.conversation_id(), " not found"));
  }
  if (!conv.ok()) return conv.status();
  FactsBuilder fb(&d_.storage->accounts());
  const int64_t now = d_.policy->Now();
  PARLEY_ASSIGN_OR_RETURN(policy::Facts f, fb.Build(*conv, now, v->applied_at_ms));
  Evaluation e = Evaluate(*v, *conv, f, now);
  v1::ExplainConversationResponse resp;
  resp.set_conversation_id(conv->conversation_id);
  resp.set_kind(static_cast<v1::ConversationKind>(conv->kind));
  resp.set_member_count(static_cast<uint32_t>(conv->members.size()));
  ToProto(conv->security, resp.mutable_current());
  resp.set_decided_mode(static_cast<v1::SecurityMode>(e.decision.mode));
  resp.set_would_change(e.changed);
  resp.set_decision_json(policy::DecisionToJson(e.decision));
  resp.set_explanation(policy::Explain(e.decision));
  resp.set_policy_revision(v->revision_id);
  return resp;
}

absl::StatusOr<v1::AdminListConversationsResponse> Admin::ListConversations(
    const v1::AdminListConversationsRequest& req) {
  if (req.limit() > 1000) return absl::InvalidArgumentError("limit: at most 1000");
  if (req.mode() != 0 && !v1::SecurityMode_IsValid(req.mode())) {
    return absl::InvalidArgumentError(absl::StrCat("mode: unknown security mode ", req.mode()));
  }
  if (!req.page_token().empty()) {
    PARLEY_RETURN_IF_ERROR(ValidateConversationId(req.page_token(), "page_token"));
  }
  const size_t limit = req.limit() == 0 ? 100 : req.limit();
  v1::AdminListConversationsResponse resp;
  // Conversations are visited in id order: the page token is the last id,
  // and a page starts right after it (no walk over the earlier pages).
  PARLEY_RETURN_IF_ERROR(d_.storage->conversations().ForEachConversationAfter(
      req.page_token(), [&](const storage::ConversationRecord& c) {
        if (req.mode() != 0 && c.security.mode != req.mode()) return true;
        if (static_cast<size_t>(resp.conversations_size()) == limit) {
          resp.set_next_page_token(resp.conversations(resp.conversations_size() - 1).conversation_id());
          return false;
        }
        auto* s = resp.add_conversations();
        s->set_conversation_id(c.conversation_id);
        s->set_kind(static_cast<v1::ConversationKind>(c.kind));
        s->set_member_count(static_cast<uint32_t>(c.members.size()));
        ToProto(c.security, s->mutable_security());
        s->set_created_at_ms(c.created_at_ms);
        s->set_last_message_seq(c.last_seq);
        return true;
      }));
  return resp;
}

absl::StatusOr<v1::TailAuditResponse> Admin::TailAudit(const v1::TailAuditRequest& req) {
  if (req.limit() > 1000) return absl::InvalidArgumentError("limit: at most 1000");
  const size_t limit = req.limit() == 0 ? 20 : req.limit();
  uint64_t after = req.after_seq();
  if (after == 0) {
    auto last = d_.storage->audit().LastAudit();
    if (!last.ok() && !absl::IsNotFound(last.status())) return last.status();
    const uint64_t n = last.ok() ? last->seq : 0;
    after = n > limit ? n - limit : 0;
  }
  PARLEY_ASSIGN_OR_RETURN(auto recs, d_.storage->audit().ReadAudit(after, limit));
  v1::TailAuditResponse resp;
  for (const auto& r : recs) {
    auto* o = resp.add_records();
    o->set_seq(r.seq);
    o->set_time_ms(r.time_ms);
    o->set_actor(r.actor);
    o->set_action(r.action);
    o->set_target(r.target);
    o->set_details_json(r.details);
    o->set_prev_hash(r.prev_hash);
    o->set_hash(r.hash);
  }
  return resp;
}

absl::StatusOr<v1::CreateTokenResponse> Admin::CreateToken(const AdminPrincipal& p,
                                                           const v1::CreateTokenRequest& req) {
  if (!v1::AdminRole_IsValid(req.role())) {
    return absl::InvalidArgumentError(absl::StrCat("role: unknown role ", req.role()));
  }
  PARLEY_ASSIGN_OR_RETURN(NewAdminToken t, d_.tokens->Create(req.role(), req.name(), p.token_id));
  PARLEY_RETURN_IF_ERROR(d_.audit
                             ->Append(p.Describe(), "token.create", t.record.token_id,
                                      absl::StrCat("{\"role\":", JsonQuote(t.record.role),
                                                   ",\"name\":", JsonQuote(t.record.name), "}"))
                             .status());
  v1::CreateTokenResponse resp;
  ToProto(t.record, resp.mutable_token());
  resp.set_secret(t.secret);
  return resp;
}

absl::StatusOr<v1::ListTokensResponse> Admin::ListTokens() {
  PARLEY_ASSIGN_OR_RETURN(auto list, d_.tokens->List());
  v1::ListTokensResponse resp;
  for (const auto& t : list) ToProto(t, resp.add_tokens());
  return resp;
}

absl::StatusOr<v1::RevokeTokenResponse> Admin::RevokeToken(const AdminPrincipal& p,
                                                           const v1::RevokeTokenRequest& req) {
  if (req.token_id().empty()) return absl::InvalidArgumentError("token_id: is required");
  PARLEY_ASSIGN_OR_RETURN(auto rec, d_.tokens->Revoke(req.token_id()));
  PARLEY_RETURN_IF_ERROR(
      d_.audit->Append(p.Describe(), "token.revoke", rec.token_id, "{}").status());
  v1::RevokeTokenResponse resp;
  ToProto(rec, resp.mutable_token());
  return resp;
}

}  // namespace parley::core
