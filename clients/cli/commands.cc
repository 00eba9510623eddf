// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/cli/commands.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <iostream>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "clients/cli/listen_deadline.h"
#include "clients/sdk/display.h"
#include "clients/sdk/parse.h"

namespace parley::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

std::string MemberList(const v1::Conversation& c) {
  std::vector<std::string> names;
  for (const v1::Member& m : c.members()) {
    std::string n = SanitizeForTerminal(m.username().empty() ? m.account_id()
                                                             : m.username());
    names.push_back(m.admin() ? absl::StrCat(n, " (admin)") : n);
  }
  return absl::StrJoin(names, ", ");
}

nlohmann::json RegistrationJson(const Context& ctx, const Registration& r,
                                const Profile& p) {
  nlohmann::json j = AccountJson(r.account);
  j["type"] = "registered";
  j["device"] = DeviceJson(r.device);
  j["device_id"] = r.device.device_id();
  j["profile"] = ctx.flags().profile;
  j["profile_dir"] = p.dir;
  j["server"] = p.server;
  return j;
}

// Resolves a CONV argument; on failure prints and sets *exit_code.
std::optional<std::string> Resolve(Context& ctx, const std::string& arg,
                                   int* exit_code) {
  auto id = ctx.ResolveConversation(arg);
  if (id.ok()) return *std::move(id);
  *exit_code = absl::IsInvalidArgument(id.status())
                   ? ctx.Usage(id.status().message())
                   : ctx.Fail("resolving " + arg, id.status());
  return std::nullopt;
}

// "c_1 (@bob)" when the user named the conversation by its peer.
std::string ConversationLabel(const std::string& arg, const std::string& id) {
  std::string label = SanitizeForTerminal(id);
  if (!arg.empty() && arg[0] == '@') {
    absl::StrAppend(&label, " (", SanitizeForTerminal(arg), ")");
  }
  return label;
}

// The mode line of `info`.
std::string ModeDetail(v1::SecurityMode mode) {
  switch (mode) {
    case v1::SECURITY_MODE_E2EE:
      return "e2ee (end-to-end encrypted)";
    case v1::SECURITY_MODE_OPT_IN:
      return "opt-in (not end-to-end encrypted \xe2\x80\x94 server can "
             "read; `parley secure` asks to turn E2EE on)";
    case v1::SECURITY_MODE_TRANSPORT:
      return "transport (not end-to-end encrypted \xe2\x80\x94 server can "
             "read)";
    default:
      return "unspecified (protection unknown)";
  }
}

// "alice, bob (1 of 3; waiting for carol)" for the accounts in `ids`.
std::string RequestersLine(
    Context& ctx, const v1::Conversation& c,
    const google::protobuf::RepeatedPtrField<std::string>& ids) {
  const std::string& self = ctx.profile().account_id;
  auto shown = [&](const std::string& id, const std::string& name) {
    std::string out = SanitizeForTerminal(name);
    if (id == self) absl::StrAppend(&out, " (you)");
    return out;
  };
  std::vector<std::string> who;
  for (const std::string& id : ids) who.push_back(shown(id, ctx.Name(id)));
  std::vector<std::string> waiting;
  for (const v1::Member& m : c.members()) {
    if (std::find(ids.begin(), ids.end(), m.account_id()) == ids.end()) {
      waiting.push_back(shown(m.account_id(), m.username().empty()
                                                  ? m.account_id()
                                                  : m.username()));
    }
  }
  std::string line = absl::StrCat(absl::StrJoin(who, ", "), " (", ids.size(),
                                  " of ", c.members_size());
  if (!waiting.empty()) {
    absl::StrAppend(&line, "; waiting for ", absl::StrJoin(waiting, ", "));
  }
  absl::StrAppend(&line, ")");
  return line;
}

nlohmann::json SecurityChangeResultJson(const SecurityChangeResult& r) {
  return {{"type", "security_change_request"},
          {"conversation_id", r.conversation_id},
          {"requested_mode", SecurityModeName(r.requested_mode)},
          {"in_effect", r.in_effect},
          {"pending_consent", r.pending_consent},
          {"consents", r.consents},
          {"consents_required", r.consents_required},
          {"mode", SecurityModeName(r.state.mode())},
          {"e2ee", r.state.mode() == v1::SECURITY_MODE_E2EE},
          {"epoch", r.state.epoch()},
          {"notice", r.state.notice()},
          {"security", SecurityJson(r.state)}};
}

// "request recorded: 1 of 2 participants have asked..."
std::string PendingLine(const SecurityChangeResult& r, absl::string_view what) {
  const uint32_t asked =
      r.consents != 0
          ? r.consents
          : static_cast<uint32_t>(r.requested_mode == v1::SECURITY_MODE_E2EE
                                      ? r.state.enable_requested_by_size()
                                      : r.state.disable_requested_by_size());
  std::string count =
      r.consents_required != 0
          ? absl::StrCat(asked, " of ", r.consents_required, " participants")
          : absl::StrCat(asked, asked == 1 ? " participant" : " participants");
  return absl::StrCat("request recorded: ", count,
                      asked == 1 && r.consents_required == 0 ? " has" : " have",
                      " asked", what, "; waiting for the others");
}

