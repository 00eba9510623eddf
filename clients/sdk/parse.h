// Parsing and validation helpers shared by the SDK, the `parley` CLI and tests.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Pure functions: no I/O except where noted, thread-safe, no exceptions.
// Errors are absl::InvalidArgumentError with a message naming the value.
#ifndef PARLEY_CLIENTS_SDK_PARSE_H_
#define PARLEY_CLIENTS_SDK_PARSE_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parley/v1/common.pb.h"

namespace parley {

// "personal" | "business" | "creator" | "bot" (case-insensitive).
absl::StatusOr<v1::AccountKind> ParseAccountKind(absl::string_view text);
// "minor" | "adult" | "unknown" (case-insensitive).
absl::StatusOr<v1::AgeBand> ParseAgeBand(absl::string_view text);
// ISO 3166-1 alpha-2 ("de", "US") -> upper case; empty stays empty.
absl::StatusOr<std::string> ParseRegionCode(absl::string_view text);

// The API's username rule: 3-32 chars of a-z 0-9 _ . - , starting with a
// letter. Upper-case input is rejected (not folded) so that what the user
// typed is what the server stores.
absl::Status ValidateUsername(absl::string_view username);

// Profile names become a directory name: 1-64 chars of A-Z a-z 0-9 _ . - ,
// not starting with '.'.
absl::Status ValidateProfileName(absl::string_view name);

// Short lower-case names used by the CLI and JSON output.
const char* AccountKindName(v1::AccountKind kind);  // "personal", ...
const char* AgeBandName(v1::AgeBand band);          // "adult", ...
const char* ConversationKindName(v1::ConversationKind kind);  // "direct"
const char* SecurityModeName(v1::SecurityMode mode);  // "e2ee", ...

// Report reasons: "spam", "harassment", "hate", "violence",
// "sexual_content", "child_safety", "self_harm", "fraud", "other"
// (case-insensitive; '-' accepted for '_').
absl::StatusOr<v1::ReportReason> ParseReportReason(absl::string_view text);
const char* ReportReasonName(v1::ReportReason reason);  // "spam", ...

// Splits a gRPC target "host:port" / "[v6]:port" / "dns:///host:port" into
// its host part (brackets removed). Returns the whole text when there is no
// port.
std::string TargetHost(absl::string_view target);

// True when `target` can only reach this machine: localhost, 127.0.0.0/8,
// ::1, ::ffff:127.x.y.z, or a unix: socket. Used to allow plaintext.
bool IsLoopbackTarget(absl::string_view target);

// Lower-case hex of `bytes`.
std::string HexEncode(absl::string_view bytes);

// Replaces terminal control characters (C0 except none, DEL, and the C1
// range when encoded as UTF-8) with U+FFFD-free visible escapes like "\x1b"
// so that a received message cannot drive the user's terminal. Valid UTF-8
// text is otherwise unchanged; invalid bytes are escaped as well.
std::string SanitizeForTerminal(absl::string_view text);

}  // namespace parley

#endif  // PARLEY_CLIENTS_SDK_PARSE_H_
