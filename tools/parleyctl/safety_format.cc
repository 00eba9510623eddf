// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/parleyctl/safety_format.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <iterator>

#include "api/parley/latency/latency_histogram.h"
#include "tools/parleyctl/format.h"

namespace parley::ctl {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Digits at s[pos, pos+n) as a number; -1 if they are not all digits.
int Digits(std::string_view s, size_t pos, size_t n) {
  if (pos + n > s.size()) return -1;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

bool IsLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

std::optional<int64_t> Rfc3339(std::string_view s, std::string* why) {
  auto fail = [&](const char* reason) -> std::optional<int64_t> {
    if (why != nullptr) *why = reason;
    return std::nullopt;
  };
  // YYYY-MM-DDTHH:MM:SS
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' ||
      (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':') {
    return fail("not a time");
  }
  const int year = Digits(s, 0, 4), month = Digits(s, 5, 2),
            day = Digits(s, 8, 2), hour = Digits(s, 11, 2),
            minute = Digits(s, 14, 2), second = Digits(s, 17, 2);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0 ||
      second < 0) {
    return fail("not a time");
  }
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month) ||
      hour > 23 || minute > 59 || second > 59) {
    return fail("no such date or time");
  }
  size_t pos = 19;
  int millis = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    const size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (pos - start < 3) millis = millis * 10 + (s[pos] - '0');
      ++pos;
    }
    if (pos == start) return fail("not a time");
    for (size_t n = pos - start; n < 3; ++n) millis *= 10;
  }
  int64_t offset_min = 0;
  const std::string_view zone = s.substr(pos);
  if (zone == "Z" || zone == "z") {
    // UTC
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') &&
             zone[3] == ':') {
    const int oh = Digits(zone, 1, 2), om = Digits(zone, 4, 2);
    if (oh < 0 || om < 0 || oh > 23 || om > 59) return fail("bad UTC offset");
    offset_min = (zone[0] == '+' ? 1 : -1) * (oh * 60 + om);
  } else if (zone.empty()) {
    return fail("the time zone is missing (end with Z for UTC)");
  } else {
    return fail("bad time zone (Z, or an offset such as +01:00)");
  }
  const int64_t secs = DaysFromCivil(year, month, day) * 86400 + hour * 3600 +
                       minute * 60 + second - offset_min * 60;
  const int64_t ms = secs * 1000 + millis;
  if (ms < 0) return fail("before 1970");
  return ms;
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                       static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) {
      v |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    }
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string Plural(uint64_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

// Lines of `text` after the first are prefixed with `indent`.
std::string IndentRest(std::string_view text, std::string_view indent) {
  std::string out;
  for (char c : text) {
    out.push_back(c);
    if (c == '\n') out += indent;
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) {
    out.pop_back();
  }
  return out;
}

std::string Field(std::string_view label, std::string_view value) {
  std::string out(label);
  out.resize(std::max<size_t>(label.size() + 2, 14), ' ');
  return out + std::string(value) + "\n";
}

std::string MessageHeader(const v1::Message& m) {
  std::string out = "#" + std::to_string(m.seq()) + " from " +
                    Sanitize(m.sender_account_id().empty()
                                 ? std::string("(unknown)")
                                 : m.sender_account_id());
  if (m.sender_device_id() != 0) {
    out += " (device " + std::to_string(m.sender_device_id()) + ")";
  }
  return out + " at " + FormatTime(m.server_time_ms());
}

}  // namespace

// ------------------------------------------------------------ names

std::string ReportStatusName(v1::ReportStatus status) {
  switch (status) {
    case v1::REPORT_STATUS_OPEN:
      return "open";
    case v1::REPORT_STATUS_RESOLVED:
      return "resolved";
    default:
      return "unspecified";
  }
}

std::optional<v1::ReportStatus> ParseReportStatusFilter(std::string_view text) {
  const std::string s = Lower(text);
  if (s == "open") return v1::REPORT_STATUS_OPEN;
  if (s == "resolved") return v1::REPORT_STATUS_RESOLVED;
  if (s == "all") return v1::REPORT_STATUS_UNSPECIFIED;
  return std::nullopt;
}

std::string ReportActionName(v1::ReportAction action) {
  switch (action) {
    case v1::REPORT_ACTION_DISMISS:
      return "dismiss";
    case v1::REPORT_ACTION_WARN:
      return "warn";
    case v1::REPORT_ACTION_SUSPEND:
      return "suspend";
    case v1::REPORT_ACTION_REMOVE_MESSAGE:
      return "remove-message";
    default:
      return "unspecified";
  }
}

