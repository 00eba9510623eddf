// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/parleyctl/format.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <map>
#include <utility>

namespace parley::ctl {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string FormatUtc(int64_t unix_ms, const char* format) {
  if (unix_ms == 0) return "-";
  int64_t secs = unix_ms / 1000;
  if (unix_ms < 0 && unix_ms % 1000 != 0) --secs;
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "-";
  char buf[64];
  const size_t n = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}

std::vector<std::string> Samples(
    const google::protobuf::RepeatedPtrField<std::string>& ids) {
  return {ids.begin(), ids.end()};
}

std::string Transition(v1::SecurityMode from, v1::SecurityMode to) {
  return ModeName(from) + " \u2192 " + ModeName(to);
}

}  // namespace

int ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return kExitUsage;
    default:
      return kExitFailed;
  }
}

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "CODE_" + std::to_string(static_cast<int>(code));
  }
}

std::string ModeName(v1::SecurityMode mode) {
  switch (mode) {
    case v1::SECURITY_MODE_E2EE:
      return "e2ee";
    case v1::SECURITY_MODE_OPT_IN:
      return "opt-in";
    case v1::SECURITY_MODE_TRANSPORT:
      return "transport";
    default:
      return "unspecified";
  }
}

std::optional<v1::SecurityMode> ParseMode(std::string_view text) {
  const std::string s = Lower(text);
  if (s == "e2ee") return v1::SECURITY_MODE_E2EE;
  if (s == "opt-in" || s == "opt_in") return v1::SECURITY_MODE_OPT_IN;
  if (s == "transport") return v1::SECURITY_MODE_TRANSPORT;
  return std::nullopt;
}

std::string KindName(v1::ConversationKind kind) {
  switch (kind) {
    case v1::CONVERSATION_KIND_DIRECT:
      return "direct";
    case v1::CONVERSATION_KIND_GROUP:
      return "group";
    case v1::CONVERSATION_KIND_BROADCAST:
      return "broadcast";
    case v1::CONVERSATION_KIND_BUSINESS_SUPPORT:
      return "business_support";
    default:
      return "unspecified";
  }
}

std::string RoleName(v1::AdminRole role) {
  switch (role) {
    case v1::ADMIN_ROLE_OPERATOR:
      return "operator";
    case v1::ADMIN_ROLE_AUDITOR:
      return "auditor";
    case v1::ADMIN_ROLE_MODERATOR:
      return "moderator";
    case v1::ADMIN_ROLE_LAWFUL_ACCESS:
      return "lawful_access";
    default:
      return "unspecified";
  }
}

std::optional<v1::AdminRole> ParseRole(std::string_view text) {
  const std::string s = Lower(text);
  if (s == "operator") return v1::ADMIN_ROLE_OPERATOR;
  if (s == "auditor") return v1::ADMIN_ROLE_AUDITOR;
  if (s == "moderator") return v1::ADMIN_ROLE_MODERATOR;
  if (s == "lawful_access" || s == "lawful-access") {
    return v1::ADMIN_ROLE_LAWFUL_ACCESS;
  }
  return std::nullopt;
}

std::optional<RevisionRef> ParseRevisionRef(std::string_view text) {
  RevisionRef ref;
  if (!text.empty() && (text[0] == 'r' || text[0] == 'R'))
    text.remove_prefix(1);
  const size_t dash = text.find('-');
  std::string_view digits = text.substr(0, dash);
  if (digits.empty() || digits.size() > 19) return std::nullopt;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    ref.number = ref.number * 10 + static_cast<uint64_t>(c - '0');
  }
  if (ref.number == 0) return std::nullopt;
  if (dash != std::string_view::npos) {
    std::string_view hash = text.substr(dash + 1);
    if (hash.empty() || hash.size() > 64) return std::nullopt;
    for (char c : hash) {
      if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
    }
    ref.hash_prefix = Lower(hash);
  }
  return ref;
}

std::string FormatTime(int64_t unix_ms) {
  return FormatUtc(unix_ms, "%Y-%m-%dT%H:%M:%SZ");
}