// Warns (stderr, also in JSON mode) when the E2EE keys of a new device could
// not be published.
void KeysNote(const Registration& r) {
  if (r.keys_status.ok()) return;
  std::cerr << "parley: warning: the end-to-end encryption keys of this "
               "device could not be published ("
            << r.keys_status.message()
            << "); they are published on the next send or listen"
            << std::endl;
}

// "WARNING: the safety number with bob changed ..." (stderr, every mode).
void WarnIdentityChange(Context& ctx, const IdentityChangeNotice& n,
                        absl::string_view when) {
  const std::string name = SanitizeForTerminal(ctx.Name(n.account_id));
  std::cerr << "parley: WARNING: " << when << "the safety number with "
            << name << " changed: device " << n.device_id
            << " has a new identity key (a reinstall, or someone else). ";
  if (n.blocked) {
    std::cerr << "You had verified " << name
              << ", so its messages are refused until you compare the new "
                 "number (`parley verify "
              << name << "`) and accept it (`parley verify " << name
              << " --unmark`, then `--mark` once it matches).";
  } else {
    std::cerr << "Compare the new number with them: `parley verify " << name
              << "`.";
  }
  std::cerr << std::endl;
}

// Splits a 60-digit safety number into 12 groups of 5.
std::string GroupDigits(absl::string_view digits) {
  std::vector<std::string> groups;
  for (size_t i = 0; i < digits.size(); i += 5) {
    groups.emplace_back(digits.substr(i, 5));
  }
  return absl::StrJoin(groups, " ");
}

}  // namespace

int CmdRegister(Context& ctx, const RegisterArgs& a) {
  if (absl::Status s = ValidateUsername(a.username); !s.ok()) {
    return ctx.Usage(s.message());
  }
  v1::AccountAttributes attributes;
  auto kind = ParseAccountKind(a.kind);
  if (!kind.ok()) return ctx.Usage(kind.status().message());
  attributes.set_kind(*kind);
  if (!a.age_band.empty()) {
    auto band = ParseAgeBand(a.age_band);
    if (!band.ok()) return ctx.Usage(band.status().message());
    attributes.set_age_band(*band);
  }
  auto region = ParseRegionCode(a.region);
  if (!region.ok()) return ctx.Usage(region.status().message());
  attributes.set_region_code(*region);
  if (ctx.profile().registered()) {
    std::cerr << "parley: profile \"" << ctx.flags().profile
              << "\" is already registered as " << ctx.profile().username
              << " (use another --profile)" << std::endl;
    return kExitFailed;
  }
  int rc = kExitOk;
  Client* client = ctx.Connect(/*need_registered=*/false, &rc);
  if (client == nullptr) return rc;
  auto reg = client->Register(a.username, a.display_name, attributes,
                              a.device_name);
  if (!reg.ok()) return ctx.Fail("register", reg.status());
  KeysNote(*reg);
  Profile p = client->profile();
  if (p.server_signing_key.empty()) {
    std::cerr << "parley: note: the server sent no statement signing key; "
                 "security states cannot be verified (no downgrade "
                 "protection)"
              << std::endl;
  }
  if (a.refuse_downgrade) {
    p.refuse_downgrade = true;
    if (absl::Status s = p.Save(); !s.ok()) {
      return ctx.Fail("saving refuse-downgrade", s);
    }
  }
  ctx.Emit(absl::StrCat("registered ", reg->account.username(), " (account ",
                        reg->account.account_id(), ", device ",
                        reg->device.device_id(), ") on ", p.server,
                        "; credentials saved in ", p.credentials_path()),
           RegistrationJson(ctx, *reg, p));
  return kExitOk;
}

int CmdLink(Context& ctx, const std::string& code,
            const std::string& device_name) {
  if (ctx.profile().registered()) {
    std::cerr << "parley: profile \"" << ctx.flags().profile
              << "\" already holds a device of " << ctx.profile().username
              << " (link from a new --profile)" << std::endl;
    return kExitFailed;
  }
  int rc = kExitOk;
  Client* client = ctx.Connect(false, &rc);
  if (client == nullptr) return rc;
  auto reg = client->LinkDevice(code, device_name);
  if (!reg.ok()) return ctx.Fail("link", reg.status());
  KeysNote(*reg);
  const Profile p = client->profile();
  nlohmann::json j = RegistrationJson(ctx, *reg, p);
  j["type"] = "linked";
  ctx.Emit(absl::StrCat("linked as device ", reg->device.device_id(), " of ",
                        reg->account.username(), " (account ",
                        reg->account.account_id(), "); credentials saved in ",
                        p.credentials_path()),
           j);
  return kExitOk;
}

