// SPDX-License-Identifier: GPL-3.0-or-later
//
// Pure helpers of parleyctl: names of API enums (display and input), time
// formatting, terminal-safe text, tables, plan rendering, JSON views of API
// messages and the mapping from gRPC status codes to exit codes. No I/O.
#ifndef PARLEY_TOOLS_PARLEYCTL_FORMAT_H_
#define PARLEY_TOOLS_PARLEYCTL_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grpcpp/support/status.h"
#include "nlohmann/json.hpp"
#include "parley/v1/admin.pb.h"

namespace parley::ctl {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // server/RPC error, policy refused
inline constexpr int kExitUsage = 2;   // invalid input (flags, files, policy)

// 0 for OK, 2 for INVALID_ARGUMENT (the request was wrong), 1 otherwise.
int ExitCodeFor(grpc::StatusCode code);
// "INVALID_ARGUMENT", "UNAVAILABLE", ...
std::string StatusCodeName(grpc::StatusCode code);

// "e2ee", "opt-in", "transport" ("unspecified" for 0 or unknown values).
std::string ModeName(v1::SecurityMode mode);
// Accepts e2ee, opt-in, opt_in, transport (any case); nullopt otherwise.
std::optional<v1::SecurityMode> ParseMode(std::string_view text);
// "direct", "group", "broadcast", "business_support".
std::string KindName(v1::ConversationKind kind);
// "operator", "auditor", "moderator", "lawful_access".
std::string RoleName(v1::AdminRole role);
// Accepts the names above (and lawful-access); nullopt otherwise.
std::optional<v1::AdminRole> ParseRole(std::string_view text);

// A policy revision given on the command line: "3", "r3" or "r3-abcd1234".
struct RevisionRef {
  uint64_t number = 0;      // >= 1
  std::string hash_prefix;  // lower-case hex after "-", or empty
};
std::optional<RevisionRef> ParseRevisionRef(std::string_view text);

// "2026-01-02T03:04:05Z" (UTC); "-" for 0.
std::string FormatTime(int64_t unix_ms);
// "2026-01-02" (UTC); "-" for 0.
std::string FormatDate(int64_t unix_ms);
// "0.042 s", "12.3 s", "2 min 5 s".
std::string FormatDuration(uint64_t ms);

// Replaces control characters (C0, DEL, C1) by '?' so that server-provided
// text cannot drive the terminal. With `multiline`, '\n' and '\t' are kept.
std::string Sanitize(std::string_view text, bool multiline = false);
// Number of terminal columns of UTF-8 text (one per code point).
size_t DisplayWidth(std::string_view text);
// Up to `max` items joined with ", ", then ", ..." when there were more.
std::string JoinSamples(const std::vector<std::string>& items, size_t max = 5);

// A plain text table: columns separated by two spaces, padded to the widest
// cell, no trailing blanks. Cells are sanitised.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void AlignRight(size_t column);
  void AddRow(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }
  // Every line ends with '\n'; `indent` prefixes every line.
  std::string Render(std::string_view indent = "") const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

// A progress line: "[#####-----]  50%  500/1000 conversations" (or
// "1234 conversations scanned" without an estimate).
std::string ProgressLine(uint64_t scanned, uint64_t total_estimate,
                         int width = 30);

// The human rendering of a plan (also of an apply/rollback result): the
// transitions table, unchanged count, announced downgrades grouped by UTC
// date, E2EE kept, rule match counts and elapsed time.
std::string FormatPlan(const v1::PolicyPlan& plan);
// The transitions table alone ("no conversation changes mode" when empty).
std::string FormatTransitions(const v1::PolicyPlan& plan);

// One line per revision: NUMBER REVISION TIME AUTHOR COMMENT.
std::string FormatHistory(const v1::ListPolicyRevisionsResponse& response);
// "r3-abcd1234 (#3, current) by alice at 2026-...".
std::string RevisionHeader(const v1::PolicyRevision& revision);
// A short description of a stored security state.
std::string DescribeState(const v1::SecurityState& state);

// JSON views (stable key names, modes as display names).
nlohmann::json RevisionJson(const v1::PolicyRevision& revision);
nlohmann::json PlanJson(const v1::PolicyPlan& plan);
nlohmann::json StateJson(const v1::SecurityState& state);
nlohmann::json ConversationJson(const v1::ConversationSummary& summary);
nlohmann::json AuditJson(const v1::AuditRecord& record);
nlohmann::json TokenJson(const v1::AdminToken& token);
// A JSON string holding an object, parsed; otherwise the string itself.
nlohmann::json EmbeddedJson(const std::string& text);
// Compact one-line serialisation; invalid UTF-8 is replaced, never thrown.
std::string JsonText(const nlohmann::json& value);
// Lower-case hex of raw bytes.
std::string Hex(std::string_view bytes);

}  // namespace parley::ctl

#endif  // PARLEY_TOOLS_PARLEYCTL_FORMAT_H_
