// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/safety.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "spdlog/spdlog.h"

namespace parley::core {
namespace {

constexpr int64_t kDayMs = 24 * 3600 * 1000LL;
constexpr size_t kContextMessages = 5;
constexpr size_t kMaxExportMessages = 100000;
constexpr char kRetentionValue[] = "retention";

bool IsUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += n;
  }
  return true;
}

bool ValidPrintable(absl::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return IsUtf8(s);
}

// One message as a JSON object for exports.
std::string MessageJson(const v1::Message& m) {
  std::string out = absl::StrCat("{\"seq\":", m.seq(), ",\"server_time_ms\":", m.server_time_ms(),
                                 ",\"sender_account_id\":", JsonQuote(m.sender_account_id()),
                                 ",\"sender_device_id\":", m.sender_device_id(),
                                 ",\"client_message_id\":", JsonQuote(m.client_message_id()),
                                 ",\"security_epoch\":", m.security_epoch());
  switch (m.payload_case()) {
    case v1::Message::kPlain: {
      const auto& p = m.plain();
      absl::StrAppend(&out, ",\"type\":\"message\",\"content_type\":",
                      JsonQuote(p.content_type().empty() ? "text/plain" : p.content_type()));
      if (IsUtf8(p.content())) {
        absl::StrAppend(&out, ",\"content\":", JsonQuote(p.content()));
      } else {
        absl::StrAppend(&out, ",\"content_base64\":", JsonQuote(absl::Base64Escape(p.content())));
      }
      break;
    }
    case v1::Message::kSecurityChange:
      absl::StrAppend(&out, ",\"type\":\"security_change\",\"new_mode\":",
                      JsonQuote(v1::SecurityMode_Name(m.security_change().new_state().mode())),
                      ",\"reason\":", JsonQuote(m.security_change().reason()));
      break;
    case v1::Message::kMembershipChange:
      absl::StrAppend(&out, ",\"type\":\"membership_change\",\"action\":",
                      JsonQuote(v1::MembershipChange::Action_Name(m.membership_change().action())));
      break;
    case v1::Message::kAccessNotice:
      absl::StrAppend(&out, ",\"type\":\"access_notice\",\"text\":", JsonQuote(m.access_notice().text()));
      break;
    case v1::Message::kModerationNotice:
      absl::StrAppend(&out, ",\"type\":\"moderation_notice\",\"text\":",
                      JsonQuote(m.moderation_notice().text()));
      break;
    default:
      absl::StrAppend(&out, ",\"type\":\"other\"");
  }
  out += "}";
  return out;
}

std::string AccessText(v1::AccessNotice::Kind kind, uint32_t count) {
  if (kind == v1::AccessNotice::KIND_LAWFUL_ACCESS) {
    return absl::StrCat("The operator's lawful-access staff exported ", count,
                        " message(s) of this chat for a legal request.");
  }
  return absl::StrCat("The operator's safety staff reviewed ", count,
                      " message(s) of this chat after a report.");
}

}  // namespace

std::string ReportId(uint64_t number) { return absl::StrCat("rep-", number); }

absl::StatusOr<uint64_t> ParseReportId(const std::string& id) {
  uint64_t n = 0;
  if (id.rfind("rep-", 0) != 0 || !absl::SimpleAtoi(id.substr(4), &n) || n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("report_id: \"", id.substr(0, 64), "\" is not a report id (rep-<number>)"));
  }
  return n;
}

Safety::Safety(Deps deps, Options options) : d_(std::move(deps)), o_(options) {}

absl::StatusOr<policy::StaffAccess> Safety::StaffAccessFor(const storage::ConversationRecord& conv,
                                                           std::string* rule_id) {
  auto v = d_.policy->current();
  FactsBuilder facts(&d_.storage->accounts());
  const int64_t now = Now();
  PARLEY_ASSIGN_OR_RETURN(policy::Facts f, facts.Build(conv, now, v->applied_at_ms));
  Evaluation e = Evaluate(*v, conv, f, now, /*full_state=*/false);
  if (rule_id != nullptr) *rule_id = std::string(e.decision.rule_id);
  return e.decision.staff_access;
}

