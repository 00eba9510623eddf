// The `parley` CLI commands. Each returns a process exit code (context.h).
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_CLIENTS_CLI_COMMANDS_H_
#define PARLEY_CLIENTS_CLI_COMMANDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "clients/cli/context.h"

namespace parley::cli {

struct RegisterArgs {
  std::string username;
  std::string display_name;
  std::string kind = "personal";
  std::string age_band;  // empty: unspecified (server: unknown)
  std::string region;
  std::string device_name;
  // Never send plaintext into a conversation once verified as E2EE, even
  // after a verified downgrade (saved in the profile).
  bool refuse_downgrade = false;
};
int CmdRegister(Context& ctx, const RegisterArgs& args);

int CmdDevices(Context& ctx);
int CmdDeviceLinkCode(Context& ctx);
int CmdDeviceRemove(Context& ctx, uint32_t device_id);
int CmdLink(Context& ctx, const std::string& code,
            const std::string& device_name);

int CmdChatCreate(Context& ctx, const std::string& username);
int CmdGroupCreate(Context& ctx, const std::string& title,
                   const std::vector<std::string>& members);
int CmdGroupAdd(Context& ctx, const std::string& conversation,
                const std::vector<std::string>& usernames);
int CmdGroupRemove(Context& ctx, const std::string& conversation,
                   const std::string& who);

int CmdConversations(Context& ctx);
int CmdInfo(Context& ctx, const std::string& conversation);

// Asks to turn end-to-end encryption on (Client::EnableE2ee).
int CmdSecure(Context& ctx, const std::string& conversation);
// Asks to turn end-to-end encryption off (a downgrade): warns and asks for
// confirmation on the terminal unless `yes`.
int CmdInsecure(Context& ctx, const std::string& conversation, bool yes);

int CmdSend(Context& ctx, const std::string& conversation,
            const std::string& text, const std::string& client_message_id);

struct ListenArgs {
  int count = 0;         // 0: unlimited
  double timeout = 0;    // seconds of inactivity; 0: forever
  bool no_ack = false;
};
int CmdListen(Context& ctx, const ListenArgs& args);

int CmdHistory(Context& ctx, const std::string& conversation, uint32_t limit,
               uint64_t before);

// Shows the safety numbers with USER's devices; `mark`: marks USER verified
// (after comparing), `unmark`: clears it (also accepts a changed identity
// key of a verified contact).
int CmdVerify(Context& ctx, const std::string& user, bool mark, bool unmark);

// Reports message SEQ (Client::ReportMessage): with its franking reveal when
// this device received it end-to-end encrypted, else in transport mode.
// `reason`: ParseReportReason (invalid -> usage error).
int CmdReport(Context& ctx, const std::string& conversation, uint64_t seq,
              const std::string& reason, const std::string& comment);

}  // namespace parley::cli

#endif  // PARLEY_CLIENTS_CLI_COMMANDS_H_