std::optional<v1::ReportAction> ParseReportAction(std::string_view text) {
  const std::string s = Lower(text);
  if (s == "dismiss") return v1::REPORT_ACTION_DISMISS;
  if (s == "warn") return v1::REPORT_ACTION_WARN;
  if (s == "suspend") return v1::REPORT_ACTION_SUSPEND;
  if (s == "remove-message" || s == "remove_message") {
    return v1::REPORT_ACTION_REMOVE_MESSAGE;
  }
  return std::nullopt;
}

std::string ReportSourceName(v1::ReportSource source) {
  switch (source) {
    case v1::REPORT_SOURCE_PARTICIPANT:
      return "participant";
    case v1::REPORT_SOURCE_SCANNER:
      return "scanner";
    default:
      return "unspecified";
  }
}

std::string ReportReasonName(v1::ReportReason reason) {
  switch (reason) {
    case v1::REPORT_REASON_SPAM:
      return "spam";
    case v1::REPORT_REASON_HARASSMENT:
      return "harassment";
    case v1::REPORT_REASON_HATE:
      return "hate";
    case v1::REPORT_REASON_VIOLENCE:
      return "violence";
    case v1::REPORT_REASON_SEXUAL_CONTENT:
      return "sexual_content";
    case v1::REPORT_REASON_CHILD_SAFETY:
      return "child_safety";
    case v1::REPORT_REASON_SELF_HARM:
      return "self_harm";
    case v1::REPORT_REASON_FRAUD:
      return "fraud";
    case v1::REPORT_REASON_OTHER:
      return "other";
    default:
      return "unspecified";
  }
}

// ------------------------------------------------------------ input

std::optional<int64_t> ParseTimeArg(std::string_view text, std::string* error) {
  std::string why;
  std::optional<int64_t> ms;
  if (AllDigits(text)) {
    if (text.size() > 15) {  // 10^15 ms is the year 33658
      why = "too far in the future";
    } else {
      int64_t v = 0;
      for (char c : text) v = v * 10 + (c - '0');
      if (v != 0 && v < 100000000000) {
        why = "looks like Unix seconds; give milliseconds";
      } else {
        ms = v;
      }
    }
  } else {
    ms = Rfc3339(text, &why);
  }
  if (!ms && error != nullptr) *error = why;
  return ms;
}

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates, beyond U+10FFFF.
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
      return false;
    }
    i += len;
  }
  return true;
}

std::string CheckText(std::string_view text, size_t max_bytes) {
  if (text.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos) {
    return "must not be empty";
  }
  if (text.size() > max_bytes) {
    return "is too long (" + std::to_string(text.size()) + " bytes, at most " +
           std::to_string(max_bytes) + ")";
  }
  for (char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) {
      return "must not contain control characters (newlines, tabs, ...)";
    }
  }
  if (!IsValidUtf8(text)) return "is not valid UTF-8";
  return "";
}

// ------------------------------------------------------------ audit

std::string FormatVerify(const v1::VerifyAuditResponse& r) {
  if (r.ok()) {
    return "audit log OK: " + Plural(r.records(), "record", "records") +
           ", chain intact";
  }
  return "audit log BROKEN at record " + std::to_string(r.first_bad_seq()) +
         ": " +
         Sanitize(r.problem().empty() ? std::string("(no detail given)")
                                      : r.problem()) +
         " (" + Plural(r.records(), "record", "records") + " checked)";
}

int VerifyExitCode(const v1::VerifyAuditResponse& r) {
  return r.ok() ? kExitOk : kExitFailed;
}

nlohmann::json VerifyJson(const v1::VerifyAuditResponse& r) {
  return {{"ok", r.ok()},
          {"records", r.records()},
          {"first_bad_seq", r.first_bad_seq()},
          {"problem", r.problem()}};
}

// ---------------------------------------------------------- reports

std::string VerifiedCell(const v1::ReportSummary& r) {
  if (r.franking_verified()) return "yes";
  return r.mode() == v1::SECURITY_MODE_E2EE ? "no" : "-";
}