int CmdDevices(Context& ctx) {
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  auto devices = client->ListDevices();
  if (!devices.ok()) return ctx.Fail("listing devices", devices.status());
  for (const v1::Device& d : *devices) {
    const bool self = d.device_id() == ctx.profile().device_id;
    nlohmann::json j = DeviceJson(d);
    j["this_device"] = self;
    ctx.Emit(absl::StrCat(d.device_id(), "  ",
                          SanitizeForTerminal(d.name().empty() ? "(unnamed)"
                                                               : d.name()),
                          "  created ", FormatTimeMs(d.created_at_ms()),
                          "  last seen ", FormatTimeMs(d.last_seen_at_ms()),
                          self ? "  (this device)" : ""),
             j);
  }
  return kExitOk;
}

int CmdDeviceLinkCode(Context& ctx) {
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  auto link = client->CreateDeviceLink();
  if (!link.ok()) return ctx.Fail("creating a device link code", link.status());
  if (ctx.json()) {
    ctx.Emit("", {{"type", "link_code"},
                  {"code", link->code},
                  {"expires_at_ms", link->expires_at_ms}});
  } else {
    std::cout << link->code << std::endl;
    std::cerr << "(single use, expires " << FormatTimeMs(link->expires_at_ms)
              << "; on the new device run: parley --profile NEW --server "
              << client->options().server
              << (client->options().insecure
                      ? std::string(" --insecure")
                      : absl::StrCat(" --ca ", client->options().ca_file))
              << " link CODE)" << std::endl;
  }
  return kExitOk;
}

int CmdDeviceRemove(Context& ctx, uint32_t device_id) {
  if (device_id == 0) return ctx.Usage("device id must be at least 1");
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  if (absl::Status s = client->RemoveDevice(device_id); !s.ok()) {
    return ctx.Fail(absl::StrCat("removing device ", device_id), s);
  }
  ctx.Emit(absl::StrCat("removed device ", device_id),
           {{"type", "device_removed"}, {"device_id", device_id}});
  return kExitOk;
}

int CmdChatCreate(Context& ctx, const std::string& username_arg) {
  const std::string username =
      !username_arg.empty() && username_arg[0] == '@' ? username_arg.substr(1)
                                                      : username_arg;
  if (absl::Status s = ValidateUsername(username); !s.ok()) {
    return ctx.Usage(s.message());
  }
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  auto direct = client->CreateDirect(username);
  if (!direct.ok()) {
    return ctx.Fail(absl::StrCat("creating a chat with ", username),
                    direct.status());
  }
  nlohmann::json j = ConversationJson(direct->conversation);
  j["created"] = direct->created;
  ctx.Emit(absl::StrCat(direct->created ? "created " : "existing ",
                        FormatConversationLine(direct->conversation,
                                               ctx.profile().account_id)),
           j);
  return kExitOk;
}

int CmdGroupCreate(Context& ctx, const std::string& title,
                   const std::vector<std::string>& members) {
  if (title.empty()) return ctx.Usage("group name must not be empty");
  std::vector<std::string> usernames;
  for (const std::string& m : members) {
    std::string u = !m.empty() && m[0] == '@' ? m.substr(1) : m;
    if (u.empty()) continue;
    if (absl::Status s = ValidateUsername(u); !s.ok()) {
      return ctx.Usage(s.message());
    }
    usernames.push_back(u);
  }
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  auto conv = client->CreateGroup(title, usernames);
  if (!conv.ok()) return ctx.Fail("creating the group", conv.status());
  ctx.Emit(absl::StrCat("created ", FormatConversationLine(
                                        *conv, ctx.profile().account_id)),
           ConversationJson(*conv));
  return kExitOk;
}

int CmdGroupAdd(Context& ctx, const std::string& conversation,
                const std::vector<std::string>& users) {
  std::vector<std::string> usernames;
  for (const std::string& m : users) {
    std::string u = !m.empty() && m[0] == '@' ? m.substr(1) : m;
    if (absl::Status s = ValidateUsername(u); !s.ok()) {
      return ctx.Usage(s.message());
    }
    usernames.push_back(u);
  }
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  auto conv = client->AddMembers(conversation, usernames);
  if (!conv.ok()) {
    return ctx.Fail(absl::StrCat("adding members to ", conversation),
                    conv.status());
  }
  ctx.Emit(absl::StrCat("added ", absl::StrJoin(usernames, ", "), ": ",
                        FormatConversationLine(*conv,
                                               ctx.profile().account_id)),
           ConversationJson(*conv));
  return kExitOk;
}