std::string FormatDate(int64_t unix_ms) {
  return FormatUtc(unix_ms, "%Y-%m-%d");
}

std::string FormatDuration(uint64_t ms) {
  char buf[64];
  if (ms < 10000) {
    std::snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(ms) / 1000);
  } else if (ms < 120000) {
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000);
  } else {
    std::snprintf(buf, sizeof buf, "%llu min %llu s",
                  static_cast<unsigned long long>(ms / 60000),
                  static_cast<unsigned long long>(ms % 60000 / 1000));
  }
  return buf;
}

std::string Sanitize(std::string_view text, bool multiline) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (multiline && (c == '\n' || c == '\t')) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      out.push_back('?');
    } else if (c == 0xc2 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      out.push_back('?');  // C1 control (e.g. U+009B CSI)
      ++i;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

size_t DisplayWidth(std::string_view text) {
  size_t n = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xc0) != 0x80) ++n;
  }
  return n;
}

std::string JoinSamples(const std::vector<std::string>& items, size_t max) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < max; ++i) {
    if (i > 0) out += ", ";
    out += items[i];
  }
  if (items.size() > max) out += ", ...";
  return out;
}

Table::Table(std::vector<std::string> headers)
    : headers_(std::move(headers)), right_(headers_.size(), false) {}

void Table::AlignRight(size_t column) {
  if (column < right_.size()) right_[column] = true;
}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  for (std::string& c : cells) c = Sanitize(c);
  rows_.push_back(std::move(cells));
}

std::string Table::Render(std::string_view indent) const {
  std::vector<size_t> width(headers_.size(), 0);
  for (size_t i = 0; i < headers_.size(); ++i) {
    width[i] = DisplayWidth(headers_[i]);
    for (const auto& row : rows_)
      width[i] = std::max(width[i], DisplayWidth(row[i]));
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l(indent);
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i > 0) l += "  ";
      const std::string pad(width[i] - DisplayWidth(cells[i]), ' ');
      l += right_[i] ? pad + cells[i] : cells[i] + pad;
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  line(headers_);
  for (const auto& row : rows_) line(row);
  return out;
}

std::string ProgressLine(uint64_t scanned, uint64_t total_estimate, int width) {
  if (total_estimate == 0) {
    return std::to_string(scanned) + " conversations scanned";
  }
  const uint64_t done = std::min(scanned, total_estimate);
  const int filled =
      static_cast<int>(done * static_cast<uint64_t>(width) / total_estimate);
  const int percent = static_cast<int>(done * 100 / total_estimate);
  char pct[8];
  std::snprintf(pct, sizeof pct, "%3d%%", percent);
  return "[" + std::string(filled, '#') + std::string(width - filled, '-') +
         "] " + pct + "  " + std::to_string(scanned) + "/" +
         std::to_string(total_estimate) + " conversations";
}

std::string FormatTransitions(const v1::PolicyPlan& plan) {
  if (plan.transitions().empty()) return "no conversation changes mode\n";
  Table t({"FROM \u2192 TO", "COUNT", "SAMPLE IDS"});
  t.AlignRight(1);
  for (const v1::PlanTransition& tr : plan.transitions()) {
    t.AddRow({Transition(tr.from_mode(), tr.to_mode()),
              std::to_string(tr.count()),
              JoinSamples(Samples(tr.sample_conversation_ids()))});
  }
  return t.Render();
}