std::string FormatReportTable(const std::vector<v1::ReportSummary>& reports) {
  Table t({"ID", "STATUS", "SOURCE", "REASON", "CONVERSATION", "SEQ", "MODE",
           "VERIFIED", "CREATED", "ACTION"});
  t.AlignRight(5);
  for (const v1::ReportSummary& r : reports) {
    t.AddRow({r.report_id(), ReportStatusName(r.status()),
              ReportSourceName(r.source()), ReportReasonName(r.reason()),
              r.conversation_id(), std::to_string(r.seq()), ModeName(r.mode()),
              VerifiedCell(r), FormatTime(r.created_at_ms()),
              r.status() == v1::REPORT_STATUS_RESOLVED
                  ? ReportActionName(r.action())
                  : "-"});
  }
  return t.Render();
}

std::string FormatReportSummary(const v1::ReportSummary& r) {
  std::string out =
      Field("report", Sanitize(r.report_id()) + " (" +
                          ReportStatusName(r.status()) + ")");
  std::string source = ReportSourceName(r.source());
  if (r.source() == v1::REPORT_SOURCE_SCANNER) {
    if (!r.scanner_match().empty()) {
      source += ", matched \"" + Sanitize(r.scanner_match()) + "\"";
    }
  } else if (!r.reporter_account_id().empty()) {
    source += ", reporter " + Sanitize(r.reporter_account_id());
  }
  out += Field("source", source);
  out += Field("reason", ReportReasonName(r.reason()));
  out += Field("conversation", Sanitize(r.conversation_id()) + ", message #" +
                                   std::to_string(r.seq()) + " (" +
                                   ModeName(r.mode()) + " when reported)");
  out += Field("sender", Sanitize(r.sender_account_id().empty()
                                      ? std::string("-")
                                      : r.sender_account_id()));
  out += Field("reported", FormatTime(r.created_at_ms()));
  out += Field("verified", r.franking_verified()
                               ? "yes (message franking)"
                               : (r.mode() == v1::SECURITY_MODE_E2EE
                                      ? "NO"
                                      : "- (not end-to-end encrypted)"));
  if (r.status() == v1::REPORT_STATUS_RESOLVED) {
    out += Field("resolution", ReportActionName(r.action()) + " by " +
                                   Sanitize(r.resolved_by()) + " at " +
                                   FormatTime(r.resolved_at_ms()));
    out += Field("note", Sanitize(r.resolution_note()));
  }
  return out;
}

std::string ContentProvenance(const v1::ReportSummary& r) {
  if (r.franking_verified()) {
    return "VERIFIED by message franking: this is what the reporter revealed "
           "(it matches the sender's commitment and parleyd's stamp)";
  }
  if (r.mode() == v1::SECURITY_MODE_E2EE) {
    return "NOT VERIFIED: end-to-end encrypted and not confirmed by message "
           "franking; treat the content as the reporter's claim";
  }
  return "parleyd's own copy (the conversation was not end-to-end encrypted)";
}

std::string MessageContentText(const v1::Message& m) {
  switch (m.payload_case()) {
    case v1::Message::kPlain: {
      const std::string type = m.plain().content_type().empty()
                                   ? std::string("text/plain")
                                   : m.plain().content_type();
      const std::string& content = m.plain().content();
      if (Lower(type).rfind("text/", 0) == 0 && IsValidUtf8(content)) {
        return Sanitize(content, /*multiline=*/true);
      }
      return "(" + Plural(content.size(), "byte", "bytes") + " of " +
             Sanitize(type) + ", not shown)";
    }
    case v1::Message::kCiphertext:
      return "(ciphertext, " +
             Plural(m.ciphertext().ciphertext().size(), "byte", "bytes") +
             "; not readable by parleyd)";
    case v1::Message::kSecurityChange:
      return "(security change to " +
             ModeName(m.security_change().new_state().mode()) + ")";
    case v1::Message::kMembershipChange:
      return "(membership change)";
    case v1::Message::kAccessNotice:
      return "(access notice: " + Sanitize(m.access_notice().text()) + ")";
    case v1::Message::kModerationNotice:
      return "(moderation notice: " + Sanitize(m.moderation_notice().text()) +
             ")";
    default:
      return "(no content)";
  }
}

