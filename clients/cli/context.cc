// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/cli/context.h"

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "clients/sdk/display.h"
#include "clients/sdk/parse.h"

namespace parley::cli {
namespace {

std::string Absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char buf[4096];
  if (::getcwd(buf, sizeof buf) == nullptr) return path;
  return absl::StrCat(buf, "/", path);
}

}  // namespace

int Context::Init() {
  if (absl::Status s = ValidateProfileName(flags_.profile); !s.ok()) {
    return Usage(s.message());
  }
  std::string home = flags_.home;
  if (home.empty()) {
    if (const char* env = std::getenv("PARLEY_HOME"); env && *env) home = env;
  }
  if (home.empty()) {
    const char* user_home = std::getenv("HOME");
    if (user_home == nullptr || *user_home == '\0') {
      return Usage("cannot find a home directory: set --home, PARLEY_HOME or "
                   "HOME");
    }
    home = absl::StrCat(user_home, "/.parley");
  }
  profile_dir_ = absl::StrCat(Absolute(home), "/profiles/", flags_.profile);
  auto loaded = Profile::Load(profile_dir_);
  if (loaded.ok()) {
    profile_ = *std::move(loaded);
  } else if (absl::IsNotFound(loaded.status())) {
    profile_ = Profile();
    profile_.dir = profile_dir_;
  } else {
    return Fail(absl::StrCat("loading profile ", flags_.profile),
                loaded.status());
  }
  return kExitOk;
}

Client* Context::Connect(bool need_registered, int* exit_code) {
  if (client_) return client_.get();
  if (need_registered && !profile_.registered()) {
    std::cerr << "parley: profile \"" << flags_.profile << "\" ("
              << profile_dir_
              << ") has no account: run `parley --profile " << flags_.profile
              << " register USERNAME` or `link CODE` first" << std::endl;
    *exit_code = kExitFailed;
    return nullptr;
  }
  ConnectOptions options;
  if (!flags_.server.empty()) {
    options.server = flags_.server;
  } else if (!profile_.server.empty()) {
    options.server = profile_.server;
  }
  if (!flags_.ca.empty()) {
    options.ca_file = Absolute(flags_.ca);
    options.insecure = flags_.insecure;
  } else {
    options.ca_file = profile_.ca_file;
    options.insecure = flags_.insecure || profile_.insecure;
  }
  if (options.insecure && !flags_.ca.empty() && flags_.insecure) {
    *exit_code = Usage("--ca and --insecure exclude each other");
    return nullptr;
  }
  if (options.insecure) options.ca_file.clear();
  if (absl::Status s = ValidateConnectOptions(options); !s.ok()) {
    std::string msg(s.message());
    if (options.ca_file.empty() && !options.insecure) {
      msg = "no CA file: pass --ca FILE (parleyd writes <data_dir>/tls/ca.pem)"
            " or --insecure for a plaintext loopback server";
    }
    *exit_code = Usage(msg);
    return nullptr;
  }
  // End-to-end encryption: the keys live in <profile>/e2ee. The key store
  // is opened per operation so that several parley processes can use the
  // profile at once (e.g. `listen` in one terminal, `send` in another).
  SignalEngineOptions engine_options;
  engine_options.keep_open = false;
  auto engine = SignalEngine::Create(absl::StrCat(profile_dir_, "/e2ee"),
                                     engine_options);
  if (!engine.ok()) {
    *exit_code = Fail("setting up end-to-end encryption", engine.status());
    return nullptr;
  }
  engine_ = *std::move(engine);
  options.e2ee = engine_;
  auto client = Client::Create(profile_, std::move(options));
  if (!client.ok()) {
    *exit_code = Fail("connecting", client.status());
    return nullptr;
  }
  client_ = *std::move(client);
  return client_.get();
}

void Context::Emit(absl::string_view human, const nlohmann::json& json) const {
  if (flags_.json) {
    std::cout << JsonLine(json) << std::endl;
  } else {
    std::cout << human << std::endl;
  }
}

void Context::EmitHuman(absl::string_view human) const {
  if (!flags_.json) std::cout << human << std::endl;
}

int Context::Fail(absl::string_view what, const absl::Status& status) const {
  std::cerr << "parley: " << what << " failed: " << status.message() << " ["
            << absl::StatusCodeToString(status.code()) << "]" << std::endl;
  return kExitFailed;
}

int Context::Usage(absl::string_view message) const {
  std::cerr << "parley: " << message << std::endl;
  return kExitUsage;
}

void Context::Note(absl::string_view message) const {
  if (!flags_.json) std::cerr << message << std::endl;
}

void Context::LearnConversation(const v1::Conversation& conversation) {
  for (const v1::Member& m : conversation.members()) {
    if (!m.username().empty()) names_[m.account_id()] = m.username();
  }
  fetched_conversations_[conversation.conversation_id()] = true;
}

void Context::EnsureConversationNames(const std::string& conversation_id) {
  if (!client_ || fetched_conversations_.contains(conversation_id)) return;
  fetched_conversations_[conversation_id] = true;
  auto conv = client_->GetConversation(conversation_id);
  if (conv.ok()) LearnConversation(*conv);
}

std::string Context::Name(absl::string_view account_id) {
  if (account_id.empty()) return "";
  if (account_id == profile_.account_id && !profile_.username.empty()) {
    return profile_.username;
  }
  if (auto it = names_.find(account_id); it != names_.end()) return it->second;
  std::string name(account_id);
  if (client_) {
    auto account = client_->GetAccountById(std::string(account_id));
    if (account.ok() && !account->username().empty()) {
      name = account->username();
    }
  }
  names_[std::string(account_id)] = name;  // also caches failures
  return name;
}

absl::StatusOr<std::string> Context::ResolveConversation(
    const std::string& arg) {
  if (arg.empty()) return absl::InvalidArgumentError("empty conversation id");
  if (arg[0] != '@') return arg;
  const std::string username = arg.substr(1);
  if (absl::Status s = ValidateUsername(username); !s.ok()) return s;
  auto direct = client_->CreateDirect(username);
  if (!direct.ok()) return direct.status();
  LearnConversation(direct->conversation);
  if (direct->created) {
    Note(absl::StrCat("(created direct conversation ",
                      direct->conversation.conversation_id(), " with @",
                      username, ")"));
  }
  return direct->conversation.conversation_id();
}

}  // namespace parley::cli