std::string FormatPlan(const v1::PolicyPlan& plan) {
  std::string out = std::to_string(plan.conversations()) +
                    " conversations evaluated\n\n" + FormatTransitions(plan);
  out += "\nunchanged: " + std::to_string(plan.unchanged()) + "\n";
  if (plan.other_changes() > 0) {
    out += "same mode, updated (lock, reason or notice changed, or an "
           "announced change cancelled): " +
           std::to_string(plan.other_changes()) + "\n";
  }

  struct Day {
    uint64_t count = 0;
    std::vector<std::string> samples;
  };
  std::map<std::string, Day> days;  // ISO dates sort chronologically
  for (const v1::PlanDowngrade& d : plan.downgrades()) {
    Day& day = days[FormatDate(d.effective_at_ms())];
    day.count += d.count();
    for (const std::string& id : d.sample_conversation_ids()) {
      day.samples.push_back(id);
    }
  }
  if (days.empty()) {
    out += "downgrades announced: none\n";
  } else {
    out += "downgrades announced (E2EE until the effective date):\n";
    Table t({"EFFECTIVE", "COUNT", "SAMPLE IDS"});
    t.AlignRight(1);
    for (const auto& [date, day] : days) {
      t.AddRow({date, std::to_string(day.count), JoinSamples(day.samples)});
    }
    out += t.Render("  ");
  }

  out += "e2ee kept: " + std::to_string(plan.e2ee_kept()) +
         " (existing_e2ee: keep), " +
         std::to_string(plan.e2ee_kept_by_participants()) +
         " (participants' choice)";
  if (!plan.kept_sample_conversation_ids().empty()) {
    out += "; e.g. " +
           Sanitize(JoinSamples(Samples(plan.kept_sample_conversation_ids())));
  }
  out += "\n";

  if (!plan.rules().empty()) {
    out += "rules matched:\n";
    Table t({"RULE", "COUNT"});
    t.AlignRight(1);
    for (const v1::PlanRuleCount& r : plan.rules()) {
      t.AddRow({r.rule_id(), std::to_string(r.count())});
    }
    out += t.Render("  ");
  }
  out += "elapsed: " + FormatDuration(plan.elapsed_ms()) + "\n";
  return out;
}

std::string FormatHistory(const v1::ListPolicyRevisionsResponse& response) {
  if (response.revisions().empty()) return "no policy revisions\n";
  Table t({"", "NUMBER", "REVISION", "TIME", "AUTHOR", "COMMENT"});
  t.AlignRight(1);
  for (const v1::PolicyRevision& r : response.revisions()) {
    std::string comment = r.comment();
    if (r.rollback_of() != 0) {
      comment += (comment.empty() ? "" : " ") + std::string("(rollback of r") +
                 std::to_string(r.rollback_of()) + ")";
    }
    t.AddRow({r.current() ? "*" : "", std::to_string(r.number()),
              r.revision_id(), FormatTime(r.created_at_ms()), r.author(),
              comment});
  }
  return t.Render() + "(* current)\n";
}

std::string RevisionHeader(const v1::PolicyRevision& r) {
  std::string out =
      Sanitize(r.revision_id()) + " (#" + std::to_string(r.number());
  if (r.current()) out += ", current";
  if (r.rollback_of() != 0) {
    out += ", rollback of r" + std::to_string(r.rollback_of());
  }
  return out + ")";
}

std::string DescribeState(const v1::SecurityState& s) {
  std::string out = ModeName(s.mode()) + ", epoch " + std::to_string(s.epoch());
  if (!s.rule_id().empty()) out += ", rule " + Sanitize(s.rule_id());
  if (!s.policy_revision().empty()) {
    out += ", revision " + Sanitize(s.policy_revision());
  }
  if (s.locked()) out += ", locked";
  if (s.set_by_participants()) out += ", set by participants";
  if (s.e2ee_ever_enabled() && s.mode() != v1::SECURITY_MODE_E2EE) {
    out += ", e2ee earlier";
  }
  if (s.has_pending() &&
      s.pending().new_mode() != v1::SECURITY_MODE_UNSPECIFIED) {
    out += "; pending " + ModeName(s.pending().new_mode()) + " at " +
           FormatTime(s.pending().effective_at_ms());
  }
  return out;
}

nlohmann::json RevisionJson(const v1::PolicyRevision& r) {
  return {{"number", r.number()},
          {"revision_id", r.revision_id()},
          {"content_hash", r.content_hash()},
          {"previous_hash", r.previous_hash()},
          {"author", r.author()},
          {"comment", r.comment()},
          {"created_at_ms", r.created_at_ms()},
          {"created_at", FormatTime(r.created_at_ms())},
          {"rollback_of", r.rollback_of()},
          {"name", r.name()},
          {"current", r.current()}};
}