std::string FormatReport(const v1::GetReportResponse& resp) {
  const v1::ReportSummary& r = resp.report();
  std::string out = FormatReportSummary(r);
  out += Field("comment", resp.comment().empty()
                              ? std::string("-")
                              : IndentRest(Sanitize(resp.comment(), true),
                                           std::string(14, ' ')));
  out += "\nmessage ";
  if (resp.has_message()) {
    out += MessageHeader(resp.message()) + ":\n    " +
           IndentRest(MessageContentText(resp.message()), "    ") + "\n";
  } else {
    out += "#" + std::to_string(r.seq()) + ": not shown\n";
  }
  out += ContentProvenance(r) + "\n";
  if (resp.context_size() > 0) {
    out += "\ncontext (" + Plural(resp.context_size(), "message", "messages") +
           "):\n";
    for (const v1::Message& m : resp.context()) {
      out += (m.seq() == r.seq() ? "> " : "  ") + MessageHeader(m) + ":\n    " +
             IndentRest(MessageContentText(m), "    ") + "\n";
    }
  }
  if (!resp.context_note().empty()) {
    out += "\ncontext note: " + Sanitize(resp.context_note()) + "\n";
  }
  return out;
}

nlohmann::json ReportJson(const v1::ReportSummary& r) {
  return {{"report_id", r.report_id()},
          {"status", ReportStatusName(r.status())},
          {"source", ReportSourceName(r.source())},
          {"reason", ReportReasonName(r.reason())},
          {"conversation_id", r.conversation_id()},
          {"seq", r.seq()},
          {"mode", ModeName(r.mode())},
          {"reporter_account_id", r.reporter_account_id()},
          {"sender_account_id", r.sender_account_id()},
          {"created_at_ms", r.created_at_ms()},
          {"created_at", FormatTime(r.created_at_ms())},
          {"franking_verified", r.franking_verified()},
          {"action", r.status() == v1::REPORT_STATUS_RESOLVED
                         ? nlohmann::json(ReportActionName(r.action()))
                         : nlohmann::json(nullptr)},
          {"resolved_by", r.resolved_by()},
          {"resolved_at_ms", r.resolved_at_ms()},
          {"resolution_note", r.resolution_note()},
          {"scanner_match", r.scanner_match()}};
}

nlohmann::json MessageJson(const v1::Message& m) {
  nlohmann::json j = {{"conversation_id", m.conversation_id()},
                      {"seq", m.seq()},
                      {"sender_account_id", m.sender_account_id()},
                      {"sender_device_id", m.sender_device_id()},
                      {"server_time_ms", m.server_time_ms()},
                      {"server_time", FormatTime(m.server_time_ms())}};
  switch (m.payload_case()) {
    case v1::Message::kPlain: {
      const std::string& content = m.plain().content();
      j["type"] = "message";
      j["content_type"] = m.plain().content_type().empty()
                              ? std::string("text/plain")
                              : m.plain().content_type();
      j["content_bytes"] = content.size();
      if (IsValidUtf8(content)) {
        j["content"] = content;
      } else {
        j["content_base64"] = Base64(content);
      }
      break;
    }
    case v1::Message::kCiphertext:
      j["type"] = "ciphertext";
      j["content_bytes"] = m.ciphertext().ciphertext().size();
      break;
    case v1::Message::kSecurityChange:
      j["type"] = "security_change";
      j["new_mode"] = ModeName(m.security_change().new_state().mode());
      break;
    case v1::Message::kMembershipChange:
      j["type"] = "membership_change";
      break;
    case v1::Message::kAccessNotice:
      j["type"] = "access_notice";
      j["text"] = m.access_notice().text();
      break;
    case v1::Message::kModerationNotice:
      j["type"] = "moderation_notice";
      j["text"] = m.moderation_notice().text();
      break;
    default:
      j["type"] = "none";
  }
  return j;
}

nlohmann::json ReportDetailJson(const v1::GetReportResponse& resp) {
  nlohmann::json context = nlohmann::json::array();
  for (const v1::Message& m : resp.context()) context.push_back(MessageJson(m));
  return {{"report", ReportJson(resp.report())},
          {"comment", resp.comment()},
          {"message", resp.has_message() ? MessageJson(resp.message())
                                         : nlohmann::json(nullptr)},
          {"content_provenance", ContentProvenance(resp.report())},
          {"context", context},
          {"context_note", resp.context_note()}};
}

// -------------------------------------------------------- retention

std::string FormatInterval(int64_t ms) {
  if (ms <= 0) return "-";
  if (ms % 3600000 == 0) return std::to_string(ms / 3600000) + " h";
  if (ms % 60000 == 0) return std::to_string(ms / 60000) + " min";
  if (ms % 1000 == 0 && ms < 120000) return std::to_string(ms / 1000) + " s";
  return FormatDuration(static_cast<uint64_t>(ms));
}

