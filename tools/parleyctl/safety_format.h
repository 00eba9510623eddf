// SPDX-License-Identifier: GPL-3.0-or-later
//
// Pure helpers of parleyctl's safety commands (audit verify, reports,
// accounts, lawful-access export, retention): names of the safety enums
// (display and input), time arguments, local checks of free text, and the
// human and JSON renderings of the responses. No I/O.
#ifndef PARLEY_TOOLS_PARLEYCTL_SAFETY_FORMAT_H_
#define PARLEY_TOOLS_PARLEYCTL_SAFETY_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"
#include "parley/v1/admin.pb.h"

namespace parley::ctl {

// ------------------------------------------------------------ names

// "open", "resolved" ("unspecified" for 0 or unknown values).
std::string ReportStatusName(v1::ReportStatus status);
// A `reports list --status` filter: open, resolved or all (any case; all is
// REPORT_STATUS_UNSPECIFIED, "every status"); nullopt otherwise.
std::optional<v1::ReportStatus> ParseReportStatusFilter(std::string_view text);
// "dismiss", "warn", "suspend", "remove-message" ("unspecified" for 0).
std::string ReportActionName(v1::ReportAction action);
// Accepts the names above (and remove_message), any case; nullopt otherwise.
std::optional<v1::ReportAction> ParseReportAction(std::string_view text);
// "participant", "scanner".
std::string ReportSourceName(v1::ReportSource source);
// "spam", "harassment", "hate", "violence", "sexual_content", "child_safety",
// "self_harm", "fraud", "other" (the names parleyd's ReportMessage uses).
std::string ReportReasonName(v1::ReportReason reason);

// ------------------------------------------------------------ input

// What a time argument may look like (for error messages).
inline constexpr std::string_view kTimeArgHint =
    "expected RFC 3339 UTC such as 2026-11-27T10:00:00Z, or Unix milliseconds "
    "such as 1795773600000";

// A time argument as Unix milliseconds: RFC 3339 ("2026-11-27T10:00:00Z",
// optional fractional seconds, "Z" or a "+HH:MM"/"-HH:MM" offset) or a
// decimal number of Unix milliseconds. Rejects dates before 1970, numbers
// below 10^11 (they look like Unix seconds: 10^11 ms is 1973-03-03) except 0,
// and anything else; the error text says why (without naming the flag).
std::optional<int64_t> ParseTimeArg(std::string_view text,
                                    std::string* error = nullptr);

bool IsValidUtf8(std::string_view text);
// Checks free text for the server's rules (a note, a case reference): not
// blank, at most `max_bytes` bytes, no control characters, valid UTF-8.
// Returns what is wrong ("" when it is fine), e.g. "must not be empty".
std::string CheckText(std::string_view text, size_t max_bytes);

// ------------------------------------------------------------ audit

// "audit log OK: N records, chain intact" or
// "audit log BROKEN at record S: <problem>".
std::string FormatVerify(const v1::VerifyAuditResponse& response);
// kExitOk when the chain is intact, kExitFailed (1) when it is broken.
int VerifyExitCode(const v1::VerifyAuditResponse& response);
nlohmann::json VerifyJson(const v1::VerifyAuditResponse& response);

// ---------------------------------------------------------- reports

// The VERIFIED column: "yes" (franking verified), "no" (an E2EE report that
// is not verified), "-" (transport: the content is parleyd's own copy).
std::string VerifiedCell(const v1::ReportSummary& report);
// The `reports list` table: ID, STATUS, SOURCE, REASON, CONVERSATION, SEQ,
// MODE, VERIFIED, CREATED (UTC), ACTION ("-" while open).
std::string FormatReportTable(const std::vector<v1::ReportSummary>& reports);
// The summary block of one report (`reports show` and `reports resolve`):
// "label  value" lines, resolution included when resolved.
std::string FormatReportSummary(const v1::ReportSummary& report);
// What the content of the reported message is, as one line: "VERIFIED by
// message franking: this is what the reporter revealed ..." and so on.
std::string ContentProvenance(const v1::ReportSummary& report);
// A message's content for display: the text when the content type is text/*
// (empty means text/plain) and the bytes are valid UTF-8 (sanitised, newlines
// kept), otherwise "(<n> bytes of <type>, not shown)"; non-content payloads
// (security change, notices, ciphertext) are described in parentheses.
std::string MessageContentText(const v1::Message& message);
// The whole `reports show` output.
std::string FormatReport(const v1::GetReportResponse& response);

nlohmann::json ReportJson(const v1::ReportSummary& report);
// content_type plus `content` (UTF-8 text) or `content_base64`.
nlohmann::json MessageJson(const v1::Message& message);
nlohmann::json ReportDetailJson(const v1::GetReportResponse& response);

// -------------------------------------------------------- retention

// "24 h", "30 min", "90 s", or FormatDuration for odd values; "-" for <= 0.
std::string FormatInterval(int64_t ms);
// One run: when, elapsed, conversations checked, purged counts, compacted,
// error. Every line starts with `indent`.
std::string FormatRetentionRun(const v1::RetentionRun& run,
                               std::string_view indent = "");
// The `retention status` output (last run or "never", totals, queue
// retention days, interval, next run).
std::string FormatRetentionStatus(const v1::GetRetentionStatusResponse& s);
// kExitFailed when the run reports an error, else kExitOk.
int RetentionRunExitCode(const v1::RetentionRun& run);
nlohmann::json RetentionRunJson(const v1::RetentionRun& run);
nlohmann::json RetentionStatusJson(const v1::GetRetentionStatusResponse& s);

// ------------------------------------------------------- server stats

// "512 B", "1.5 KiB", "12.3 MiB", "2.0 GiB".
std::string FormatBytes(uint64_t bytes);
// The `stats` output: server time and uptime, message counters, open
// Receive streams, the group commit's batch, storage sizes, and whether
// writes are stopped.
// The Send latency line gives the histogram's count and its p50, p99 and
// p99.9 bucket bounds (latency_histogram.h), "not reported" without one.
std::string FormatServerStats(const v1::GetServerStatsResponse& s);
// kExitFailed while the server's writes are stopped, else kExitOk.
int ServerStatsExitCode(const v1::GetServerStatsResponse& s);
nlohmann::json ServerStatsJson(const v1::GetServerStatsResponse& s);

}  // namespace parley::ctl

#endif  // PARLEY_TOOLS_PARLEYCTL_SAFETY_FORMAT_H_
