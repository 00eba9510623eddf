// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/sdk/display.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "clients/sdk/parse.h"

namespace parley {
namespace {

constexpr absl::string_view kUndecryptable =
    "<end-to-end encrypted message: this client cannot decrypt it yet>";

const char* MembershipVerb(v1::MembershipChange::Action action) {
  switch (action) {
    case v1::MembershipChange::ACTION_CREATED:
      return "created the conversation with";
    case v1::MembershipChange::ACTION_ADDED:
      return "added";
    case v1::MembershipChange::ACTION_REMOVED:
      return "removed";
    case v1::MembershipChange::ACTION_LEFT:
      return "left";
    default:
      return "changed membership of";
  }
}

const char* MembershipActionName(v1::MembershipChange::Action action) {
  switch (action) {
    case v1::MembershipChange::ACTION_CREATED:
      return "created";
    case v1::MembershipChange::ACTION_ADDED:
      return "added";
    case v1::MembershipChange::ACTION_REMOVED:
      return "removed";
    case v1::MembershipChange::ACTION_LEFT:
      return "left";
    default:
      return "unspecified";
  }
}

std::string Prefix(const v1::Message& m) {
  return absl::StrCat("[", SanitizeForTerminal(m.conversation_id()), " #",
                      m.seq(), "]");
}

std::string SafeName(NameFn names, absl::string_view account_id) {
  if (account_id.empty()) return "(server)";
  return SanitizeForTerminal(names(account_id));
}

constexpr absl::string_view kArrow = "\xe2\x86\x92";  // →
constexpr absl::string_view kIndent = "    ";

bool HasPending(const v1::SecurityState& s) {
  return s.has_pending() &&
         s.pending().new_mode() != v1::SECURITY_MODE_UNSPECIFIED;
}

// The new mode in a security-change headline: loud, and saying who can read.
const char* ModeHeadline(v1::SecurityMode mode) {
  switch (mode) {
    case v1::SECURITY_MODE_E2EE:
      return "END-TO-END ENCRYPTED";
    case v1::SECURITY_MODE_OPT_IN:
      return "OPT-IN, NOT END-TO-END ENCRYPTED (server can read)";
    case v1::SECURITY_MODE_TRANSPORT:
      return "TRANSPORT ONLY (server can read)";
    default:
      return "UNSPECIFIED";
  }
}

std::string Requesters(NameFn names,
                       const google::protobuf::RepeatedPtrField<std::string>&
                           ids) {
  std::vector<std::string> who;
  for (const std::string& id : ids) who.push_back(SafeName(names, id));
  return absl::StrJoin(who, ", ");
}

std::string ConsentCount(int asked, int participants) {
  return participants > 0 ? absl::StrCat(asked, " of ", participants)
                          : absl::StrCat(asked);
}

nlohmann::json IdArray(
    const google::protobuf::RepeatedPtrField<std::string>& ids) {
  nlohmann::json a = nlohmann::json::array();
  for (const std::string& id : ids) a.push_back(id);
  return a;
}

const char* AccessKindName(v1::AccessNotice::Kind kind) {
  switch (kind) {
    case v1::AccessNotice::KIND_MODERATION_REVIEW:
      return "moderation_review";
    case v1::AccessNotice::KIND_LAWFUL_ACCESS:
      return "lawful_access";
    default:
      return "unspecified";
  }
}

const char* ModerationKindName(v1::ModerationNotice::Kind kind) {
  switch (kind) {
    case v1::ModerationNotice::KIND_WARNING:
      return "warning";
    case v1::ModerationNotice::KIND_MESSAGE_REMOVED:
      return "message_removed";
    default:
      return "unspecified";
  }
}

// The block for an AccessNotice (see display.h).
std::string FormatAccessNotice(const v1::Message& m) {
  const v1::AccessNotice& n = m.access_notice();
  std::vector<std::string> lines;
  const std::string text =
      n.text().empty() ? std::string("service staff read content of this "
                                     "conversation")
                       : SanitizeForTerminal(n.text());
  lines.push_back(absl::StrCat("*** STAFF ACCESS: ", text));
  switch (n.kind()) {
    case v1::AccessNotice::KIND_MODERATION_REVIEW:
      lines.push_back(absl::StrCat(
          kIndent, "why: a moderator reviewed a reported message"));
      break;
    case v1::AccessNotice::KIND_LAWFUL_ACCESS:
      lines.push_back(absl::StrCat(
          kIndent, "why: history was exported for a legal case"));
      break;
    default:
      break;
  }
  std::string what = absl::StrCat(kIndent, "conversation: ",
                                  SanitizeForTerminal(m.conversation_id()));
  if (n.message_count() > 0) {
    absl::StrAppend(&what, " (", n.message_count(),
                    n.message_count() == 1 ? " message" : " messages",
                    " read)");
  }
  lines.push_back(std::move(what));
  if (n.accessed_at_ms() != 0) {
    lines.push_back(absl::StrCat(kIndent, "accessed: ",
                                 FormatTimeMs(n.accessed_at_ms()),
                                 " (notice #", m.seq(), ")"));
  } else {
    lines.push_back(absl::StrCat(kIndent, "notice: #", m.seq()));
  }
  return absl::StrJoin(lines, "\n");
}

// The block for a ModerationNotice (see display.h).
std::string FormatModerationNotice(const v1::Message& m) {
  const v1::ModerationNotice& n = m.moderation_notice();
  std::vector<std::string> lines;
  const std::string text = SanitizeForTerminal(n.text());
  switch (n.kind()) {
    case v1::ModerationNotice::KIND_WARNING:
      lines.push_back(absl::StrCat(
          "*** MODERATION WARNING: ",
          text.empty() ? std::string("a message you sent was reported and "
                                     "violates the rules")
                       : text));
      break;
    case v1::ModerationNotice::KIND_MESSAGE_REMOVED:
      lines.push_back(absl::StrCat(
          "*** MESSAGE REMOVED by moderators: ",
          text.empty() ? std::string("a message of this conversation was "
                                     "removed")
                       : text));
      break;
    default:
      lines.push_back(absl::StrCat("*** MODERATION NOTICE: ", text));
      break;
  }
  std::string about = absl::StrCat(kIndent, "conversation: ",
                                   SanitizeForTerminal(m.conversation_id()));
  if (n.seq() != 0) absl::StrAppend(&about, ", message #", n.seq());
  lines.push_back(std::move(about));
  lines.push_back(absl::StrCat(kIndent, "notice: #", m.seq()));
  return absl::StrJoin(lines, "\n");
}

}  // namespace

std::string SecurityDecidedBy(const v1::SecurityState& s) {
  std::vector<std::string> parts;
  if (!s.rule_id().empty()) {
    parts.push_back(absl::StrCat("rule ", SanitizeForTerminal(s.rule_id())));
  }
  if (!s.policy_revision().empty()) {
    parts.push_back(absl::StrCat("policy revision ",
                                 SanitizeForTerminal(s.policy_revision())));
  }
  std::string out = absl::StrJoin(parts, ", ");
  if (s.set_by_participants()) {
    if (out.empty()) return "participants' consent";
    absl::StrAppend(&out, " (participants' consent)");
  }
  return out;
}

bool IsSecurityDowngrade(const v1::SecurityChange& change) {
  return change.old_state().mode() == v1::SECURITY_MODE_E2EE &&
         change.new_state().mode() != v1::SECURITY_MODE_E2EE;
}

bool IsSecurityUpgrade(const v1::SecurityChange& change) {
  return change.old_state().mode() != v1::SECURITY_MODE_E2EE &&
         change.new_state().mode() == v1::SECURITY_MODE_E2EE;
}

std::string FormatSecurityChange(const v1::Message& m, NameFn names) {
  if (!m.has_security_change()) return FormatMessageLine(m, names);
  const v1::SecurityChange& sc = m.security_change();
  const v1::SecurityState& old_state = sc.old_state();
  const v1::SecurityState& new_state = sc.new_state();
  std::vector<std::string> lines;

  std::string epoch =
      old_state.epoch() != 0 && old_state.epoch() != new_state.epoch()
          ? absl::StrCat(old_state.epoch(), " ", kArrow, " ", new_state.epoch())
          : absl::StrCat(new_state.epoch());
  const bool same_mode = old_state.mode() == new_state.mode() && old_state.mode() != 0;
  if (same_mode) {
    // The protection stays; what changed is said below (an announced or a
    // cancelled change, the lock, the rule or its reason).
    lines.push_back(absl::StrCat(
        "*** SECURITY UPDATE in ", SanitizeForTerminal(m.conversation_id()),
        " (epoch ", epoch, "): still ", ModeHeadline(new_state.mode())));
  } else {
    lines.push_back(absl::StrCat(
        "*** SECURITY CHANGE in ", SanitizeForTerminal(m.conversation_id()),
        " (epoch ", epoch, "): ", SecurityModeName(old_state.mode()), " ",
        kArrow, " ", ModeHeadline(new_state.mode())));
  }
  if (HasPending(old_state) && !HasPending(new_state) && same_mode) {
    lines.push_back(absl::StrCat(
        kIndent, "cancelled: the scheduled change to ",
        SecurityModeName(old_state.pending().new_mode()), " on ",
        FormatTimeMs(old_state.pending().effective_at_ms()),
        " will not happen"));
  }
  if (old_state.locked() != new_state.locked() && old_state.epoch() != 0) {
    lines.push_back(absl::StrCat(
        kIndent, new_state.locked()
                     ? "locked: participants can no longer change the protection"
                     : "unlocked: participants may change the protection as the policy allows"));
  }
  if (IsSecurityDowngrade(sc)) {
    lines.push_back(absl::StrCat("!!! ", kDowngradeWarning));
  }

  const std::string& reason =
      sc.reason().empty() ? new_state.reason() : sc.reason();
  if (!reason.empty()) {
    lines.push_back(
        absl::StrCat(kIndent, "reason: ", SanitizeForTerminal(reason)));
  }
  if (std::string by = SecurityDecidedBy(new_state); !by.empty()) {
    lines.push_back(absl::StrCat(kIndent, "decided by: ", by));
  }
  const int64_t effective = sc.effective_at_ms() != 0
                                ? sc.effective_at_ms()
                                : new_state.effective_at_ms();
  if (effective != 0) {
    lines.push_back(absl::StrCat(kIndent, "effective: ",
                                 FormatTimeMs(effective), " (message #",
                                 m.seq(), ")"));
  } else {
    lines.push_back(absl::StrCat(kIndent, "message: #", m.seq()));
  }
  if (!new_state.notice().empty()) {
    lines.push_back(absl::StrCat(kIndent, "notice: ",
                                 SanitizeForTerminal(new_state.notice())));
  }
  if (HasPending(new_state)) {
    const v1::PendingSecurityChange& p = new_state.pending();
    std::string line = absl::StrCat(
        kIndent, "scheduled: will become ", SecurityModeName(p.new_mode()),
        " on ", FormatTimeMs(p.effective_at_ms()));
    if (!p.reason().empty()) {
      absl::StrAppend(&line, " (", SanitizeForTerminal(p.reason()), ")");
    }
    lines.push_back(std::move(line));
    if (new_state.mode() == v1::SECURITY_MODE_E2EE &&
        p.new_mode() != v1::SECURITY_MODE_E2EE) {
      lines.push_back(absl::StrCat(
          "!!! WARNING: end-to-end encryption is scheduled to end on ",
          FormatTimeMs(p.effective_at_ms()),
          "; from then on the server can read new messages"));
    }
  }
  if (new_state.enable_requested_by_size() > 0) {
    lines.push_back(absl::StrCat(kIndent, "E2EE requested by: ",
                                 Requesters(names,
                                            new_state.enable_requested_by()),
                                 " (waiting for the others)"));
  }
  if (new_state.disable_requested_by_size() > 0) {
    lines.push_back(absl::StrCat(kIndent, "E2EE off requested by: ",
                                 Requesters(names,
                                            new_state.disable_requested_by()),
                                 " (waiting for the others)"));
  }
  return absl::StrJoin(lines, "\n");
}

Protection ProtectionOf(const v1::Message& message) {
  switch (message.payload_case()) {
    case v1::Message::kPlain:
      return Protection::kTransport;
    case v1::Message::kCiphertext:
      return Protection::kEndToEnd;
    default:
      return Protection::kNone;
  }
}

const char* ProtectionLabel(Protection protection) {
  switch (protection) {
    case Protection::kTransport:
      return "transport (server can read)";
    case Protection::kEndToEnd:
      return "end-to-end encrypted";
    default:
      return "none";
  }
}

const char* ProtectionNotice(Protection protection) {
  switch (protection) {
    case Protection::kTransport:
      return "(not end-to-end encrypted \xe2\x80\x94 server can read)";
    case Protection::kEndToEnd:
      return "(end-to-end encrypted)";
    default:
      return "";
  }
}

const char* ProtectionJsonName(Protection protection) {
  switch (protection) {
    case Protection::kTransport:
      return "transport";
    case Protection::kEndToEnd:
      return "e2ee";
    default:
      return "none";
  }
}

std::optional<std::string> PlainText(const v1::Message& message) {
  if (!message.has_plain()) return std::nullopt;
  const std::string type = absl::AsciiStrToLower(message.plain().content_type());
  if (!type.empty() && !absl::StartsWith(type, "text/")) return std::nullopt;
  return message.plain().content();
}

std::string FormatMessageLine(const v1::Message& m, NameFn names,
                              const std::optional<std::string>& decrypted) {
  switch (m.payload_case()) {
    case v1::Message::kPlain: {
      std::optional<std::string> text = PlainText(m);
      std::string shown =
          text ? SanitizeForTerminal(*text)
               : absl::StrCat("<", SanitizeForTerminal(m.plain().content_type()),
                              ", ", m.plain().content().size(), " bytes>");
      return absl::StrCat(Prefix(m), " ", SafeName(names, m.sender_account_id()),
                          ": ", shown, "   ",
                          ProtectionNotice(Protection::kTransport));
    }
    case v1::Message::kCiphertext: {
      std::string shown = decrypted ? SanitizeForTerminal(*decrypted)
                                    : std::string(kUndecryptable);
      return absl::StrCat(Prefix(m), " ", SafeName(names, m.sender_account_id()),
                          ": ", shown, "   ",
                          ProtectionNotice(Protection::kEndToEnd));
    }
    case v1::Message::kSecurityChange:
      return FormatSecurityChange(m, names);
    case v1::Message::kMembershipChange: {
      const v1::MembershipChange& mc = m.membership_change();
      std::vector<std::string> who;
      for (const std::string& id : mc.account_ids()) {
        // "alice created the conversation with bob", not "with alice, bob".
        if (mc.action() == v1::MembershipChange::ACTION_CREATED &&
            mc.account_ids_size() > 1 &&
            (id == mc.by_account_id() ||
             (mc.by_account_id().empty() && id == m.sender_account_id()))) {
          continue;
        }
        who.push_back(SafeName(names, id));
      }
      std::string by = mc.by_account_id().empty()
                           ? SafeName(names, m.sender_account_id())
                           : SafeName(names, mc.by_account_id());
      if (mc.action() == v1::MembershipChange::ACTION_LEFT) {
        return absl::StrCat("--- ", Prefix(m), " ", absl::StrJoin(who, ", "),
                            " left");
      }
      return absl::StrCat("--- ", Prefix(m), " ", by, " ",
                          MembershipVerb(mc.action()), " ",
                          absl::StrJoin(who, ", "));
    }
    case v1::Message::kAccessNotice:
      return FormatAccessNotice(m);
    case v1::Message::kModerationNotice:
      return FormatModerationNotice(m);
    default:
      return absl::StrCat(Prefix(m), " (unsupported message type from ",
                          SafeName(names, m.sender_account_id()), ")");
  }
}

nlohmann::json MessageJson(const v1::Message& m, NameFn names,
                           const std::optional<std::string>& decrypted) {
  nlohmann::json j;
  j["conversation_id"] = m.conversation_id();
  j["seq"] = m.seq();
  j["sender_account_id"] = m.sender_account_id();
  j["sender"] =
      m.sender_account_id().empty() ? "" : names(m.sender_account_id());
  j["sender_device_id"] = m.sender_device_id();
  j["server_time_ms"] = m.server_time_ms();
  j["security_epoch"] = m.security_epoch();
  const Protection p = ProtectionOf(m);
  switch (m.payload_case()) {
    case v1::Message::kPlain:
    case v1::Message::kCiphertext: {
      j["type"] = "message";
      j["client_message_id"] = m.client_message_id();
      j["e2ee"] = p == Protection::kEndToEnd;
      j["protection"] = ProtectionJsonName(p);
      j["protection_label"] = ProtectionLabel(p);
      std::optional<std::string> text =
          m.has_plain() ? PlainText(m) : decrypted;
      if (text) {
        j["text"] = *text;
      } else {
        j["text"] = nullptr;
      }
      if (m.has_plain()) {
        j["content_type"] = m.plain().content_type().empty()
                                ? "text/plain"
                                : m.plain().content_type();
      }
      break;
    }
    case v1::Message::kSecurityChange: {
      const v1::SecurityChange& sc = m.security_change();
      const v1::SecurityState& ns = sc.new_state();
      const bool downgrade = IsSecurityDowngrade(sc);
      j["type"] = "security_change";
      j["old_mode"] = SecurityModeName(sc.old_state().mode());
      j["new_mode"] = SecurityModeName(ns.mode());
      j["old_epoch"] = sc.old_state().epoch();
      j["epoch"] = ns.epoch();
      j["e2ee"] = ns.mode() == v1::SECURITY_MODE_E2EE;
      j["upgrade"] = IsSecurityUpgrade(sc);
      j["downgrade"] = downgrade;
      if (downgrade) {
        j["warning"] = std::string(kDowngradeWarning);
      } else {
        j["warning"] = nullptr;
      }
      j["reason"] = sc.reason().empty() ? ns.reason() : sc.reason();
      j["effective_at_ms"] =
          sc.effective_at_ms() != 0 ? sc.effective_at_ms()
                                    : ns.effective_at_ms();
      j["rule_id"] = ns.rule_id();
      j["policy_revision"] = ns.policy_revision();
      j["notice"] = ns.notice();
      j["set_by_participants"] = ns.set_by_participants();
      j["enable_requested_by"] = IdArray(ns.enable_requested_by());
      j["disable_requested_by"] = IdArray(ns.disable_requested_by());
      j["pending"] = PendingSecurityJson(ns);
      j["old_state"] = SecurityJson(sc.old_state());
      j["new_state"] = SecurityJson(sc.new_state());
      break;
    }
    case v1::Message::kMembershipChange: {
      const v1::MembershipChange& mc = m.membership_change();
      j["type"] = "membership_change";
      j["action"] = MembershipActionName(mc.action());
      nlohmann::json ids = nlohmann::json::array();
      nlohmann::json usernames = nlohmann::json::array();
      for (const std::string& id : mc.account_ids()) {
        ids.push_back(id);
        usernames.push_back(names(id));
      }
      j["account_ids"] = ids;
      j["accounts"] = usernames;
      j["by_account_id"] = mc.by_account_id();
      break;
    }
    case v1::Message::kAccessNotice: {
      const v1::AccessNotice& n = m.access_notice();
      j["type"] = "access_notice";
      j["kind"] = AccessKindName(n.kind());
      j["accessed_at_ms"] = n.accessed_at_ms();
      j["message_count"] = n.message_count();
      j["text"] = n.text();
      break;
    }
    case v1::Message::kModerationNotice: {
      const v1::ModerationNotice& n = m.moderation_notice();
      j["type"] = "moderation_notice";
      j["kind"] = ModerationKindName(n.kind());
      j["message_seq"] = n.seq();
      j["text"] = n.text();
      break;
    }
    default:
      j["type"] = "unknown";
      break;
  }
  return j;
}

std::string DescribeConsentRequests(const v1::SecurityState& s,
                                    int participants) {
  std::vector<std::string> parts;
  if (s.enable_requested_by_size() > 0) {
    parts.push_back(absl::StrCat(
        "E2EE requested by ",
        ConsentCount(s.enable_requested_by_size(), participants)));
  }
  if (s.disable_requested_by_size() > 0) {
    parts.push_back(absl::StrCat(
        "E2EE off requested by ",
        ConsentCount(s.disable_requested_by_size(), participants)));
  }
  return absl::StrJoin(parts, "; ");
}

std::string DescribeSecurity(const v1::SecurityState& s, int participants) {
  std::string out = SecurityModeName(s.mode());
  switch (s.mode()) {
    case v1::SECURITY_MODE_E2EE:
      absl::StrAppend(&out, " (end-to-end encrypted)");
      break;
    case v1::SECURITY_MODE_OPT_IN:
      absl::StrAppend(&out,
                      " (not end-to-end encrypted yet \xe2\x80\x94 server "
                      "can read; E2EE can be turned on)");
      break;
    case v1::SECURITY_MODE_TRANSPORT:
      absl::StrAppend(&out,
                      " (not end-to-end encrypted \xe2\x80\x94 server can "
                      "read)");
      break;
    default:
      absl::StrAppend(&out, " (protection unknown)");
      break;
  }
  if (!s.reason().empty()) {
    absl::StrAppend(&out, " \xe2\x80\x94 reason: ",
                    SanitizeForTerminal(s.reason()));
  }
  std::vector<std::string> detail;
  if (!s.rule_id().empty()) {
    detail.push_back(absl::StrCat("rule ", SanitizeForTerminal(s.rule_id())));
  }
  if (!s.policy_revision().empty()) {
    detail.push_back(absl::StrCat("policy revision ",
                                  SanitizeForTerminal(s.policy_revision())));
  }
  detail.push_back(absl::StrCat("epoch ", s.epoch()));
  if (s.set_by_participants()) detail.push_back("set by participants");
  if (s.locked()) detail.push_back("locked");
  absl::StrAppend(&out, " [", absl::StrJoin(detail, ", "), "]");
  if (std::string requests = DescribeConsentRequests(s, participants);
      !requests.empty()) {
    absl::StrAppend(&out, "; ", requests);
  }
  if (HasPending(s)) {
    absl::StrAppend(&out, "; PENDING change to ",
                    SecurityModeName(s.pending().new_mode()), " at ",
                    FormatTimeMs(s.pending().effective_at_ms()));
    if (!s.pending().reason().empty()) {
      absl::StrAppend(&out, " (", SanitizeForTerminal(s.pending().reason()),
                      ")");
    }
  }
  return out;
}

nlohmann::json PendingSecurityJson(const v1::SecurityState& s) {
  if (!HasPending(s)) return nullptr;
  return {{"new_mode", SecurityModeName(s.pending().new_mode())},
          {"effective_at_ms", s.pending().effective_at_ms()},
          {"reason", s.pending().reason()},
          {"rule_id", s.pending().rule_id()},
          {"policy_revision", s.pending().policy_revision()}};
}

nlohmann::json SecurityJson(const v1::SecurityState& s) {
  nlohmann::json j;
  j["mode"] = SecurityModeName(s.mode());
  j["e2ee"] = s.mode() == v1::SECURITY_MODE_E2EE;
  j["protection"] = ProtectionJsonName(s.mode() == v1::SECURITY_MODE_E2EE
                                           ? Protection::kEndToEnd
                                           : Protection::kTransport);
  j["epoch"] = s.epoch();
  j["reason"] = s.reason();
  j["rule_id"] = s.rule_id();
  j["policy_revision"] = s.policy_revision();
  j["effective_at_ms"] = s.effective_at_ms();
  j["e2ee_ever_enabled"] = s.e2ee_ever_enabled();
  j["locked"] = s.locked();
  j["set_by_participants"] = s.set_by_participants();
  j["enable_requested_by"] = IdArray(s.enable_requested_by());
  j["disable_requested_by"] = IdArray(s.disable_requested_by());
  j["notice"] = s.notice();
  j["pending"] = PendingSecurityJson(s);
  return j;
}

std::string FormatConversationLine(const v1::Conversation& c,
                                   absl::string_view self_account_id) {
  std::vector<std::string> members;
  std::string peer;
  for (const v1::Member& m : c.members()) {
    std::string name = SanitizeForTerminal(m.username().empty() ? m.account_id()
                                                                : m.username());
    if (m.account_id() != self_account_id && peer.empty()) peer = name;
    members.push_back(m.admin() ? absl::StrCat(name, "*") : name);
  }
  std::string what;
  if (c.kind() == v1::CONVERSATION_KIND_DIRECT) {
    what = peer.empty() ? "(yourself)" : absl::StrCat("@", peer);
  } else {
    what = absl::StrCat("\"", SanitizeForTerminal(c.title()), "\"");
  }
  return absl::StrCat(SanitizeForTerminal(c.conversation_id()), "  ",
                      ConversationKindName(c.kind()), "  ", what,
                      "  members: ", absl::StrJoin(members, ", "),
                      "  mode: ",
                      DescribeSecurity(c.security(), c.members_size()));
}

nlohmann::json ConversationJson(const v1::Conversation& c) {
  nlohmann::json j;
  j["type"] = "conversation";
  j["conversation_id"] = c.conversation_id();
  j["kind"] = ConversationKindName(c.kind());
  j["title"] = c.title();
  nlohmann::json members = nlohmann::json::array();
  for (const v1::Member& m : c.members()) {
    members.push_back({{"account_id", m.account_id()},
                       {"username", m.username()},
                       {"admin", m.admin()},
                       {"joined_at_ms", m.joined_at_ms()}});
  }
  j["members"] = members;
  j["security"] = SecurityJson(c.security());
  j["mode"] = SecurityModeName(c.security().mode());
  j["e2ee"] = c.security().mode() == v1::SECURITY_MODE_E2EE;
  j["reason"] = c.security().reason();
  j["created_at_ms"] = c.created_at_ms();
  j["last_message_seq"] = c.last_message_seq();
  return j;
}

nlohmann::json AccountJson(const v1::Account& a) {
  return {{"type", "account"},
          {"account_id", a.account_id()},
          {"username", a.username()},
          {"display_name", a.display_name()},
          {"kind", AccountKindName(a.attributes().kind())},
          {"age_band", AgeBandName(a.attributes().age_band())},
          {"region", a.attributes().region_code()},
          {"organization", a.attributes().organization()},
          {"created_at_ms", a.created_at_ms()}};
}

nlohmann::json DeviceJson(const v1::Device& d) {
  return {{"type", "device"},
          {"device_id", d.device_id()},
          {"name", d.name()},
          {"created_at_ms", d.created_at_ms()},
          {"last_seen_at_ms", d.last_seen_at_ms()},
          {"registration_id", d.registration_id()}};
}

std::string FormatTimeMs(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

std::string JsonLine(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace parley