std::string FormatRetentionRun(const v1::RetentionRun& run,
                               std::string_view indent) {
  const std::string in(indent);
  std::string out;
  out += in + Field("started", FormatTime(run.started_at_ms()));
  out += in + Field("elapsed", FormatDuration(run.elapsed_ms()));
  out += in + Field("checked", Plural(run.conversations_checked(),
                                      "conversation", "conversations"));
  out +=
      in +
      Field("purged",
            Plural(run.history_purged(), "history entry", "history entries") +
                ", " +
                Plural(run.queue_purged(), "queue entry", "queue entries") +
                ", " +
                Plural(run.idempotency_purged(), "idempotency record",
                       "idempotency records"));
  out += in + Field("compacted", run.compacted() ? "yes" : "no");
  out += in + Field("result", run.error().empty()
                                  ? std::string("ok")
                                  : "FAILED: " + Sanitize(run.error()));
  return out;
}

std::string FormatRetentionStatus(const v1::GetRetentionStatusResponse& s) {
  std::string out;
  if (s.has_last_run()) {
    out += "last run:\n" + FormatRetentionRun(s.last_run(), "  ");
  } else {
    out += "last run: never\n";
  }
  out += "totals:\n";
  out +=
      "  " +
      Field(
          "purged",
          Plural(s.total_history_purged(), "history entry", "history entries") +
              ", " +
              Plural(s.total_queue_purged(), "queue entry", "queue entries") +
              ", " +
              Plural(s.total_idempotency_purged(), "idempotency record",
                     "idempotency records"));
  out += "settings:\n";
  out += "  " + Field("queue", s.queue_retention_days() == 0
                                   ? std::string("undelivered entries kept "
                                                 "(no queue retention)")
                                   : "undelivered entries purged after " +
                                         Plural(s.queue_retention_days(),
                                                "day", "days"));
  out += "  " +
         Field("message ids",
               s.idempotency_window_days() == 0
                   ? std::string("kept while the sending device exists "
                                 "(no idempotency window)")
                   : "forgotten after " +
                         Plural(s.idempotency_window_days(), "day", "days") +
                         " (a retry within the window is recognised)");
  out += "  " + Field("interval", s.interval_ms() > 0
                                      ? "every " + FormatInterval(s.interval_ms())
                                      : std::string("-"));
  out += "  " + Field("next run", s.next_run_at_ms() != 0
                                      ? FormatTime(s.next_run_at_ms())
                                      : std::string("at the next check"));
  return out;
}

int RetentionRunExitCode(const v1::RetentionRun& run) {
  return run.error().empty() ? kExitOk : kExitFailed;
}

nlohmann::json RetentionRunJson(const v1::RetentionRun& run) {
  return {{"started_at_ms", run.started_at_ms()},
          {"started_at", FormatTime(run.started_at_ms())},
          {"elapsed_ms", run.elapsed_ms()},
          {"conversations_checked", run.conversations_checked()},
          {"history_purged", run.history_purged()},
          {"queue_purged", run.queue_purged()},
          {"idempotency_purged", run.idempotency_purged()},
          {"compacted", run.compacted()},
          {"error", run.error()}};
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f %s", v, kUnits[unit]);
  return buf;
}

namespace {

// "100 Sends: p50 1.00 ms, p99 10.00 ms, p99.9 above 10.00 ms" from the
// Send latency histogram; "not reported" when the server sent none (an
// older parleyd), and why when it is malformed.
std::string FormatSendLatency(const v1::LatencyHistogram& h) {
  if (h.counts_size() == 0 && h.upper_bounds_us_size() == 0) {
    return "not reported";
  }
  absl::StatusOr<latency::LatencySummary> s = latency::Summarize(h, nullptr);
  if (!s.ok()) return "unreadable: " + std::string(s.status().message());
  std::string out = Plural(s->count, "Send", "Sends");
  if (s->count == 0) return out;
  const double last =
      static_cast<double>(h.upper_bounds_us(h.upper_bounds_us_size() - 1)) /
      1000.0;
  auto ms = [last](double v) {
    char buf[48];
    if (v < 0) {
      std::snprintf(buf, sizeof(buf), "above %.2f ms", last);
    } else {
      std::snprintf(buf, sizeof(buf), "%.2f ms", v);
    }
    return std::string(buf);
  };
  return out + ": p50 " + ms(s->p50_ms) + ", p99 " + ms(s->p99_ms) +
         ", p99.9 " + ms(s->p999_ms);
}

nlohmann::json SendLatencyJson(const v1::LatencyHistogram& h) {
  if (h.counts_size() == 0 && h.upper_bounds_us_size() == 0) return nullptr;
  absl::StatusOr<latency::LatencySummary> s = latency::Summarize(h, nullptr);
  if (!s.ok()) return {{"error", std::string(s.status().message())}};
  auto orNull = [](double v) {
    return v < 0 ? nlohmann::json(nullptr) : nlohmann::json(v);
  };
  return {{"count", s->count},
          {"p50_ms", orNull(s->p50_ms)},
          {"p99_ms", orNull(s->p99_ms)},
          {"p999_ms", orNull(s->p999_ms)}};
}

}  // namespace