int CmdGroupRemove(Context& ctx, const std::string& conversation,
                   const std::string& who_arg) {
  const std::string who =
      !who_arg.empty() && who_arg[0] == '@' ? who_arg.substr(1) : who_arg;
  if (who.empty()) return ctx.Usage("no account or username given");
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  auto conv = client->GetConversation(conversation);
  if (!conv.ok()) {
    return ctx.Fail(absl::StrCat("reading conversation ", conversation),
                    conv.status());
  }
  std::string account_id;
  std::string shown = who;
  for (const v1::Member& m : conv->members()) {
    if (m.account_id() == who || m.username() == who) {
      account_id = m.account_id();
      if (!m.username().empty()) shown = m.username();
    }
  }
  if (account_id.empty()) {
    std::cerr << "parley: " << who << " is not a member of " << conversation
              << std::endl;
    return kExitFailed;
  }
  if (absl::Status s = client->RemoveMember(conversation, account_id);
      !s.ok()) {
    return ctx.Fail(absl::StrCat("removing ", shown, " from ", conversation),
                    s);
  }
  const bool left = account_id == ctx.profile().account_id;
  ctx.Emit(left ? absl::StrCat("left ", conversation)
                : absl::StrCat("removed ", shown, " from ", conversation),
           {{"type", "member_removed"},
            {"conversation_id", conversation},
            {"account_id", account_id},
            {"username", shown},
            {"left", left}});
  return kExitOk;
}

int CmdConversations(Context& ctx) {
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  auto convs = client->ListConversations();
  if (!convs.ok()) return ctx.Fail("listing conversations", convs.status());
  if (convs->empty()) ctx.EmitHuman("(no conversations)");
  for (const v1::Conversation& c : *convs) {
    nlohmann::json j = ConversationJson(c);
    const bool seen = client->SeenAsE2ee(c.conversation_id());
    j["seen_as_e2ee"] = seen;
    std::string line = FormatConversationLine(c, ctx.profile().account_id);
    if (seen && c.security().mode() != v1::SECURITY_MODE_E2EE) {
      absl::StrAppend(&line,
                      "  [WAS END-TO-END ENCRYPTED on this device: sending "
                      "plaintext refused]");
    }
    ctx.Emit(line, j);
  }
  return kExitOk;
}

int CmdInfo(Context& ctx, const std::string& conversation_arg) {
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  std::optional<std::string> id = Resolve(ctx, conversation_arg, &rc);
  if (!id) return rc;
  auto conv = client->GetConversation(*id);
  if (!conv.ok()) {
    return ctx.Fail(absl::StrCat("reading conversation ", *id), conv.status());
  }
  const bool seen = client->SeenAsE2ee(*id);
  const v1::Conversation& c = *conv;
  const v1::SecurityState& s = c.security();
  if (ctx.json()) {
    nlohmann::json j = ConversationJson(c);
    j["seen_as_e2ee"] = seen;
    j["participants"] = c.members_size();
    ctx.Emit("", j);
    return kExitOk;
  }
  ctx.LearnConversation(c);
  std::string title =
      c.kind() == v1::CONVERSATION_KIND_DIRECT
          ? std::string()
          : absl::StrCat(" \"", SanitizeForTerminal(c.title()), "\"");
  std::cout << "conversation " << SanitizeForTerminal(c.conversation_id())
            << " (" << ConversationKindName(c.kind()) << title << ")\n"
            << "  created:      " << FormatTimeMs(c.created_at_ms()) << "\n"
            << "  members:      " << MemberList(c) << "\n"
            << "  last message: #" << c.last_message_seq() << "\n"
            << "  mode:         " << ModeDetail(s.mode()) << ", epoch "
            << s.epoch() << ", since " << FormatTimeMs(s.effective_at_ms())
            << "\n"
            << "  reason:       "
            << (s.reason().empty() ? std::string("-")
                                   : SanitizeForTerminal(s.reason()))
            << "\n";
  const std::string decided_by = SecurityDecidedBy(s);
  std::cout << "  decided by:   " << (decided_by.empty() ? "-" : decided_by)
            << "\n";
  if (!s.notice().empty()) {
    std::cout << "  notice:       " << SanitizeForTerminal(s.notice()) << "\n";
  }
  if (s.has_pending() &&
      s.pending().new_mode() != v1::SECURITY_MODE_UNSPECIFIED) {
    const v1::PendingSecurityChange& p = s.pending();
    std::cout << "  scheduled:    will become "
              << SecurityModeName(p.new_mode()) << " on "
              << FormatTimeMs(p.effective_at_ms());
    if (!p.reason().empty()) {
      std::cout << " (" << SanitizeForTerminal(p.reason()) << ")";
    }
    v1::SecurityState pending_decision;
    pending_decision.set_rule_id(p.rule_id());
    pending_decision.set_policy_revision(p.policy_revision());
    if (std::string by = SecurityDecidedBy(pending_decision); !by.empty()) {
      std::cout << " [" << by << "]";
    }
    std::cout << "\n";
    if (s.mode() == v1::SECURITY_MODE_E2EE &&
        p.new_mode() != v1::SECURITY_MODE_E2EE) {
      std::cout << "  WARNING: end-to-end encryption is scheduled to end; "
                   "from then on the server can read new messages\n";
    }
  }
  if (s.enable_requested_by_size() > 0) {
    std::cout << "  E2EE requested by:     "
              << RequestersLine(ctx, c, s.enable_requested_by()) << "\n";
  }
  if (s.disable_requested_by_size() > 0) {
    std::cout << "  E2EE off requested by: "
              << RequestersLine(ctx, c, s.disable_requested_by()) << "\n";
  }
  std::cout << "  e2ee ever enabled: " << (s.e2ee_ever_enabled() ? "yes" : "no")
            << ", mode locked: " << (s.locked() ? "yes" : "no") << "\n";
  if (seen) {
    std::cout << "  this device has seen it end-to-end encrypted"
              << (s.mode() == v1::SECURITY_MODE_E2EE
                      ? ""
                      : " \xe2\x80\x94 the server now says otherwise; "
                        "sending plaintext is refused")
              << "\n";
  }
  std::cout << std::flush;
  return kExitOk;
}

