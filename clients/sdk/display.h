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

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
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
//   --- [c_ab12 #3] alice added bob, carol
// except security changes, which are a multi-line block (FormatSecurityChange),
// and the in-band notices, blocks in the same style:
//   *** STAFF ACCESS: <notice text>
//       why: a moderator reviewed a reported message
//       conversation: c_ab12 (1 message read)
//       accessed: 2024-05-01T10:00:00Z (notice #12)
//   *** MODERATION WARNING: <text>        (ModerationNotice KIND_WARNING)
//   *** MESSAGE REMOVED by moderators: <text>   (KIND_MESSAGE_REMOVED)
//       conversation: c_ab12, message #5
//       notice: #13
// `decrypted` (from the E2EE extension) replaces a ciphertext's placeholder.
// Message text is passed through SanitizeForTerminal.
std::string FormatMessageLine(
    const v1::Message& message, NameFn names,
    const std::optional<std::string>& decrypted = std::nullopt);

// The warning shown with every change away from end-to-end encryption.
inline constexpr absl::string_view kDowngradeWarning =
    "WARNING: messages in this conversation will no longer be end-to-end "
    "encrypted; the server can read them";

// True for a change away from E2EE (old mode E2EE, new mode anything else).
bool IsSecurityDowngrade(const v1::SecurityChange& change);
// True for a change to E2EE from anything else.
bool IsSecurityUpgrade(const v1::SecurityChange& change);

// The prominent block for a message carrying a SecurityChange (no trailing
// newline), e.g.
//   *** SECURITY CHANGE in c_ab12 (epoch 3 → 4): transport → END-TO-END
//   ENCRYPTED   (one line)
//       reason: both participants turned on end-to-end encryption
//       decided by: rule r7, policy revision 2024-05-01 (participants' consent)
//       effective: 2024-05-01T10:00:00Z (message #9)
//       notice: <the policy's notice>
//       scheduled: will become transport on 2024-06-01T00:00:00Z (retention)
// A downgrade adds, right after the headline, the line "!!! " +
// kDowngradeWarning; a scheduled downgrade of an E2EE state adds a warning
// naming the date. Pending consent requests of the new state are listed by
// name. Server-provided text is passed through SanitizeForTerminal.
// For any other message: FormatMessageLine.
std::string FormatSecurityChange(const v1::Message& message, NameFn names);

// JSON object for a message of any payload kind. Always has "type"
// ("message", "security_change", "membership_change", "access_notice",
// "moderation_notice", "unknown"),
// "conversation_id" and "seq"; content messages have "e2ee" (bool),
// "protection" and "text" (string, or null when not readable here).
// Security changes have "old_mode", "new_mode", "old_epoch", "epoch",
// "e2ee", "upgrade", "downgrade", "warning" (string or null), "reason",
// "effective_at_ms", "rule_id", "policy_revision", "notice",
// "set_by_participants", "enable_requested_by", "disable_requested_by",
// "pending" (object or null, of the new state), "old_state" and "new_state"
// (SecurityJson). Access notices have "kind" ("moderation_review",
// "lawful_access"), "accessed_at_ms", "message_count", "text"; moderation
// notices "kind" ("warning", "message_removed"), "message_seq", "text".
nlohmann::json MessageJson(
    const v1::Message& message, NameFn names,
    const std::optional<std::string>& decrypted = std::nullopt);

// One line describing a security state: mode, protection, reason, rule and
// policy revision, e.g.
//   "opt-in (not end-to-end encrypted yet — server can read; E2EE can be
//    turned on) — reason: ... [rule r, policy revision v, epoch N];
//    E2EE requested by 1 of 2"
// followed by a PENDING scheduled change if any. `participants` (member
// count, 0 if unknown) completes the consent counts ("N of M").
std::string DescribeSecurity(const v1::SecurityState& state,
                             int participants = 0);
// The pending consent requests of `state`: "E2EE requested by 1 of 2",
// "E2EE off requested by 1 of 3" (joined by "; "; without "of M" when
// `participants` is 0); empty when nobody asked.
std::string DescribeConsentRequests(const v1::SecurityState& state,
                                    int participants = 0);
// Who decided `state`: "rule r7, policy revision v3", with
// " (participants' consent)" appended when set_by_participants (alone when
// no rule is named); empty when the state names nothing.
std::string SecurityDecidedBy(const v1::SecurityState& state);
// Fields: mode, e2ee, protection, epoch, reason, rule_id, policy_revision,
// effective_at_ms, e2ee_ever_enabled, locked, set_by_participants,
// enable_requested_by, disable_requested_by (arrays of account ids), notice,
// pending (object or null).
nlohmann::json SecurityJson(const v1::SecurityState& state);
// The "pending" value of SecurityJson: null when no change is scheduled.
nlohmann::json PendingSecurityJson(const v1::SecurityState& state);

// One line for a conversation in a list: id, kind, title or peer, members,
// and DescribeSecurity (mode, reason, rule, revision, consent requests out of
// the member count). `self_account_id` picks the peer of a direct
// conversation.
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