std::string FormatServerStats(const v1::GetServerStatsResponse& s) {
  std::string out;
  const int64_t up = s.server_time_ms() - s.started_at_ms();
  out += Field(
      "server time",
      FormatTime(s.server_time_ms()) +
          (s.started_at_ms() > 0 && up >= 0
               ? " (up " + FormatInterval(std::max<int64_t>(up, 1000)) + ")"
               : std::string()));
  out += "messages (since the start):\n";
  out += "  " + Field("stored", std::to_string(s.sends_stored()));
  out += "  " +
         Field("duplicates", Plural(s.sends_duplicate(), "retry", "retries") +
                                 " answered from the idempotency record");
  out += "  " + Field("refused", std::to_string(s.sends_refused()));
  out +=
      "  " + Field("acked", Plural(s.acked(), "queue entry", "queue entries"));
  out += "  " + Field("streams", Plural(s.receive_streams(), "Receive stream",
                                        "Receive streams") +
                                     " open");
  out += "  " + Field("send latency", FormatSendLatency(s.send_latency()));
  out += "storage:\n";
  std::string commits =
      Plural(s.group_commits(), "group commit", "group commits");
  if (s.group_commits() > 0) {
    char mean[32];
    std::snprintf(mean, sizeof(mean), "%.1f",
                  static_cast<double>(s.group_commit_waiters()) /
                      static_cast<double>(s.group_commits()));
    commits += " answering " + Plural(s.group_commit_waiters(), "waiter", "waiters") +
               " (" + mean + " per commit)";
  }
  out += "  " + Field("durability", commits);
  out += "  " + Field("memtables", FormatBytes(s.memtable_bytes()));
  out += "  " + Field("table files", FormatBytes(s.table_file_bytes()));
  out += "  " + Field("compaction",
                      FormatBytes(s.pending_compaction_bytes()) + " pending");
  out +=
      "  " + Field("writes",
                   s.writes_stopped()
                       ? std::string(
                             "STOPPED (a background error such as a full disk; "
                             "Sends fail until the store recovers)")
                       : std::string("accepted"));
  return out;
}

int ServerStatsExitCode(const v1::GetServerStatsResponse& s) {
  return s.writes_stopped() ? kExitFailed : kExitOk;
}

nlohmann::json ServerStatsJson(const v1::GetServerStatsResponse& s) {
  return {{"server_time_ms", s.server_time_ms()},
          {"server_time", FormatTime(s.server_time_ms())},
          {"started_at_ms", s.started_at_ms()},
          {"started_at", FormatTime(s.started_at_ms())},
          {"sends_stored", s.sends_stored()},
          {"sends_duplicate", s.sends_duplicate()},
          {"sends_refused", s.sends_refused()},
          {"acked", s.acked()},
          {"receive_streams", s.receive_streams()},
          {"group_commits", s.group_commits()},
          {"group_commit_waiters", s.group_commit_waiters()},
          {"memtable_bytes", s.memtable_bytes()},
          {"table_file_bytes", s.table_file_bytes()},
          {"pending_compaction_bytes", s.pending_compaction_bytes()},
          {"writes_stopped", s.writes_stopped()},
          {"send_latency", SendLatencyJson(s.send_latency())}};
}

nlohmann::json RetentionStatusJson(const v1::GetRetentionStatusResponse& s) {
  return {{"last_run", s.has_last_run() ? RetentionRunJson(s.last_run())
                                        : nlohmann::json(nullptr)},
          {"total_history_purged", s.total_history_purged()},
          {"total_queue_purged", s.total_queue_purged()},
          {"queue_retention_days", s.queue_retention_days()},
          {"total_idempotency_purged", s.total_idempotency_purged()},
          {"idempotency_window_days", s.idempotency_window_days()},
          {"interval_ms", s.interval_ms()},
          {"next_run_at_ms", s.next_run_at_ms()},
          {"next_run_at", FormatTime(s.next_run_at_ms())}};
}

}  // namespace parley::ctl