int CmdSecure(Context& ctx, const std::string& conversation_arg) {
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  std::optional<std::string> id = Resolve(ctx, conversation_arg, &rc);
  if (!id) return rc;
  const std::string label = ConversationLabel(conversation_arg, *id);
  auto result = client->EnableE2ee(*id);
  if (!result.ok()) {
    return ctx.Fail(
        absl::StrCat("turning on end-to-end encryption for ", *id),
        result.status());
  }
  std::string human;
  if (result->in_effect) {
    human = absl::StrCat("end-to-end encryption is now ON for ", label,
                         " (epoch ", result->state.epoch(), ")");
  } else if (result->pending_consent) {
    human = PendingLine(*result, "");
  } else {
    human = absl::StrCat("request sent; ", label, " is now ",
                         DescribeSecurity(result->state));
  }
  if (!result->state.notice().empty()) {
    absl::StrAppend(&human, "\nnotice: ",
                    SanitizeForTerminal(result->state.notice()));
  }
  ctx.Emit(human, SecurityChangeResultJson(*result));
  if (result->in_effect) {
    ctx.Note(absl::StrCat(
        "(every later message in ", label,
        " must be end-to-end encrypted: this client encrypts them for every "
        "member device)"));
  }
  return kExitOk;
}

int CmdInsecure(Context& ctx, const std::string& conversation_arg, bool yes) {
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  std::optional<std::string> id = Resolve(ctx, conversation_arg, &rc);
  if (!id) return rc;
  const std::string label = ConversationLabel(conversation_arg, *id);
  auto conv = client->GetConversation(*id);
  if (!conv.ok()) {
    return ctx.Fail(absl::StrCat("reading conversation ", *id), conv.status());
  }
  if (!yes) {
    // The confirmation goes to the terminal (stderr) even with --json.
    const bool e2ee_now =
        conv->security().mode() == v1::SECURITY_MODE_E2EE;
    std::cerr << "parley: WARNING: you are asking to turn end-to-end "
                 "encryption OFF for "
              << label << ".\n"
              << "  currently: "
              << DescribeSecurity(conv->security(), conv->members_size())
              << "\n"
              << (e2ee_now
                      ? "  once it is off, the server can read every new "
                        "message in this conversation.\n"
                      : "  it is not end-to-end encrypted now; this asks the "
                        "server to keep it readable by the server.\n")
              << "Turn end-to-end encryption off? [y/N] " << std::flush;
    std::string answer;
    if (!std::getline(std::cin, answer)) answer.clear();
    // The typed answer ended the prompt line; a piped one did not.
    if (!::isatty(STDIN_FILENO)) std::cerr << "\n";
    answer = absl::AsciiStrToLower(absl::StripAsciiWhitespace(answer));
    if (answer != "y" && answer != "yes") {
      std::cerr << "parley: aborted; nothing was changed (pass --yes to skip "
                   "this question)"
                << std::endl;
      return kExitFailed;
    }
  }
  auto result =
      client->RequestSecurityChange(*id, v1::SECURITY_MODE_TRANSPORT);
  if (!result.ok()) {
    return ctx.Fail(
        absl::StrCat("turning off end-to-end encryption for ", *id),
        result.status());
  }
  std::string human;
  if (result->in_effect) {
    human = absl::StrCat("end-to-end encryption is now OFF for ", label,
                         " (epoch ", result->state.epoch(), "): mode ",
                         SecurityModeName(result->state.mode()), "\n",
                         kDowngradeWarning);
  } else if (result->pending_consent) {
    human = PendingLine(*result, " to turn end-to-end encryption off");
  } else {
    human = absl::StrCat("request sent; ", label, " is now ",
                         DescribeSecurity(result->state));
  }
  if (!result->state.notice().empty()) {
    absl::StrAppend(&human, "\nnotice: ",
                    SanitizeForTerminal(result->state.notice()));
  }
  nlohmann::json j = SecurityChangeResultJson(*result);
  if (result->in_effect) {
    j["warning"] = std::string(kDowngradeWarning);
  } else {
    j["warning"] = nullptr;
  }
  ctx.Emit(human, j);
  if (result->in_effect && client->SeenAsE2ee(*id)) {
    ctx.Note(absl::StrCat(
        "(this device has seen ", label,
        " end-to-end encrypted: it keeps refusing to send plaintext there "
        "until the change can be verified, which needs the E2EE client)"));
  }
  return kExitOk;
}

