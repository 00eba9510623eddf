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

}  // namespace

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
    case v1::Message::kSecurityChange: {
      const v1::SecurityChange& sc = m.security_change();
      const std::string& reason =
          sc.reason().empty() ? sc.new_state().reason() : sc.reason();
      std::string line = absl::StrCat(
          "*** SECURITY CHANGE in ", SanitizeForTerminal(m.conversation_id()),
          ": ", SecurityModeName(sc.old_state().mode()), " -> ",
          SecurityModeName(sc.new_state().mode()), " (",
          ProtectionLabel(sc.new_state().mode() == v1::SECURITY_MODE_E2EE
                              ? Protection::kEndToEnd
                              : Protection::kTransport));
      if (!reason.empty()) {
        absl::StrAppend(&line, "; reason: ", SanitizeForTerminal(reason));
      }
      absl::StrAppend(&line, "; #", m.seq(), ", epoch ",
                      sc.new_state().epoch());
      if (sc.effective_at_ms() != 0) {
        absl::StrAppend(&line, ", effective ", FormatTimeMs(sc.effective_at_ms()));
      }
      absl::StrAppend(&line, ") ***");
      return line;
    }
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
      j["type"] = "security_change";
      j["old_mode"] = SecurityModeName(sc.old_state().mode());
      j["new_mode"] = SecurityModeName(sc.new_state().mode());
      j["e2ee"] = sc.new_state().mode() == v1::SECURITY_MODE_E2EE;
      j["reason"] = sc.reason().empty() ? sc.new_state().reason() : sc.reason();
      j["effective_at_ms"] = sc.effective_at_ms();
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
    default:
      j["type"] = "unknown";
      break;
  }
  return j;
}

std::string DescribeSecurity(const v1::SecurityState& s) {
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
    absl::StrAppend(&out, " \xe2\x80\x94 reason: ", SanitizeForTerminal(s.reason()));
  }
  std::vector<std::string> detail;
  if (!s.rule_id().empty()) {
    detail.push_back(absl::StrCat("rule ", SanitizeForTerminal(s.rule_id())));
  }
  if (!s.policy_revision().empty()) {
    detail.push_back(
        absl::StrCat("policy ", SanitizeForTerminal(s.policy_revision())));
  }
  detail.push_back(absl::StrCat("epoch ", s.epoch()));
  if (s.locked()) detail.push_back("locked");
  absl::StrAppend(&out, " [", absl::StrJoin(detail, ", "), "]");
  if (s.has_pending() && s.pending().new_mode() != v1::SECURITY_MODE_UNSPECIFIED) {
    absl::StrAppend(&out, "; PENDING change to ",
                    SecurityModeName(s.pending().new_mode()), " at ",
                    FormatTimeMs(s.pending().effective_at_ms()));
    if (!s.pending().reason().empty()) {
      absl::StrAppend(&out, " (", SanitizeForTerminal(s.pending().reason()), ")");
    }
  }
  return out;
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
  if (s.has_pending() && s.pending().new_mode() != v1::SECURITY_MODE_UNSPECIFIED) {
    j["pending"] = {{"new_mode", SecurityModeName(s.pending().new_mode())},
                    {"effective_at_ms", s.pending().effective_at_ms()},
                    {"reason", s.pending().reason()},
                    {"rule_id", s.pending().rule_id()},
                    {"policy_revision", s.pending().policy_revision()}};
  }
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
                      "  mode: ", DescribeSecurity(c.security()));
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
