// parley: command-line client for Parley.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// parley [--profile NAME] [--home DIR] [--server HOST:PORT] [--ca FILE]
//        [--insecure] [--json] <command> ...
// Exit codes: 0 ok, 1 failed (server/network/local I/O), 2 invalid input.
// CLI11 reports through exceptions; they are caught here and never leave
// main.
#include <cstdint>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_join.h"
#include "clients/cli/commands.h"
#include "clients/cli/context.h"

namespace parley::cli {
namespace {

int Run(int argc, char** argv) {
  CLI::App app{
      "Parley command-line client. Every message line says whether it is "
      "end-to-end encrypted or readable by the server.",
      "parley"};
  app.fallthrough();
  app.require_subcommand(1);
  app.set_version_flag("--version", "parley 0.1.0");

  GlobalFlags g;
  app.add_option("--profile", g.profile,
                 "profile name: <home>/profiles/NAME (default: default)")
      ->envname("PARLEY_PROFILE");
  app.add_option("--home", g.home,
                 "client home directory (default: $PARLEY_HOME or ~/.parley)");
  app.add_option("--server", g.server,
                 "server HOST:PORT (default: the profile's, else "
                 "127.0.0.1:7443)");
  app.add_option("--ca", g.ca,
                 "PEM CA certificate to trust (parleyd: <data_dir>/tls/ca.pem)");
  app.add_flag("--insecure", g.insecure,
               "plaintext connection; only to a loopback server");
  app.add_flag("--json", g.json, "output one JSON object per line");

  // register
  RegisterArgs reg_args;
  CLI::App* reg = app.add_subcommand("register", "create an account and "
                                                  "this profile's device");
  reg->add_option("username", reg_args.username,
                  "3-32 chars a-z 0-9 _ . - starting with a letter")
      ->required();
  reg->add_option("--display-name", reg_args.display_name, "display name");
  reg->add_option("--kind", reg_args.kind,
                  "personal|business|creator|bot (default personal)");
  reg->add_option("--age-band", reg_args.age_band, "minor|adult|unknown");
  reg->add_option("--region", reg_args.region, "ISO 3166-1 alpha-2 code");
  reg->add_option("--device-name", reg_args.device_name, "name of this device");
  reg->add_flag("--refuse-downgrade", reg_args.refuse_downgrade,
                "never send plaintext into a conversation once it was "
                "verified end-to-end encrypted, even after a verified "
                "downgrade");

  // devices [link-code | remove ID]
  CLI::App* devices = app.add_subcommand("devices", "list this account's "
                                                    "devices");
  devices->require_subcommand(0, 1);
  CLI::App* link_code =
      devices->add_subcommand("link-code", "print a code to link a new device");
  uint32_t remove_id = 0;
  CLI::App* dev_remove = devices->add_subcommand("remove", "remove a device");
  dev_remove->add_option("id", remove_id, "device id")->required();

  // link CODE
  std::string code;
  std::string link_device_name;
  CLI::App* link = app.add_subcommand(
      "link", "make this (new) profile a device of an existing account");
  link->add_option("code", code, "code from `devices link-code`")->required();
  link->add_option("--device-name", link_device_name, "name of this device");

  // chat create USER
  std::string chat_user;
  CLI::App* chat = app.add_subcommand("chat", "direct conversations");
  chat->require_subcommand(1);
  CLI::App* chat_create =
      chat->add_subcommand("create", "open the direct conversation with USER");
  chat_create->add_option("user", chat_user, "username")->required();

  // group create|add|remove
  CLI::App* group = app.add_subcommand("group", "group conversations");
  group->require_subcommand(1);
  std::string group_name;
  std::vector<std::string> group_members;
  CLI::App* group_create = group->add_subcommand("create", "create a group");
  group_create->add_option("name", group_name, "group name")->required();
  group_create->add_option("--members", group_members,
                           "comma-separated usernames")
      ->delimiter(',');
  std::string group_conv;
  std::vector<std::string> add_users;
  CLI::App* group_add = group->add_subcommand("add", "add members");
  group_add->add_option("conversation", group_conv, "conversation id")
      ->required();
  group_add->add_option("users", add_users, "usernames")->required();
  std::string remove_who;
  CLI::App* group_remove =
      group->add_subcommand("remove", "remove a member (yourself: leave)");
  group_remove->add_option("conversation", group_conv, "conversation id")
      ->required();
  group_remove->add_option("member", remove_who, "account id or username")
      ->required();

  // conversations, info
  CLI::App* conversations = app.add_subcommand(
      "conversations",
      "list conversations with their protection mode and its reason");
  std::string info_conv;
  CLI::App* info = app.add_subcommand(
      "info",
      "show one conversation: members, protection mode, reason, rule and "
      "policy revision, notice, scheduled change, E2EE requests");
  info->add_option("conversation", info_conv, "conversation id or @username")
      ->required();

  // secure CONV, insecure CONV [--yes]
  std::string secure_conv;
  CLI::App* secure = app.add_subcommand(
      "secure",
      "ask to turn end-to-end encryption on (as the conversation's policy "
      "allows; may need every participant to ask)");
  secure->add_option("conversation", secure_conv,
                     "conversation id, or @username for the direct "
                     "conversation")
      ->required();
  std::string insecure_conv;
  bool insecure_yes = false;
  CLI::App* insecure = app.add_subcommand(
      "insecure",
      "ask to turn end-to-end encryption off (a downgrade: the server can "
      "then read new messages); asks for confirmation");
  insecure->add_option("conversation", insecure_conv,
                       "conversation id, or @username for the direct "
                       "conversation")
      ->required();
  insecure->add_flag("-y,--yes", insecure_yes,
                     "do not ask for confirmation");

  // send CONV TEXT...
  std::string send_conv;
  std::vector<std::string> send_text;
  std::string send_id;
  CLI::App* send = app.add_subcommand("send", "send a text message");
  send->add_option("conversation", send_conv,
                   "conversation id, or @username for the direct conversation")
      ->required();
  send->add_option("text", send_text, "message text (words are joined)")
      ->required();
  send->add_option("--client-id", send_id,
                   "idempotency key (default: random); a retry with the same "
                   "key within the server's idempotency window (default 7 "
                   "days) is stored once");

  // listen
  ListenArgs listen_args;
  CLI::App* listen = app.add_subcommand(
      "listen", "print messages as they arrive and acknowledge them");
  listen->add_option("--count", listen_args.count,
                     "stop after N messages/events (0: no limit)")
      ->check(CLI::Range(0, 1000000000));
  listen->add_option("--timeout", listen_args.timeout,
                     "stop after SEC seconds without anything new, counted "
                     "once the queued messages have arrived (0: never)")
      ->check(CLI::Range(0, 1000000000));
  listen->add_flag("--no-ack", listen_args.no_ack,
                   "do not acknowledge (messages are delivered again)");

  // history
  std::string history_conv;
  uint32_t history_limit = 0;
  uint64_t history_before = 0;
  CLI::App* history = app.add_subcommand("history", "show stored messages");
  history->add_option("conversation", history_conv,
                      "conversation id or @username")
      ->required();
  history->add_option("--limit", history_limit, "at most N (default 50, max 500)");
  history->add_option("--before", history_before,
                      "only messages with seq < SEQ");

  // verify USER [--mark | --unmark]
  std::string verify_user;
  bool verify_mark = false;
  bool verify_unmark = false;
  CLI::App* verify = app.add_subcommand(
      "verify",
      "show the safety number with USER (compare it with them); --mark once "
      "it matches");
  verify->add_option("user", verify_user, "username")->required();
  verify->add_flag("--mark", verify_mark, "mark USER as verified");
  verify->add_flag("--unmark", verify_unmark,
                   "clear the verified mark (also accepts a changed key)");

  // report CONV SEQ --reason R [--comment TEXT]
  std::string report_conv;
  uint64_t report_seq = 0;
  std::string report_reason;
  std::string report_comment;
  CLI::App* report = app.add_subcommand(
      "report",
      "report message SEQ to the service's moderators (an end-to-end "
      "encrypted message is revealed to them with its franking proof)");
  report->add_option("conversation", report_conv,
                     "conversation id or @username")
      ->required();
  report->add_option("seq", report_seq, "the message's number (#SEQ)")
      ->required();
  report->add_option("--reason", report_reason,
                     "spam, harassment, hate, violence, sexual_content, "
                     "child_safety, self_harm, fraud or other")
      ->required();
  report->add_option("--comment", report_comment,
                     "what the moderators should know (at most 1000 "
                     "characters)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  Context ctx(g);
  if (int rc = ctx.Init(); rc != kExitOk) return rc;

  if (*reg) return CmdRegister(ctx, reg_args);
  if (*devices) {
    if (*link_code) return CmdDeviceLinkCode(ctx);
    if (*dev_remove) return CmdDeviceRemove(ctx, remove_id);
    return CmdDevices(ctx);
  }
  if (*link) return CmdLink(ctx, code, link_device_name);
  if (*chat_create) return CmdChatCreate(ctx, chat_user);
  if (*group_create) return CmdGroupCreate(ctx, group_name, group_members);
  if (*group_add) return CmdGroupAdd(ctx, group_conv, add_users);
  if (*group_remove) return CmdGroupRemove(ctx, group_conv, remove_who);
  if (*conversations) return CmdConversations(ctx);
  if (*info) return CmdInfo(ctx, info_conv);
  if (*secure) return CmdSecure(ctx, secure_conv);
  if (*insecure) return CmdInsecure(ctx, insecure_conv, insecure_yes);
  if (*send) {
    return CmdSend(ctx, send_conv, absl::StrJoin(send_text, " "), send_id);
  }
  if (*listen) return CmdListen(ctx, listen_args);
  if (*history) {
    return CmdHistory(ctx, history_conv, history_limit, history_before);
  }
  if (*verify) return CmdVerify(ctx, verify_user, verify_mark, verify_unmark);
  if (*report) {
    return CmdReport(ctx, report_conv, report_seq, report_reason,
                     report_comment);
  }
  std::cerr << "parley: no command given (see --help)" << std::endl;
  return kExitUsage;
}

}  // namespace
}  // namespace parley::cli

int main(int argc, char** argv) {
  try {
    return parley::cli::Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "parley: internal error: " << e.what() << std::endl;
    return parley::cli::kExitFailed;
  }
}