absl::StatusOr<std::string> Safety::FileReport(v1::GetReportResponse draft) {
  draft.mutable_report()->set_status(v1::REPORT_STATUS_OPEN);
  draft.mutable_report()->set_created_at_ms(Now());
  PARLEY_ASSIGN_OR_RETURN(uint64_t number, d_.storage->safety().AddReport(draft.SerializeAsString()));
  const std::string id = ReportId(number);
  spdlog::info("event=report id={} conversation={} seq={} source={} reason={} verified={}", id,
               draft.report().conversation_id(), draft.report().seq(),
               v1::ReportSource_Name(draft.report().source()), v1::ReportReason_Name(draft.report().reason()),
               draft.report().franking_verified());
  return id;
}

void Safety::ScanMessage(const storage::ConversationRecord& conv, const v1::Message& m) {
  if (d_.scanner == nullptr || !m.has_plain()) return;
  if (conv.security.mode == v1::SECURITY_MODE_E2EE) return;  // no content: never scanned
  auto staff = StaffAccessFor(conv, nullptr);
  if (!staff.ok()) {
    spdlog::warn("event=scan_error conversation={} error=\"{}\"", conv.conversation_id,
                 std::string(staff.status().message()));
    return;
  }
  if (!staff->applies || !staff->automated_scanning) return;
  auto hit = d_.scanner->Scan(m.plain().content_type(), m.plain().content());
  if (!hit.has_value()) return;
  v1::GetReportResponse draft;
  auto* r = draft.mutable_report();
  r->set_source(v1::REPORT_SOURCE_SCANNER);
  r->set_reason(v1::REPORT_REASON_OTHER);
  r->set_conversation_id(conv.conversation_id);
  r->set_seq(m.seq());
  r->set_mode(static_cast<v1::SecurityMode>(conv.security.mode));
  r->set_sender_account_id(m.sender_account_id());
  r->set_scanner_match(absl::StrCat(d_.scanner->name(), ":", hit->label));
  *draft.mutable_message() = m;
  auto id = FileReport(std::move(draft));
  if (!id.ok()) {
    spdlog::warn("event=scan_report_error conversation={} error=\"{}\"", conv.conversation_id,
                 std::string(id.status().message()));
  }
}

absl::StatusOr<std::pair<uint64_t, v1::GetReportResponse>> Safety::LoadReport(const std::string& report_id) {
  PARLEY_ASSIGN_OR_RETURN(uint64_t n, ParseReportId(report_id));
  auto stored = d_.storage->safety().GetReport(n);
  if (absl::IsNotFound(stored.status())) {
    return absl::NotFoundError(absl::StrCat("report ", report_id, " does not exist"));
  }
  if (!stored.ok()) return stored.status();
  v1::GetReportResponse r;
  if (!r.ParseFromString(stored->body)) {
    return absl::DataLossError(absl::StrCat("report ", report_id, " is corrupt"));
  }
  r.mutable_report()->set_report_id(report_id);
  return std::make_pair(n, std::move(r));
}

absl::StatusOr<v1::ListReportsResponse> Safety::ListReports(const v1::ListReportsRequest& req) {
  if (!v1::ReportStatus_IsValid(req.status())) {
    return absl::InvalidArgumentError(absl::StrCat("status: unknown value ", req.status()));
  }
  size_t limit = req.limit() == 0 ? 50 : req.limit();
  if (limit > 500) return absl::InvalidArgumentError("limit: at most 500");
  uint64_t after = 0;
  if (!req.page_token().empty()) {
    PARLEY_ASSIGN_OR_RETURN(after, ParseReportId(req.page_token()));
  }
  const bool open_only = req.status() == v1::REPORT_STATUS_OPEN;
  v1::ListReportsResponse resp;
  // Resolved-only listing walks every report and filters (bounded pages).
  uint64_t cursor = after;
  for (int pages = 0; pages < 100 && static_cast<size_t>(resp.reports_size()) < limit; ++pages) {
    PARLEY_ASSIGN_OR_RETURN(auto batch, d_.storage->safety().ListReports(open_only, cursor, limit));
    if (batch.empty()) {
      cursor = 0;
      break;
    }
    for (const auto& s : batch) {
      cursor = s.number;
      v1::GetReportResponse r;
      if (!r.ParseFromString(s.body)) {
        return absl::DataLossError(absl::StrCat("report ", ReportId(s.number), " is corrupt"));
      }
      if (req.status() == v1::REPORT_STATUS_RESOLVED && s.open) continue;
      r.mutable_report()->set_report_id(ReportId(s.number));
      *resp.add_reports() = r.report();
      if (static_cast<size_t>(resp.reports_size()) == limit) break;
    }
  }
  if (static_cast<size_t>(resp.reports_size()) == limit && cursor != 0) {
    resp.set_next_page_token(ReportId(cursor));
  }
  return resp;
}