int CmdSend(Context& ctx, const std::string& conversation_arg,
            const std::string& text, const std::string& client_message_id) {
  if (text.empty()) return ctx.Usage("message text must not be empty");
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  auto id = ctx.ResolveConversation(conversation_arg);
  if (!id.ok()) {
    return absl::IsInvalidArgument(id.status())
               ? ctx.Usage(id.status().message())
               : ctx.Fail("resolving " + conversation_arg, id.status());
  }
  std::optional<std::string> cmid;
  if (!client_message_id.empty()) cmid = client_message_id;
  // Safety numbers that changed since the user last heard of it (seen by
  // `listen` or an earlier send): warn before sending, as Signal does.
  SignalEngine* engine = ctx.engine();
  std::vector<IdentityChangeNotice> pending;
  if (engine != nullptr) pending = engine->PendingIdentityChanges();
  if (!pending.empty()) {
    auto conv = client->GetConversation(*id);
    if (conv.ok()) {
      ctx.LearnConversation(*conv);
      for (const v1::Member& m : conv->members()) {
        bool warned = false;
        for (const IdentityChangeNotice& n : pending) {
          if (n.account_id != m.account_id()) continue;
          WarnIdentityChange(ctx, n, "");
          warned = true;
        }
        if (warned) engine->AcknowledgeIdentityChanges(m.account_id());
      }
    }
  }
  auto sent = client->Send(*id, text, cmid);
  if (!sent.ok()) {
    // A refused identity change (verified contact) is why, most likely.
    if (engine != nullptr) {
      for (const IdentityChangeNotice& n : engine->PendingIdentityChanges()) {
        if (n.blocked) WarnIdentityChange(ctx, n, "");
      }
    }
    return ctx.Fail(absl::StrCat("sending to ", *id), sent.status());
  }
  for (const IdentityChangeNotice& n : sent->identity_changes) {
    WarnIdentityChange(ctx, n, "while sending: ");
    if (engine != nullptr) engine->AcknowledgeIdentityChanges(n.account_id);
  }
  if (sent->downgrade_warning) {
    std::cerr << "parley: WARNING: this conversation is no longer end-to-end "
                 "encrypted; the server can read this message"
              << std::endl;
  }
  ctx.Emit(
      absl::StrCat("sent [", *id, " #", sent->seq, "]",
                   sent->duplicate ? " (duplicate: already accepted)" : "",
                   "   ", ProtectionNotice(sent->protection)),
      {{"type", "sent"},
       {"conversation_id", *id},
       {"seq", sent->seq},
       {"server_time_ms", sent->server_time_ms},
       {"client_message_id", sent->client_message_id},
       {"duplicate", sent->duplicate},
       {"downgrade_warning", sent->downgrade_warning},
       {"attempts", sent->attempts},
       {"session_repairs", sent->session_repairs},
       {"e2ee", sent->protection == Protection::kEndToEnd},
       {"protection", ProtectionJsonName(sent->protection)}});
  return kExitOk;
}

