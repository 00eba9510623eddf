// What to show the user about messages, conversations and their protection.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Pure functions shared by the SDK (Event), the `parley` CLI and tests.
// Thread-safe; no I/O; no exceptions escape (JSON is built with nlohmann_json
// and serialised with invalid UTF-8 replaced, see JsonLine).
//
// Every content message is labelled with its protection, derived from the
// payload the device received (never from a conversation field alone):
//   plain      -> Protection::kTransport  "transport (server can read)"
//   ciphertext -> Protection::kEndToEnd   "end-to-end encrypted"
#ifndef PARLEY_CLIENTS_SDK_DISPLAY_H_
#define PARLEY_CLIENTS_SDK_DISPLAY_H_

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/functional/function_ref.h"
#include "nlohmann/json.hpp"
#include "parley/v1/common.pb.h"

namespace parley {

enum class Protection {
  kNone,       // not a content message (security / membership events)
  kTransport,  // plain payload: TLS only, the server can read it
  kEndToEnd,   // ciphertext payload: only the participants' devices can
};

Protection ProtectionOf(const v1::Message& message);
// "transport (server can read)" / "end-to-end encrypted" / "none".
const char* ProtectionLabel(Protection protection);
// Suffix for one printed line: "(not end-to-end encrypted — server can read)"
// or "(end-to-end encrypted)"; empty for kNone.
const char* ProtectionNotice(Protection protection);
// JSON value of "protection": "transport" / "e2ee" / "none".
const char* ProtectionJsonName(Protection protection);

// The text of a plain text message (content_type empty or text/plain...);
// nullopt for other payloads or non-text content types.
std::optional<std::string> PlainText(const v1::Message& message);

// Maps an account id to what to show (usually the username); should fall
// back to the id itself.
using NameFn = absl::FunctionRef<std::string(absl::string_view account_id)>;

// One line for a message of any payload kind, e.g.
//   [c_ab12 #5] alice: hello   (not end-to-end encrypted — server can read)
//   *** SECURITY CHANGE in c_ab12: e2ee -> transport (reason: ...) ***
//   --- [c_ab12 #3] alice added bob, carol
// `decrypted` (from the E2EE extension) replaces a ciphertext's placeholder.
// Message text is passed through SanitizeForTerminal.
std::string FormatMessageLine(
    const v1::Message& message, NameFn names,
    const std::optional<std::string>& decrypted = std::nullopt);

// JSON object for a message of any payload kind. Always has "type"
// ("message", "security_change", "membership_change", "unknown"),
// "conversation_id" and "seq"; content messages have "e2ee" (bool),
// "protection" and "text" (string, or null when not readable here).
nlohmann::json MessageJson(
    const v1::Message& message, NameFn names,
    const std::optional<std::string>& decrypted = std::nullopt);

// "transport (server can read) — reason: ... [rule r, policy rev, epoch N]".
std::string DescribeSecurity(const v1::SecurityState& state);
nlohmann::json SecurityJson(const v1::SecurityState& state);

// One line for a conversation in a list: id, kind, title or peer, members,
// mode and reason. `self_account_id` picks the peer of a direct conversation.
std::string FormatConversationLine(const v1::Conversation& conversation,
                                   absl::string_view self_account_id);
nlohmann::json ConversationJson(const v1::Conversation& conversation);

nlohmann::json AccountJson(const v1::Account& account);
nlohmann::json DeviceJson(const v1::Device& device);

// RFC 3339 UTC time of Unix milliseconds; "-" for 0.
std::string FormatTimeMs(int64_t unix_ms);

// Compact one-line serialisation; invalid UTF-8 is replaced, never thrown.
std::string JsonLine(const nlohmann::json& value);

}  // namespace parley

#endif  // PARLEY_CLIENTS_SDK_DISPLAY_H_