absl::StatusOr<v1::GetReportResponse> Safety::GetReport(const AdminPrincipal& p,
                                                        const v1::GetReportRequest& req) {
  PARLEY_ASSIGN_OR_RETURN(auto loaded, LoadReport(req.report_id()));
  v1::GetReportResponse& r = loaded.second;
  const v1::ReportSummary& s = r.report();
  uint32_t shown = 0;
  auto conv = d_.storage->conversations().GetConversation(s.conversation_id());
  if (s.franking_verified()) {
    // E2EE: exactly what the reporter revealed (they chose to show it).
    shown = 1;
    r.set_context_note(
        "end-to-end encrypted: this is what the reporter revealed, verified by message franking; "
        "parleyd has no other content of this conversation");
  } else if (!conv.ok()) {
    return conv.status();
  } else {
    std::string rule;
    PARLEY_ASSIGN_OR_RETURN(policy::StaffAccess staff, StaffAccessFor(*conv, &rule));
    if (staff.applies && staff.moderation == policy::Moderation::kNone) {
      r.clear_message();
      r.set_context_note(absl::StrCat("policy rule ", rule,
                                      " allows no staff review (moderation: none): content withheld"));
    } else {
      // Prefer the stored copy (it reflects removals); else the report's copy.
      auto h = d_.storage->messages().ReadHistory(s.conversation_id(), s.seq() + 1, 1);
      if (h.ok() && !h->empty() && (*h)[0].seq == s.seq()) (void)r.mutable_message()->ParseFromString((*h)[0].payload);
      shown = 1;
      if (staff.applies && staff.moderation == policy::Moderation::kFullReview) {
        auto before = d_.storage->messages().ReadHistory(s.conversation_id(), s.seq(), kContextMessages);
        std::vector<v1::Message> ctx;
        if (before.ok()) {
          for (auto it = before->rbegin(); it != before->rend(); ++it) {
            v1::Message m;
            if (m.ParseFromString(it->payload)) ctx.push_back(std::move(m));
          }
        }
        auto after = d_.storage->messages().ReadHistory(s.conversation_id(), s.seq() + 1 + kContextMessages,
                                                        kContextMessages);
        if (after.ok()) {
          for (auto it = after->rbegin(); it != after->rend(); ++it) {
            if (it->seq <= s.seq()) continue;
            v1::Message m;
            if (m.ParseFromString(it->payload)) ctx.push_back(std::move(m));
          }
        }
        for (auto& m : ctx) {
          if (m.has_plain()) ++shown;
          *r.add_context() = std::move(m);
        }
        r.set_context_note(absl::StrCat("policy rule ", rule, " (moderation: full_review): up to ",
                                        kContextMessages, " messages before and after"));
      } else {
        r.set_context_note(absl::StrCat("policy rule ", rule,
                                        " (moderation: reports): the reported message only"));
      }
    }
  }
  PARLEY_RETURN_IF_ERROR(d_.audit
                             ->Append(p.Describe(), "content.view", req.report_id(),
                                      absl::StrCat("{\"conversation\":", JsonQuote(s.conversation_id()),
                                                   ",\"seq\":", s.seq(), ",\"messages_shown\":", shown,
                                                   ",\"franking_verified\":", s.franking_verified() ? "true" : "false",
                                                   "}"))
                             .status());
  if (shown > 0 && !s.franking_verified() && conv.ok()) {
    absl::Status n = NoticeAccess(*conv, v1::AccessNotice::KIND_MODERATION_REVIEW, shown);
    if (!n.ok()) spdlog::warn("event=access_notice_error error=\"{}\"", std::string(n.message()));
  }
  return r;
}