int CmdListen(Context& ctx, const ListenArgs& args) {
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  // Names for the conversations we already know (one RPC).
  if (auto convs = client->ListConversations(); convs.ok()) {
    for (const v1::Conversation& c : *convs) ctx.LearnConversation(c);
  }
  g_stop = 0;
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  ReceiveOptions options;
  options.auto_ack = !args.no_ack;
  const bool json = ctx.json();
  options.on_reconnect = [json](const absl::Status& cause, int attempt,
                                absl::Duration delay) {
    if (json) return;
    std::cerr << "parley: connection lost (" << cause.message()
              << "); reconnecting in " << absl::FormatDuration(delay)
              << " (attempt " << attempt << ")" << std::endl;
  };
  auto stream = client->Receive(options);
  if (!stream.ok()) return ctx.Fail("opening the message stream", stream.status());

  ListenDeadline deadline(
      args.timeout > 0 ? absl::Seconds(args.timeout) : absl::InfiniteDuration(),
      absl::Now());
  int handled = 0;
  int exit_code = kExitOk;
  while (!g_stop) {
    const absl::Duration left = deadline.Left(absl::Now());
    if (left <= absl::ZeroDuration()) break;
    auto next = (*stream)->Next(std::min(absl::Milliseconds(250), left));
    if (!next.ok()) {
      if (g_stop) break;
      exit_code = ctx.Fail("receiving messages", next.status());
      break;
    }
    if (!next->has_value()) continue;
    const Event& ev = **next;
    if (ev.kind == Event::Kind::kBacklogDrained) {
      deadline.CaughtUp(absl::Now());
      continue;
    }
    deadline.Activity(absl::Now());
    if (ev.unverifiable_state) {
      ctx.Emit(absl::StrCat("*** WARNING: the server sent an unverifiable "
                            "security state for ",
                            SanitizeForTerminal(ev.message.conversation_id()),
                            "; ignored"),
               {{"type", "unverifiable_security_state"},
                {"conversation_id", ev.message.conversation_id()},
                {"detail", ev.security_warning}});
    }
    if (ev.kind == Event::Kind::kIdentityChange && ev.identity_change) {
      const IdentityChangeNotice& n = *ev.identity_change;
      const std::string name = ctx.Name(n.account_id);
      std::string human = absl::StrCat(
          "*** SAFETY NUMBER CHANGED: ", SanitizeForTerminal(name),
          " (device ", n.device_id, ") has a new identity key");
      absl::StrAppend(
          &human, n.blocked
                      ? absl::StrCat(" \xe2\x80\x94 REFUSED: you had verified ",
                                     SanitizeForTerminal(name),
                                     "; compare `parley verify ",
                                     SanitizeForTerminal(name), "`")
                      : absl::StrCat(" \xe2\x80\x94 compare it: `parley verify ",
                                     SanitizeForTerminal(name), "`"));
      ctx.Emit(human, {{"type", "identity_change"},
                       {"conversation_id", ev.message.conversation_id()},
                       {"account_id", n.account_id},
                       {"username", name},
                       {"device_id", n.device_id},
                       {"was_verified", n.was_verified},
                       {"blocked", n.blocked}});
      ++handled;
      if (args.count > 0 && handled >= args.count) break;
      continue;
    }
    ctx.EnsureConversationNames(ev.message.conversation_id());
    if (ev.kind == Event::Kind::kMembershipChange) {
      // Membership changed: refresh names (new members).
      auto conv = client->GetConversation(ev.message.conversation_id());
      if (conv.ok()) ctx.LearnConversation(*conv);
    }
    auto names = [&ctx](absl::string_view id) { return ctx.Name(id); };
    std::optional<std::string> decrypted;
    if (ev.message.has_ciphertext()) decrypted = ev.text;
    nlohmann::json j = MessageJson(ev.message, names, decrypted);
    j["delivery_id"] = ev.delivery_id;
    std::string line = FormatMessageLine(ev.message, names, decrypted);
    if (ev.message.has_ciphertext() && ev.decrypt_error.empty()) {
      // Message franking: a message whose commitment does not match can be
      // read, but not reported.
      j["reportable"] = ev.reportable;
      if (!ev.reportable) {
        j["unreportable"] = ev.unreportable;
        absl::StrAppend(&line, " [", ev.unreportable, "]");
      }
    }
    if (ev.message.has_ciphertext() && !decrypted) {
      j["decrypt_error"] = ev.decrypt_error;
      if (!ev.decrypt_error.empty()) {
        absl::StrAppend(&line, " [", SanitizeForTerminal(ev.decrypt_error),
                        "]");
      }
    }
    ctx.Emit(line, j);
    ++handled;
    if (args.count > 0 && handled >= args.count) break;
  }
  // Closing acks the last printed event (unless --no-ack) and flushes.
  (*stream)->Close();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  return exit_code;
}

int CmdReport(Context& ctx, const std::string& conversation_arg, uint64_t seq,
              const std::string& reason_arg, const std::string& comment) {
  absl::StatusOr<v1::ReportReason> reason = ParseReportReason(reason_arg);
  if (!reason.ok()) return ctx.Usage(reason.status().message());
  if (seq == 0) return ctx.Usage("SEQ must be a message number (>= 1)");
  if (comment.size() > 1000) {
    return ctx.Usage("--comment is longer than 1000 characters");
  }
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  std::optional<std::string> id = Resolve(ctx, conversation_arg, &rc);
  if (!id) return rc;
  auto result = client->ReportMessage(*id, seq, *reason, comment);
  if (!result.ok()) {
    return ctx.Fail(absl::StrCat("reporting message #", seq, " of ", *id),
                    result.status());
  }
  std::string human = absl::StrCat(
      "reported [", SanitizeForTerminal(*id), " #", seq, "] as ",
      ReportReasonName(*reason), ": report ",
      SanitizeForTerminal(result->report_id));
  if (result->franking_verified) {
    absl::StrAppend(&human, "   (verified by message franking)");
  } else if (!result->revealed) {
    absl::StrAppend(&human,
                    "   (not end-to-end encrypted: the server's copy)");
  }
  ctx.Emit(human, {{"type", "reported"},
                   {"conversation_id", *id},
                   {"seq", seq},
                   {"reason", ReportReasonName(*reason)},
                   {"report_id", result->report_id},
                   {"revealed", result->revealed},
                   {"franking_verified", result->franking_verified}});
  return kExitOk;
}