nlohmann::json PlanJson(const v1::PolicyPlan& plan) {
  nlohmann::json transitions = nlohmann::json::array();
  for (const v1::PlanTransition& t : plan.transitions()) {
    transitions.push_back(
        {{"from", ModeName(t.from_mode())},
         {"to", ModeName(t.to_mode())},
         {"count", t.count()},
         {"sample_ids", Samples(t.sample_conversation_ids())}});
  }
  nlohmann::json downgrades = nlohmann::json::array();
  for (const v1::PlanDowngrade& d : plan.downgrades()) {
    downgrades.push_back(
        {{"effective_at_ms", d.effective_at_ms()},
         {"effective_date", FormatDate(d.effective_at_ms())},
         {"count", d.count()},
         {"sample_ids", Samples(d.sample_conversation_ids())}});
  }
  nlohmann::json rules = nlohmann::json::array();
  for (const v1::PlanRuleCount& r : plan.rules()) {
    rules.push_back({{"rule_id", r.rule_id()}, {"count", r.count()}});
  }
  return {{"candidate_hash", plan.candidate_hash()},
          {"conversations", plan.conversations()},
          {"unchanged", plan.unchanged()},
          {"transitions", transitions},
          {"downgrades", downgrades},
          {"e2ee_kept", plan.e2ee_kept()},
          {"e2ee_kept_by_participants", plan.e2ee_kept_by_participants()},
          {"other_changes", plan.other_changes()},
          {"kept_sample_ids", Samples(plan.kept_sample_conversation_ids())},
          {"rules", rules},
          {"evaluated_at_ms", plan.evaluated_at_ms()},
          {"elapsed_ms", plan.elapsed_ms()}};
}

nlohmann::json StateJson(const v1::SecurityState& s) {
  nlohmann::json j = {{"mode", ModeName(s.mode())},
                      {"epoch", s.epoch()},
                      {"policy_revision", s.policy_revision()},
                      {"rule_id", s.rule_id()},
                      {"reason", s.reason()},
                      {"effective_at_ms", s.effective_at_ms()},
                      {"e2ee_ever_enabled", s.e2ee_ever_enabled()},
                      {"locked", s.locked()},
                      {"set_by_participants", s.set_by_participants()},
                      {"pending", nullptr}};
  if (s.has_pending() &&
      s.pending().new_mode() != v1::SECURITY_MODE_UNSPECIFIED) {
    j["pending"] = {{"new_mode", ModeName(s.pending().new_mode())},
                    {"effective_at_ms", s.pending().effective_at_ms()},
                    {"reason", s.pending().reason()},
                    {"rule_id", s.pending().rule_id()},
                    {"policy_revision", s.pending().policy_revision()}};
  }
  return j;
}

nlohmann::json ConversationJson(const v1::ConversationSummary& c) {
  return {{"conversation_id", c.conversation_id()},
          {"kind", KindName(c.kind())},
          {"member_count", c.member_count()},
          {"security", StateJson(c.security())},
          {"created_at_ms", c.created_at_ms()},
          {"last_message_seq", c.last_message_seq()}};
}

nlohmann::json AuditJson(const v1::AuditRecord& r) {
  return {{"seq", r.seq()},
          {"time_ms", r.time_ms()},
          {"time", FormatTime(r.time_ms())},
          {"actor", r.actor()},
          {"action", r.action()},
          {"target", r.target()},
          {"details", EmbeddedJson(r.details_json())},
          {"prev_hash", Hex(r.prev_hash())},
          {"hash", Hex(r.hash())}};
}

nlohmann::json TokenJson(const v1::AdminToken& t) {
  return {{"token_id", t.token_id()},
          {"role", RoleName(t.role())},
          {"name", t.name()},
          {"created_by", t.created_by()},
          {"created_at_ms", t.created_at_ms()},
          {"revoked", t.revoked()},
          {"revoked_at_ms", t.revoked_at_ms()}};
}

nlohmann::json EmbeddedJson(const std::string& text) {
  if (text.empty()) return nullptr;
  nlohmann::json j =
      nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return text;
  return j;
}

std::string JsonText(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

}  // namespace parley::ctl