absl::Status Safety::NoticeAccess(const storage::ConversationRecord& conv, v1::AccessNotice::Kind kind,
                                  uint32_t message_count) {
  PARLEY_ASSIGN_OR_RETURN(policy::StaffAccess staff, StaffAccessFor(conv, nullptr));
  if (!staff.applies || staff.notify_participants == policy::AccessNotification::kNever) {
    return absl::OkStatus();
  }
  v1::Message m;
  auto* n = m.mutable_access_notice();
  n->set_kind(kind);
  n->set_accessed_at_ms(Now());
  n->set_message_count(message_count);
  n->set_text(AccessText(kind, message_count));
  if (staff.notify_participants == policy::AccessNotification::kImmediately) {
    return d_.post_event(conv.conversation_id, [&](v1::Message* out) { *out->mutable_access_notice() = *n; }, {});
  }
  storage::ScheduledNotice sn;
  sn.due_ms = Now() + static_cast<int64_t>(staff.notify_after_days) * kDayMs;
  sn.id = absl::StrCat(conv.conversation_id, "/", Now(), "/", kind, "/", message_count);
  m.set_conversation_id(conv.conversation_id);
  sn.body = m.SerializeAsString();
  spdlog::info("event=access_notice scheduled conversation={} due_ms={}", conv.conversation_id, sn.due_ms);
  return d_.storage->safety().ScheduleNotice(sn);
}

absl::StatusOr<uint64_t> Safety::RunDueNotices() {
  PARLEY_ASSIGN_OR_RETURN(auto due, d_.storage->safety().DueNotices(Now(), 1000));
  uint64_t sent = 0;
  for (const auto& sn : due) {
    v1::Message m;
    if (!m.ParseFromString(sn.body)) {
      spdlog::error("event=notice_corrupt id=\"{}\"", sn.id);
      PARLEY_RETURN_IF_ERROR(d_.storage->safety().DeleteNotice(sn));
      continue;
    }
    absl::Status s = d_.post_event(
        m.conversation_id(), [&](v1::Message* out) { *out->mutable_access_notice() = m.access_notice(); }, {});
    if (!s.ok() && !absl::IsNotFound(s)) return s;  // retried next time
    PARLEY_RETURN_IF_ERROR(d_.storage->safety().DeleteNotice(sn));
    ++sent;
  }
  return sent;
}