int CmdHistory(Context& ctx, const std::string& conversation_arg,
               uint32_t limit, uint64_t before) {
  if (limit > 500) return ctx.Usage("--limit must be at most 500");
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  auto id = ctx.ResolveConversation(conversation_arg);
  if (!id.ok()) {
    return absl::IsInvalidArgument(id.status())
               ? ctx.Usage(id.status().message())
               : ctx.Fail("resolving " + conversation_arg, id.status());
  }
  auto page = client->GetHistory(*id, before, limit);
  if (!page.ok()) {
    return ctx.Fail(absl::StrCat("reading history of ", *id), page.status());
  }
  ctx.EnsureConversationNames(*id);
  auto names = [&ctx](absl::string_view account_id) {
    return ctx.Name(account_id);
  };
  // The server sends newest first; print in reading order.
  for (auto it = page->messages.rbegin(); it != page->messages.rend(); ++it) {
    ctx.Emit(FormatMessageLine(*it, names), MessageJson(*it, names));
  }
  if (page->messages.empty()) ctx.EmitHuman("(no messages)");
  if (client->SeenAsE2ee(*id)) {
    ctx.Note(
        "(end-to-end encrypted messages are not kept by the server, so they "
        "are not in this history: `parley listen` shows them as they arrive)");
  }
  if (page->more && !page->messages.empty()) {
    const uint64_t oldest = page->messages.back().seq();
    ctx.Emit(absl::StrCat("(older messages: --before ", oldest, ")"),
             {{"type", "history_more"},
              {"conversation_id", *id},
              {"next_before", oldest}});
  }
  return kExitOk;
}

int CmdVerify(Context& ctx, const std::string& user_arg, bool mark,
              bool unmark) {
  if (mark && unmark) return ctx.Usage("--mark and --unmark exclude each other");
  const std::string username =
      !user_arg.empty() && user_arg[0] == '@' ? user_arg.substr(1) : user_arg;
  if (absl::Status s = ValidateUsername(username); !s.ok()) {
    return ctx.Usage(s.message());
  }
  int rc = kExitOk;
  Client* client = ctx.Connect(true, &rc);
  if (client == nullptr) return rc;
  SignalEngine* engine = ctx.engine();
  auto account = client->GetAccountByUsername(username);
  if (!account.ok()) {
    return ctx.Fail(absl::StrCat("looking up ", username), account.status());
  }
  const std::string& account_id = account->account_id();
  const std::string shown = SanitizeForTerminal(username);
  if (unmark) {
    // Also accepts a changed identity key of a verified contact.
    if (absl::Status s = engine->MarkUnverified(account_id); !s.ok()) {
      return ctx.Fail(absl::StrCat("unmarking ", username), s);
    }
  }
  auto numbers = engine->SafetyNumbers(client->e2ee_host(), account_id);
  if (!numbers.ok()) {
    return ctx.Fail(absl::StrCat("computing the safety number with ", username),
                    numbers.status());
  }
  if (numbers->empty()) {
    std::cerr << "parley: no identity key of " << shown << " is known yet"
              << std::endl;
    return kExitFailed;
  }
  if (mark) {
    if (absl::Status s = engine->MarkVerified(account_id); !s.ok()) {
      return ctx.Fail(absl::StrCat("marking ", username, " verified"), s);
    }
  }
  // The user is looking at the current numbers now.
  engine->AcknowledgeIdentityChanges(account_id);
  auto verified = engine->IsVerified(account_id);
  const bool is_verified = verified.ok() && *verified;
  for (const SafetyNumberInfo& n : *numbers) {
    ctx.Emit(absl::StrCat("safety number with ", shown, " (their device ",
                          n.device_id, ", this device ",
                          ctx.profile().device_id, "): ",
                          GroupDigits(n.digits),
                          n.refused ? "   [NEW KEY, REFUSED: you had "
                                      "verified them; --unmark accepts it]"
                                    : ""),
             {{"type", "safety_number"},
              {"username", username},
              {"account_id", account_id},
              {"device_id", n.device_id},
              {"this_device_id", ctx.profile().device_id},
              {"safety_number", n.digits},
              {"refused", n.refused},
              {"verified", is_verified}});
  }
  ctx.Emit(absl::StrCat(shown, " is ", is_verified ? "VERIFIED" : "not verified",
                        mark ? " (marked now)" : "",
                        unmark ? " (unmarked now)" : ""),
           {{"type", "verification"},
            {"username", username},
            {"account_id", account_id},
            {"verified", is_verified}});
  if (!is_verified) {
    ctx.Note(absl::StrCat(
        "(compare these digits with ", shown,
        " in person or over another trusted channel; if they match, run "
        "`parley verify ", shown, " --mark`)"));
  }
  return kExitOk;
}

}  // namespace parley::cli
