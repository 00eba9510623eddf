// Shared state of one `parley` CLI invocation: global flags, the profile,
// the connection, output (human or JSON lines) and exit codes.
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_CLIENTS_CLI_CONTEXT_H_
#define PARLEY_CLIENTS_CLI_CONTEXT_H_

#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/sdk/client.h"
#include "clients/sdk/signal_engine.h"
#include "nlohmann/json.hpp"

namespace parley::cli {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;   // server, network or local I/O error
inline constexpr int kExitUsage = 2;    // invalid flags or values

struct GlobalFlags {
  std::string profile = "default";
  std::string home;    // --home; else $PARLEY_HOME; else ~/.parley
  std::string server;  // --server override
  std::string ca;      // --ca override
  bool insecure = false;
  bool json = false;
};

class Context {
 public:
  explicit Context(GlobalFlags flags) : flags_(std::move(flags)) {}

  // Resolves the home and profile directory and loads the profile if it has
  // credentials. Returns an exit code (kExitOk on success) after printing.
  int Init();

  const GlobalFlags& flags() const { return flags_; }
  bool json() const { return flags_.json; }
  const std::string& profile_dir() const { return profile_dir_; }
  const Profile& profile() const { return profile_; }

  // Connects. `need_registered`: fail (exit 1) when the profile has no
  // credentials. On failure prints and returns nullptr with *exit_code set.
  Client* Connect(bool need_registered, int* exit_code);
  Client* client() { return client_.get(); }
  // The profile's end-to-end encryption engine (<profile>/e2ee); null
  // before Connect.
  SignalEngine* engine() { return engine_.get(); }

  // Output: one line to stdout (flushed), human text or a JSON object.
  void Emit(absl::string_view human, const nlohmann::json& json) const;
  void EmitHuman(absl::string_view human) const;  // skipped in JSON mode
  // Prints "parley: <what> failed: <status message> [CODE]" to stderr and
  // returns kExitFailed.
  int Fail(absl::string_view what, const absl::Status& status) const;
  int Usage(absl::string_view message) const;
  // Informational note on stderr (human mode only).
  void Note(absl::string_view message) const;

  // Account id -> username, from conversation members and GetAccount.
  void LearnConversation(const v1::Conversation& conversation);
  void EnsureConversationNames(const std::string& conversation_id);
  std::string Name(absl::string_view account_id);

  // CONV argument: a conversation id, or "@username" for the direct
  // conversation with that user (created if needed).
  absl::StatusOr<std::string> ResolveConversation(const std::string& arg);

 private:
  GlobalFlags flags_;
  std::string profile_dir_;
  Profile profile_;
  std::shared_ptr<SignalEngine> engine_;
  std::unique_ptr<Client> client_;
  std::map<std::string, std::string, std::less<>> names_;
  std::map<std::string, bool, std::less<>> fetched_conversations_;
};

}  // namespace parley::cli

#endif  // PARLEY_CLIENTS_CLI_CONTEXT_H_