absl::Status Safety::Suspend(const std::string& account_id, bool suspended) {
  auto acct = d_.storage->accounts().GetAccount(account_id);
  if (absl::IsNotFound(acct.status())) {
    return absl::NotFoundError(absl::StrCat("account ", account_id, " does not exist"));
  }
  if (!acct.ok()) return acct.status();
  acct->suspended = suspended;
  PARLEY_RETURN_IF_ERROR(d_.storage->accounts().UpdateAccount(*acct));
  if (suspended) {
    PARLEY_ASSIGN_OR_RETURN(auto devices, d_.storage->accounts().ListDevices(account_id));
    for (const auto& dev : devices) {
      d_.hub->Close({account_id, dev.device_id},
                    absl::PermissionDeniedError(absl::StrCat("account ", acct->username, " is suspended")));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ResolveReportResponse> Safety::ResolveReport(const AdminPrincipal& p,
                                                                const v1::ResolveReportRequest& req) {
  if (!v1::ReportAction_IsValid(req.action()) || req.action() == v1::REPORT_ACTION_UNSPECIFIED) {
    return absl::InvalidArgumentError("action: one of dismiss, warn, suspend, remove_message is required");
  }
  if (!ValidPrintable(req.note(), 2000)) {
    return absl::InvalidArgumentError("note: required (1-2000 printable UTF-8 characters): why");
  }
  PARLEY_ASSIGN_OR_RETURN(auto loaded, LoadReport(req.report_id()));
  auto& [number, r] = loaded;
  v1::ReportSummary* s = r.mutable_report();
  if (s->status() == v1::REPORT_STATUS_RESOLVED) {
    return absl::FailedPreconditionError(absl::StrCat("report ", req.report_id(), " was already resolved (",
                                                      v1::ReportAction_Name(s->action()), " by ",
                                                      s->resolved_by(), ")"));
  }
  switch (req.action()) {
    case v1::REPORT_ACTION_DISMISS:
      break;
    case v1::REPORT_ACTION_WARN: {
      const uint64_t seq = s->seq();
      PARLEY_RETURN_IF_ERROR(d_.post_event(
          s->conversation_id(),
          [&](v1::Message* m) {
            auto* n = m->mutable_moderation_notice();
            n->set_kind(v1::ModerationNotice::KIND_WARNING);
            n->set_seq(seq);
            n->set_text(absl::StrCat("Your message #", seq,
                                     " was reported and found to break the rules of this service. "
                                     "Further violations may lead to suspension."));
          },
          {s->sender_account_id()}));
      break;
    }
    case v1::REPORT_ACTION_SUSPEND:
      PARLEY_RETURN_IF_ERROR(Suspend(s->sender_account_id(), true));
      break;
    case v1::REPORT_ACTION_REMOVE_MESSAGE: {
      if (s->franking_verified() || s->mode() == v1::SECURITY_MODE_E2EE) {
        return absl::FailedPreconditionError(
            "remove_message: the message is end-to-end encrypted; parleyd holds no copy to remove");
      }
      absl::Status del = d_.storage->messages().DeleteHistoryEntry(s->conversation_id(), s->seq());
      if (!del.ok() && !absl::IsNotFound(del)) return del;
      const uint64_t seq = s->seq();
      PARLEY_RETURN_IF_ERROR(d_.post_event(
          s->conversation_id(),
          [&](v1::Message* m) {
            auto* n = m->mutable_moderation_notice();
            n->set_kind(v1::ModerationNotice::KIND_MESSAGE_REMOVED);
            n->set_seq(seq);
            n->set_text(absl::StrCat("Message #", seq, " was removed by the operator's safety staff."));
          },
          {}));
      break;
    }
    default:
      break;
  }
  s->set_status(v1::REPORT_STATUS_RESOLVED);
  s->set_action(req.action());
  s->set_resolved_by(p.Describe());
  s->set_resolved_at_ms(Now());
  s->set_resolution_note(req.note());
  v1::GetReportResponse body = r;
  body.mutable_report()->clear_report_id();
  PARLEY_RETURN_IF_ERROR(d_.storage->safety().UpdateReport({.number = number, .open = false,
                                                           .body = body.SerializeAsString()}));
  PARLEY_RETURN_IF_ERROR(
      d_.audit
          ->Append(p.Describe(), "report.resolve", req.report_id(),
                   absl::StrCat("{\"action\":", JsonQuote(v1::ReportAction_Name(req.action())),
                                ",\"sender\":", JsonQuote(s->sender_account_id()),
                                ",\"conversation\":", JsonQuote(s->conversation_id()), ",\"seq\":", s->seq(),
                                ",\"note\":", JsonQuote(req.note()), "}"))
          .status());
  if (req.action() == v1::REPORT_ACTION_SUSPEND) {
    PARLEY_RETURN_IF_ERROR(d_.audit
                               ->Append(p.Describe(), "account.suspend", s->sender_account_id(),
                                        absl::StrCat("{\"report\":", JsonQuote(req.report_id()), "}"))
                               .status());
  }
  v1::ResolveReportResponse resp;
  *resp.mutable_report() = *s;
  return resp;
}

absl::StatusOr<v1::SetAccountSuspendedResponse> Safety::SetAccountSuspended(
    const AdminPrincipal& p, const v1::SetAccountSuspendedRequest& req) {
  if (req.account_id().empty() || req.account_id().size() > 64) {
    return absl::InvalidArgumentError("account_id: required");
  }
  if (!ValidPrintable(req.note(), 2000)) {
    return absl::InvalidArgumentError("note: required (1-2000 printable UTF-8 characters): why");
  }
  PARLEY_RETURN_IF_ERROR(Suspend(req.account_id(), req.suspended()));
  PARLEY_RETURN_IF_ERROR(d_.audit
                             ->Append(p.Describe(), req.suspended() ? "account.suspend" : "account.unsuspend",
                                      req.account_id(), absl::StrCat("{\"note\":", JsonQuote(req.note()), "}"))
                             .status());
  v1::SetAccountSuspendedResponse resp;
  resp.set_account_id(req.account_id());
  resp.set_suspended(req.suspended());
  return resp;
}

absl::StatusOr<v1::ExportConversationResponse> Safety::ExportConversation(
    const AdminPrincipal& p, const v1::ExportConversationRequest& req) {
  if (!ValidPrintable(req.case_reference(), 128)) {
    return absl::InvalidArgumentError("case_reference: required (1-128 printable characters)");
  }
  if (req.conversation_id().empty() || req.conversation_id().size() > 64) {
    return absl::InvalidArgumentError("conversation_id: required");
  }
  if (req.from_ms() < 0 || req.to_ms() < 0 || (req.to_ms() != 0 && req.to_ms() < req.from_ms())) {
    return absl::InvalidArgumentError("from_ms/to_ms: must be >= 0 and from <= to");
  }
  auto conv = d_.storage->conversations().GetConversation(req.conversation_id());
  if (absl::IsNotFound(conv.status())) {
    return absl::NotFoundError(absl::StrCat("conversation ", req.conversation_id(), " does not exist"));
  }
  if (!conv.ok()) return conv.status();
  const int64_t to = req.to_ms() == 0 ? Now() : req.to_ms();
  const bool e2ee = conv->security.mode == v1::SECURITY_MODE_E2EE;
  std::string rule;
  PARLEY_ASSIGN_OR_RETURN(policy::StaffAccess staff, StaffAccessFor(*conv, &rule));
  if (!e2ee && !staff.lawful_access) {
    return absl::PermissionDeniedError(absl::StrCat("policy rule ", rule, " (", conv->security.policy_revision,
                                                    ") does not allow lawful access to conversation ",
                                                    req.conversation_id()));
  }
  std::string json = absl::StrCat(
      "{\"format\":\"parley.export.v1\",\"case_reference\":", JsonQuote(req.case_reference()),
      ",\"exported_at_ms\":", Now(), ",\"exported_by\":", JsonQuote(p.Describe()),
      ",\"conversation\":{\"conversation_id\":", JsonQuote(conv->conversation_id),
      ",\"kind\":", JsonQuote(v1::ConversationKind_Name(static_cast<v1::ConversationKind>(conv->kind))),
      ",\"created_at_ms\":", conv->created_at_ms, ",\"last_seq\":", conv->last_seq,
      ",\"mode\":", JsonQuote(v1::SecurityMode_Name(static_cast<v1::SecurityMode>(conv->security.mode))),
      ",\"policy_revision\":", JsonQuote(conv->security.policy_revision), ",\"rule_id\":",
      JsonQuote(conv->security.rule_id), ",\"members\":[");
  for (size_t i = 0; i < conv->members.size(); ++i) {
    const auto& m = conv->members[i];
    auto acct = d_.storage->accounts().GetAccount(m.account_id);
    absl::StrAppend(&json, i ? "," : "", "{\"account_id\":", JsonQuote(m.account_id), ",\"username\":",
                    JsonQuote(acct.ok() ? acct->username : ""), ",\"joined_at_ms\":", m.joined_at_ms, "}");
  }
  absl::StrAppend(&json, "]},\"range\":{\"from_ms\":", req.from_ms(), ",\"to_ms\":", to, "}");
  v1::ExportConversationResponse resp;
  uint32_t count = 0;
  if (e2ee) {
    resp.set_content_included(false);
    resp.set_note(absl::StrCat("conversation ", conv->conversation_id,
                               " is end-to-end encrypted: parleyd has no readable content; metadata only"));
    absl::StrAppend(&json, ",\"content_included\":false,\"note\":", JsonQuote(resp.note()), ",\"messages\":[]}");
  } else {
    // History newest first, paged; kept oldest first in the export.
    std::vector<v1::Message> msgs;
    uint64_t before = 0;
    bool truncated = false;
    for (;;) {
      PARLEY_ASSIGN_OR_RETURN(auto page, d_.storage->messages().ReadHistory(conv->conversation_id, before, 500));
      if (page.empty()) break;
      bool older = false;
      for (const auto& e : page) {
        before = e.seq;
        if (e.server_time_ms > to) continue;
        if (e.server_time_ms < req.from_ms()) {
          older = true;
          break;
        }
        v1::Message m;
        if (!m.ParseFromString(e.payload)) {
          return absl::DataLossError(absl::StrCat("history entry ", conv->conversation_id, "#", e.seq, " is corrupt"));
        }
        msgs.push_back(std::move(m));
        if (msgs.size() == kMaxExportMessages) {
          truncated = true;
          break;
        }
      }
      if (older || truncated || page.size() < 500 || before <= 1) break;
    }
    std::reverse(msgs.begin(), msgs.end());
    absl::StrAppend(&json, ",\"content_included\":true,\"truncated\":", truncated ? "true" : "false",
                    ",\"messages\":[");
    for (size_t i = 0; i < msgs.size(); ++i) {
      absl::StrAppend(&json, i ? "," : "", MessageJson(msgs[i]));
      if (msgs[i].has_plain()) ++count;
    }
    json += "]}";
    resp.set_content_included(true);
    resp.set_note(absl::StrCat(msgs.size(), " history entries (", count,
                               " messages with content); messages sent while the conversation was end-to-end "
                               "encrypted are not in readable history"));
  }
  resp.set_export_json(std::move(json));
  resp.set_message_count(count);
  PARLEY_RETURN_IF_ERROR(d_.audit
                             ->Append(p.Describe(), "content.export", req.conversation_id(),
                                      absl::StrCat("{\"case\":", JsonQuote(req.case_reference()),
                                                   ",\"messages\":", count, ",\"content_included\":",
                                                   e2ee ? "false" : "true", ",\"from_ms\":", req.from_ms(),
                                                   ",\"to_ms\":", to, "}"))
                             .status());
  if (count > 0) {
    absl::Status n = NoticeAccess(*conv, v1::AccessNotice::KIND_LAWFUL_ACCESS, count);
    if (!n.ok()) spdlog::warn("event=access_notice_error error=\"{}\"", std::string(n.message()));
  }
  return resp;
}

absl::StatusOr<v1::VerifyAuditResponse> Safety::VerifyAudit() {
  PARLEY_ASSIGN_OR_RETURN(AuditVerifyResult r, d_.audit->Verify());
  v1::VerifyAuditResponse resp;
  resp.set_ok(r.ok);
  resp.set_records(r.records);
  resp.set_first_bad_seq(r.first_bad_seq);
  resp.set_problem(r.problem);
  return resp;
}

absl::StatusOr<v1::GetRetentionStatusResponse> Safety::GetRetentionStatus() {
  v1::GetRetentionStatusResponse resp;
  auto stored = d_.storage->safety().GetSafetyValue(kRetentionValue);
  if (stored.ok()) {
    if (!resp.ParseFromString(*stored)) return absl::DataLossError("retention status is corrupt");
  } else if (!absl::IsNotFound(stored.status())) {
    return stored.status();
  }
  resp.set_queue_retention_days(static_cast<uint32_t>(std::max(0, o_.queue_retention_days)));
  resp.set_idempotency_window_days(static_cast<uint32_t>(std::max(0, o_.idempotency_window_days)));
  resp.set_interval_ms(o_.retention_interval_ms);
  if (resp.has_last_run()) resp.set_next_run_at_ms(resp.last_run().started_at_ms() + o_.retention_interval_ms);
  return resp;
}

void Safety::MaybeRunRetention() {
  {
    absl::MutexLock lock(&retention_mu_);
    if (last_retention_ms_ != 0 && Now() - last_retention_ms_ < o_.retention_interval_ms) return;
  }
  auto r = RunRetention();
  if (!r.ok()) spdlog::warn("event=retention error=\"{}\"", std::string(r.status().message()));
}

absl::StatusOr<v1::RetentionRun> Safety::RunRetention() {
  absl::MutexLock lock(&retention_mu_);
  const auto t0 = std::chrono::steady_clock::now();
  v1::RetentionRun run;
  run.set_started_at_ms(Now());
  last_retention_ms_ = run.started_at_ms();
  absl::Status st;
  // Per conversation: the rule's transport.retention_days; conversations
  // that are E2EE now keep their (older, readable) history for the global cap.
  std::vector<std::pair<std::string, int64_t>> cutoffs;
  const int64_t now = Now();
  auto v = d_.policy->current();
  FactsBuilder facts(&d_.storage->accounts());
  policy::Facts f;
  st = d_.storage->conversations().ForEachConversation([&](const storage::ConversationRecord& conv) {
    run.set_conversations_checked(run.conversations_checked() + 1);
    if (conv.last_seq == 0) return true;
    if (!facts.BuildInto(conv, now, v->applied_at_ms, &f).ok()) return true;
    Evaluation e = Evaluate(*v, conv, f, now, /*full_state=*/false);
    const auto& staff = e.decision.staff_access;
    if (staff.applies && staff.retention_days >= 0) {
      cutoffs.emplace_back(conv.conversation_id, now - static_cast<int64_t>(staff.retention_days) * kDayMs);
    }
    return true;
  });
  uint64_t history = 0, queue = 0, idempotency = 0;
  for (const auto& [id, cutoff] : cutoffs) {
    if (!st.ok()) break;
    auto n = d_.storage->messages().PurgeConversationHistoryBefore(id, cutoff);
    if (!n.ok()) st = n.status(); else history += *n;
  }
  if (st.ok() && o_.history_retention_days > 0) {
    auto n = d_.storage->messages().PurgeHistoryBefore(now - o_.history_retention_days * kDayMs);
    if (!n.ok()) st = n.status(); else history += *n;
  }
  if (st.ok() && o_.queue_retention_days > 0) {
    auto n = d_.storage->messages().PurgeQueuesBefore(now - o_.queue_retention_days * kDayMs);
    if (!n.ok()) st = n.status(); else queue += *n;
  }
  if (st.ok() && o_.idempotency_window_days > 0) {
    auto n = d_.storage->messages().PurgeIdempotencyBefore(now - o_.idempotency_window_days * kDayMs);
    if (!n.ok()) st = n.status(); else idempotency += *n;
  }
  if (st.ok() && history + queue + idempotency > 0) {
    st = d_.storage->Compact();
    run.set_compacted(st.ok());
  }
  run.set_history_purged(history);
  run.set_queue_purged(queue);
  run.set_idempotency_purged(idempotency);
  if (!st.ok()) run.set_error(std::string(st.message()));
  run.set_elapsed_ms(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()));
  v1::GetRetentionStatusResponse status;
  auto stored = d_.storage->safety().GetSafetyValue(kRetentionValue);
  if (stored.ok()) (void)status.ParseFromString(*stored);
  *status.mutable_last_run() = run;
  status.set_total_history_purged(status.total_history_purged() + history);
  status.set_total_queue_purged(status.total_queue_purged() + queue);
  status.set_total_idempotency_purged(status.total_idempotency_purged() + idempotency);
  PARLEY_RETURN_IF_ERROR(d_.storage->safety().PutSafetyValue(kRetentionValue, status.SerializeAsString()));
  if (history + queue + idempotency > 0 || !st.ok()) {
    spdlog::info(
        "event=retention history_purged={} queue_purged={} idempotency_purged={} conversations={} elapsed_ms={} "
        "error=\"{}\"",
        history, queue, idempotency, run.conversations_checked(), run.elapsed_ms(), run.error());
  }
  if (!st.ok()) return st;
  return run;
}

}  // namespace parley::core
