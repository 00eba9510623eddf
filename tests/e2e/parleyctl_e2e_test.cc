// End to end: the real parleyctl against a real parleyd subprocess (users
// and conversations made with the real `parley`). Checks exit codes (0 ok,
// 1 failed, 2 invalid input), stdout/stderr and the --json documents.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/subprocess.h"

namespace parley {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using testing::Parleyd;
using testing::RunResult;

std::string Preset(const std::string& name) { return std::string(PARLEY_PRESETS_DIR) + "/" + name + ".yaml"; }

// Parses a whole output as one JSON document; null when it is not JSON.
nlohmann::json Doc(const std::string& out) {
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) return nullptr;
  return j;
}

// One JSON object per line (parley --json).
std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    if (!j.is_discarded()) v.push_back(j);
  }
  return v;
}

// A loopback port nobody listens on (bound, read, closed).
int UnusedLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

class ParleyctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parleyctl_e2e_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    server_ = std::make_unique<Parleyd>(PARLEYD_BIN, dir_ + "/data", dir_);
    ASSERT_GT(server_->port(), 0) << server_->log();
    ASSERT_GT(server_->admin_port(), 0) << server_->log();
    token_ = server_->operator_token_file();
    ASSERT_TRUE(std::filesystem::exists(token_)) << server_->log();
  }
  void TearDown() override {
    if (server_) {
      server_->process().Kill(SIGTERM);
      EXPECT_EQ(server_->process().Wait(std::chrono::seconds(20)), 0) << "parleyd did not stop cleanly";
    }
    std::filesystem::remove_all(dir_);
  }

  // `parleyctl --server ADMIN --ca CA --token-file TOKEN --timeout 20 ARGS...`
  RunResult Ctl(std::vector<std::string> args, const std::string& token_file = "") {
    std::vector<std::string> argv = {PARLEYCTL_BIN,  "--server",   server_->admin_target(),
                                     "--ca",         server_->ca_file(), "--token-file",
                                     token_file.empty() ? token_ : token_file, "--timeout", "20"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::Run(argv, dir_);
  }
  // Same with --json; the output must be exactly one JSON document.
  nlohmann::json CtlJson(std::vector<std::string> args, int want_code = 0, const std::string& token_file = "") {
    args.insert(args.begin(), "--json");
    RunResult r = Ctl(args, token_file);
    EXPECT_EQ(r.code, want_code) << "stdout: " << r.out << "\nstderr: " << r.err;
    nlohmann::json j = Doc(r.out);
    EXPECT_FALSE(j.is_null()) << "not one JSON document: " << r.out;
    return j;
  }
  // `parley --profile P [--server --ca] ARGS...`
  RunResult Parley(const std::string& profile, std::vector<std::string> args, bool with_server = false) {
    std::vector<std::string> argv = {PARLEY_BIN, "--profile", profile};
    if (with_server) argv.insert(argv.end(), {"--server", server_->target(), "--ca", server_->ca_file()});
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::Run(argv, dir_, {"PARLEY_HOME=" + dir_ + "/home"});
  }
  std::string WriteFile(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << content;
    return path;
  }
  // alice and bob registered, their direct conversation created; its id.
  std::string AliceAndBob() {
    RunResult r = Parley("alice", {"register", "alice"}, true);
    EXPECT_EQ(r.code, 0) << r.err;
    r = Parley("bob", {"register", "bob"}, true);
    EXPECT_EQ(r.code, 0) << r.err;
    r = Parley("alice", {"--json", "chat", "create", "bob"});
    EXPECT_EQ(r.code, 0) << r.err;
    auto lines = JsonLines(r.out);
    if (lines.empty()) return "";
    return lines[0].value("conversation_id", "");
  }

  std::string dir_, token_;
  std::unique_ptr<Parleyd> server_;
};

// A policy document with a bad mode on line 6.
constexpr char kBrokenPolicy[] =
    "version: 1\n"
    "name: broken\n"
    "rules:\n"
    "  - id: default\n"
    "    reason: a test document\n"
    "    mode: sometimes\n";

TEST_F(ParleyctlTest, InspectValidateAndConnectionErrors) {
  // whoami with the initial operator token; the secret is never printed.
  const std::string secret = testing::Slurp(token_);
  RunResult r = Ctl({"whoami"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("initial-operator"));
  EXPECT_THAT(r.out, HasSubstr("(operator)"));
  EXPECT_THAT(r.out + r.err, Not(HasSubstr(secret.substr(0, 40))));
  nlohmann::json j = CtlJson({"whoami"});
  EXPECT_EQ(j["token"]["name"], "initial-operator");
  EXPECT_EQ(j["token"]["role"], "operator");
  EXPECT_EQ(j["token"]["revoked"], false);
  EXPECT_THAT(j.dump(), Not(HasSubstr(secret.substr(0, 40))));

  // The token file can come from the environment.
  {
    std::vector<std::string> argv = {PARLEYCTL_BIN, "--server", server_->admin_target(), "--ca",
                                     server_->ca_file(), "whoami"};
    r = testing::Run(argv, dir_, {"PARLEYCTL_TOKEN_FILE=" + token_});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("initial-operator"));
  }

  // The server's first policy: revision 1, messenger-2016.
  r = Ctl({"policy", "show"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("#1, current"));
  EXPECT_THAT(r.out, HasSubstr("name      messenger-2016"));
  EXPECT_THAT(r.out, HasSubstr("direct-opt-in"));
  j = CtlJson({"policy", "show"});
  EXPECT_EQ(j["revision"]["number"], 1);
  EXPECT_EQ(j["revision"]["name"], "messenger-2016");
  EXPECT_EQ(j["revision"]["current"], true);
  EXPECT_EQ(j["revision"]["rollback_of"], 0);
  EXPECT_THAT(j["revision"]["revision_id"].get<std::string>(), StartsWith("r1-"));
  EXPECT_THAT(j["content"].get<std::string>(), HasSubstr("name: messenger-2016"));
  j = CtlJson({"policy", "show", "--revision", "1"});
  EXPECT_EQ(j["revision"]["number"], 1);
  r = Ctl({"policy", "show", "--revision", "7"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("not found"));
  EXPECT_THAT(r.err, HasSubstr("[NOT_FOUND]"));

  // validate: local, exit 0 for every preset.
  for (const char* name : {"signal", "tiktok", "instagram-2026", "messenger-2016", "telegram", "whatsapp",
                           "protect-minors"}) {
    r = Ctl({"policy", "validate", Preset(name)});
    EXPECT_EQ(r.code, 0) << name << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr(": valid (")) << name;
  }
  j = CtlJson({"policy", "validate", Preset("signal")});
  EXPECT_EQ(j["valid"], true);
  EXPECT_EQ(j["name"], "signal");
  EXPECT_EQ(j["rules"], nlohmann::json::array({"default"}));
  // validate needs no server at all.
  r = testing::Run({PARLEYCTL_BIN, "--server", "127.0.0.1:1", "--ca", "/nonexistent", "--token-file",
                    "/nonexistent", "policy", "validate", Preset("tiktok")},
                   dir_);
  EXPECT_EQ(r.code, 0) << r.err;

  // A broken document: exit 2, errors name file:line.
  const std::string broken = WriteFile("broken.yaml", kBrokenPolicy);
  r = Ctl({"policy", "validate", broken});
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(broken + ":6:"));
  EXPECT_THAT(r.err, HasSubstr("invalid policy (1 error)"));
  EXPECT_THAT(r.err, HasSubstr("[INVALID_ARGUMENT]"));
  j = CtlJson({"policy", "validate", broken}, 2);
  EXPECT_EQ(j["valid"], false);
  ASSERT_TRUE(j["errors"].is_array());
  ASSERT_EQ(j["errors"].size(), 1u) << j.dump();
  EXPECT_THAT(j["errors"][0].get<std::string>(), StartsWith(broken + ":6:"));
  EXPECT_EQ(j["error"]["code"], "INVALID_ARGUMENT");
  // Not YAML at all, a missing file, a directory.
  r = Ctl({"policy", "validate", WriteFile("junk.yaml", "rules: [unclosed\n")});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("junk.yaml:"));
  r = Ctl({"policy", "validate", dir_ + "/missing.yaml"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot read policy file"));
  r = Ctl({"policy", "validate", dir_});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("is a directory"));

  // history: one revision, by parleyd.
  r = Ctl({"policy", "history"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(* current)"));
  j = CtlJson({"policy", "history"});
  ASSERT_EQ(j["revisions"].size(), 1u) << j.dump();
  EXPECT_EQ(j["revisions"][0]["number"], 1);
  EXPECT_EQ(j["revisions"][0]["current"], true);
  EXPECT_EQ(j["revisions"][0]["name"], "messenger-2016");

  // Usage errors: exit 2.
  EXPECT_EQ(Ctl({}).code, 2);
  EXPECT_EQ(Ctl({"no-such-command"}).code, 2);
  EXPECT_EQ(Ctl({"policy"}).code, 2);
  r = Ctl({"--json", "policy", "frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(Doc(r.out)["error"]["code"], "INVALID_ARGUMENT") << r.out;
  r = testing::Run({PARLEYCTL_BIN, "--server", "no-port", "--ca", server_->ca_file(), "--token-file", token_,
                    "whoami"},
                   dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("invalid --server"));
  r = testing::Run({PARLEYCTL_BIN, "--server", server_->admin_target(), "--ca", dir_ + "/no-ca.pem",
                    "--token-file", token_, "whoami"},
                   dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot read CA file"));
  r = testing::Run({PARLEYCTL_BIN, "--server", server_->admin_target(), "--ca", token_, "--token-file",
                    token_, "whoami"},
                   dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("holds no PEM certificate"));

  // Token files: missing, empty, not one token (exit 2, never echoed);
  // well-formed but unknown (the server says UNAUTHENTICATED: exit 1).
  r = Ctl({"whoami"}, dir_ + "/no-such.token");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot read admin token file"));
  r = Ctl({"whoami"}, WriteFile("empty.token", "\n  \n"));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("is empty"));
  r = Ctl({"whoami"}, WriteFile("garbage.token", "hunter2 correct horse\n"));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("does not hold a single token"));
  EXPECT_THAT(r.err, Not(HasSubstr("hunter2")));
  r = Ctl({"whoami"}, WriteFile("unknown.token", "garbage-but-printable\n"));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("[UNAUTHENTICATED]"));
  EXPECT_THAT(r.err, HasSubstr("--token-file"));
  EXPECT_THAT(r.err, Not(HasSubstr("garbage-but-printable")));
  std::string fake = "padm_" + std::string(64, 'a');
  r = Ctl({"whoami"}, WriteFile("fake.token", fake + "\n"));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("unknown admin token"));
  EXPECT_THAT(r.err, Not(HasSubstr(fake)));

  // Nobody listening: exit 1, "cannot reach".
  const int port = UnusedLoopbackPort();
  ASSERT_GT(port, 0);
  const std::string nowhere = "127.0.0.1:" + std::to_string(port);
  r = testing::Run({PARLEYCTL_BIN, "--server", nowhere, "--ca", server_->ca_file(), "--token-file", token_,
                    "--timeout", "10", "whoami"},
                   dir_);
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot reach parleyd admin at " + nowhere));
  EXPECT_THAT(r.err, HasSubstr("[UNAVAILABLE]"));
  r = testing::Run({PARLEYCTL_BIN, "--json", "--server", nowhere, "--ca", server_->ca_file(), "--token-file",
                    token_, "--timeout", "10", "policy", "history"},
                   dir_);
  EXPECT_EQ(r.code, 1);
  j = Doc(r.out);
  EXPECT_EQ(j["error"]["code"], "UNAVAILABLE") << r.out;
  EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr("cannot reach"));
}

TEST_F(ParleyctlTest, PlanApplyDiffRollback) {
  const std::string conv = AliceAndBob();
  ASSERT_THAT(conv, StartsWith("c_"));

  // plan signal.yaml: the one direct chat moves opt-in -> e2ee.
  nlohmann::json j = CtlJson({"policy", "plan", Preset("signal")});
  const nlohmann::json& plan = j["plan"];
  EXPECT_EQ(plan["conversations"], 1) << j.dump();
  EXPECT_EQ(plan["unchanged"], 0) << j.dump();
  ASSERT_EQ(plan["transitions"].size(), 1u) << j.dump();
  EXPECT_EQ(plan["transitions"][0]["from"], "opt-in");
  EXPECT_EQ(plan["transitions"][0]["to"], "e2ee");
  EXPECT_EQ(plan["transitions"][0]["count"], 1);
  EXPECT_EQ(plan["transitions"][0]["sample_ids"], nlohmann::json::array({conv}));
  EXPECT_EQ(plan["rules"], nlohmann::json::parse(R"([{"rule_id":"default","count":1}])"));
  EXPECT_EQ(plan["downgrades"].size(), 0u);
  EXPECT_EQ(plan["candidate_hash"].get<std::string>().size(), 64u);
  RunResult r = Ctl({"policy", "plan", Preset("signal")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1 conversations evaluated"));
  EXPECT_THAT(r.out, HasSubstr("opt-in \u2192 e2ee"));
  EXPECT_THAT(r.out, HasSubstr(conv));
  EXPECT_EQ(r.err, "");  // no progress bar when stderr is not a terminal

  // Planning changed nothing.
  j = CtlJson({"policy", "explain", conv});
  EXPECT_EQ(j["current"]["mode"], "opt-in") << j.dump();
  EXPECT_EQ(j["decided_mode"], "opt-in");
  EXPECT_EQ(j["would_change"], false);
  EXPECT_EQ(j["kind"], "direct");
  EXPECT_EQ(j["member_count"], 2);
  EXPECT_THAT(j["policy_revision"].get<std::string>(), StartsWith("r1-"));
  j = CtlJson({"policy", "explain", conv, "--policy", Preset("signal")});
  EXPECT_EQ(j["current"]["mode"], "opt-in") << j.dump();
  EXPECT_EQ(j["decided_mode"], "e2ee");
  EXPECT_EQ(j["would_change"], true);
  r = Ctl({"policy", "explain", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("stored        opt-in"));
  EXPECT_THAT(r.out, HasSubstr("would change  no"));
  r = Ctl({"policy", "explain", "c_000000000000000000000000"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("not found"));
  EXPECT_EQ(CtlJson({"policy", "history"})["revisions"].size(), 1u);
  r = Parley("alice", {"--json", "info", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(JsonLines(r.out).at(0)["mode"], "opt-in");

  // apply signal.yaml.
  j = CtlJson({"policy", "apply", Preset("signal"), "-m", "go e2ee"});
  EXPECT_EQ(j["revision"]["number"], 2) << j.dump();
  EXPECT_EQ(j["revision"]["name"], "signal");
  EXPECT_EQ(j["revision"]["comment"], "go e2ee");
  EXPECT_EQ(j["revision"]["author"], "initial-operator");
  EXPECT_EQ(j["revision"]["current"], true);
  EXPECT_EQ(j["conversations_changed"], 1);
  const std::string r2 = j["revision"]["revision_id"].get<std::string>();
  EXPECT_THAT(r2, StartsWith("r2-"));
  j = CtlJson({"policy", "explain", conv});
  EXPECT_EQ(j["current"]["mode"], "e2ee") << j.dump();
  EXPECT_EQ(j["would_change"], false);
  EXPECT_EQ(j["policy_revision"], r2);

  // The users see it: info says E2EE, plaintext is refused, bob gets the event.
  r = Parley("alice", {"info", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("mode:         e2ee (end-to-end encrypted)"));
  EXPECT_THAT(r.out, HasSubstr(r2));
  r = Parley("alice", {"--json", "info", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  auto info = JsonLines(r.out);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0]["e2ee"], true);
  EXPECT_EQ(info[0]["security"]["locked"], true);
  // The client never sends plaintext now: the message goes out end-to-end
  // encrypted.
  r = Parley("alice", {"send", conv, "after the switch"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(end-to-end encrypted)"));
  r = Parley("bob", {"--json", "listen", "--count", "5", "--timeout", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<nlohmann::json> events;
  for (const auto& e : JsonLines(r.out)) {
    if (e.value("type", "") == "security_change") events.push_back(e);
    if (e.value("type", "") == "message") {
      EXPECT_EQ(e["e2ee"], true) << "plaintext got through: " << e.dump();
    }
  }
  ASSERT_EQ(events.size(), 1u) << r.out;
  EXPECT_EQ(events[0]["conversation_id"], conv);
  EXPECT_EQ(events[0]["old_mode"], "opt-in");
  EXPECT_EQ(events[0]["new_mode"], "e2ee");
  EXPECT_EQ(events[0]["upgrade"], true);
  EXPECT_EQ(events[0]["downgrade"], false);
  EXPECT_EQ(events[0]["policy_revision"], r2);
  EXPECT_EQ(events[0]["rule_id"], "default");

  // diff against tiktok: a unified diff with -/+ lines and a rule summary.
  r = Ctl({"policy", "diff", Preset("tiktok")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("--- current (" + r2 + ")"));
  EXPECT_THAT(r.out, HasSubstr("+++ " + Preset("tiktok")));
  EXPECT_THAT(r.out, HasSubstr("\n-name: signal\n"));
  EXPECT_THAT(r.out, HasSubstr("\n+name: tiktok\n"));
  EXPECT_THAT(r.out, HasSubstr("\n-    mode: e2ee\n"));
  EXPECT_THAT(r.out, HasSubstr("\n+    mode: transport\n"));
  EXPECT_THAT(r.out, HasSubstr("rules: same ids in the same order (default)"));
  j = CtlJson({"policy", "diff", Preset("tiktok")});
  EXPECT_EQ(j["different"], true);
  EXPECT_EQ(j["current_revision"], r2);
  EXPECT_EQ(j["rules_added"], nlohmann::json::array());
  r = Ctl({"policy", "diff", Preset("signal")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("no differences"));
  r = Ctl({"policy", "diff", Preset("messenger-2016")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("rules added: direct-opt-in"));

  // Refused applies leave no revision: the current document again, no -m,
  // a blank -m, a broken file.
  r = Ctl({"policy", "apply", Preset("signal"), "-m", "again"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("[ALREADY_EXISTS]"));
  EXPECT_THAT(r.err, HasSubstr(r2));
  const std::string broken = WriteFile("broken.yaml", kBrokenPolicy);
  r = Ctl({"policy", "apply", Preset("tiktok")});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--message"));
  r = Ctl({"policy", "apply", Preset("tiktok"), "-m", "   "});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("a comment is required"));
  r = Ctl({"policy", "apply", broken, "-m", "oops"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(broken + ":6:"));
  r = Ctl({"policy", "apply", dir_ + "/missing.yaml", "-m", "oops"});
  EXPECT_EQ(r.code, 2) << r.err;
  j = CtlJson({"policy", "history"});
  ASSERT_EQ(j["revisions"].size(), 2u) << j.dump();
  EXPECT_EQ(j["revisions"][0]["number"], 2);
  EXPECT_EQ(j["revisions"][0]["current"], true);
  EXPECT_EQ(CtlJson({"policy", "show"})["revision"]["revision_id"], r2);

  // rollback to revision 1: revision 3 restores its content.
  r = Ctl({"policy", "rollback", "1"});
  EXPECT_EQ(r.code, 2);  // -m is required
  r = Ctl({"policy", "rollback", "r1-zz", "-m", "back"});
  EXPECT_EQ(r.code, 2);
  r = Ctl({"policy", "rollback", "r1-00000000", "-m", "back"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("does not match"));
  r = Ctl({"policy", "rollback", "9", "-m", "back"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("[NOT_FOUND]"));
  j = CtlJson({"policy", "rollback", "1", "-m", "back"});
  EXPECT_EQ(j["revision"]["number"], 3) << j.dump();
  EXPECT_EQ(j["revision"]["rollback_of"], 1);
  EXPECT_EQ(j["revision"]["name"], "messenger-2016");
  EXPECT_EQ(j["revision"]["comment"], "back");
  const std::string r3 = j["revision"]["revision_id"].get<std::string>();
  EXPECT_THAT(r3, StartsWith("r3-"));
  j = CtlJson({"policy", "history"});
  ASSERT_EQ(j["revisions"].size(), 3u) << j.dump();
  EXPECT_EQ(j["revisions"][0]["rollback_of"], 1);
  EXPECT_EQ(j["revisions"][0]["content_hash"], j["revisions"][2]["content_hash"]);
  EXPECT_EQ(j["revisions"][0]["previous_hash"], j["revisions"][1]["content_hash"]);
  r = Ctl({"policy", "history"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("back (rollback of r1)"));
  EXPECT_THAT(r.out, HasSubstr("go e2ee"));
  r = Ctl({"policy", "rollback", "r3", "-m", "same again"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("[ALREADY_EXISTS]"));
  EXPECT_EQ(CtlJson({"policy", "history"})["revisions"].size(), 3u);
  // The once-E2EE chat stays E2EE (messenger-2016: never turned off).
  j = CtlJson({"policy", "explain", conv});
  EXPECT_EQ(j["current"]["mode"], "e2ee") << j.dump();
  EXPECT_EQ(j["would_change"], false);

  // A group made now is transport under the restored policy.
  ASSERT_EQ(Parley("carol", {"register", "carol"}, true).code, 0);
  r = Parley("alice", {"--json", "group", "create", "friends", "--members", "bob,carol"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string group = JsonLines(r.out).at(0)["conversation_id"].get<std::string>();

  // conversations list, with and without --mode.
  j = CtlJson({"conversations", "list"});
  ASSERT_EQ(j["conversations"].size(), 2u) << j.dump();
  EXPECT_EQ(j["more"], false);
  j = CtlJson({"conversations", "list", "--mode", "e2ee"});
  ASSERT_EQ(j["conversations"].size(), 1u) << j.dump();
  EXPECT_EQ(j["conversations"][0]["conversation_id"], conv);
  EXPECT_EQ(j["conversations"][0]["kind"], "direct");
  EXPECT_EQ(j["conversations"][0]["member_count"], 2);
  EXPECT_EQ(j["conversations"][0]["security"]["mode"], "e2ee");
  j = CtlJson({"conversations", "list", "--mode", "transport"});
  ASSERT_EQ(j["conversations"].size(), 1u) << j.dump();
  EXPECT_EQ(j["conversations"][0]["conversation_id"], group);
  EXPECT_EQ(j["conversations"][0]["kind"], "group");
  EXPECT_EQ(j["conversations"][0]["member_count"], 3);
  EXPECT_EQ(j["conversations"][0]["security"]["rule_id"], "default");
  EXPECT_EQ(j["conversations"][0]["security"]["policy_revision"], r3);
  j = CtlJson({"conversations", "list", "--mode", "opt-in"});
  EXPECT_EQ(j["conversations"].size(), 0u) << j.dump();
  j = CtlJson({"conversations", "list", "--limit", "1"});
  EXPECT_EQ(j["conversations"].size(), 1u) << j.dump();
  EXPECT_EQ(j["more"], true);
  r = Ctl({"conversations", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("ID"));
  EXPECT_THAT(r.out, HasSubstr(conv));
  EXPECT_THAT(r.out, HasSubstr(group));
  EXPECT_THAT(r.out, HasSubstr("2 conversations\n"));
  r = Ctl({"conversations", "list", "--mode", "secret"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown mode"));

  // The audit log has the applies, the rollback and the admin calls.
  j = CtlJson({"audit", "tail", "-n", "1000"});
  ASSERT_TRUE(j["records"].is_array()) << j.dump();
  int policy_apply = 0, admin_apply_ok = 0, admin_apply_refused = 0, rollbacks = 0;
  uint64_t last_seq = 0;
  for (const auto& rec : j["records"]) {
    const std::string action = rec.value("action", "");
    EXPECT_GT(rec["seq"].get<uint64_t>(), last_seq) << "records out of order";
    last_seq = rec["seq"].get<uint64_t>();
    if (action == "policy.apply") {
      ++policy_apply;
      if (rec["target"] == r2) {
        EXPECT_EQ(rec["details"]["comment"], "go e2ee") << rec.dump();
        EXPECT_THAT(rec["actor"].get<std::string>(), HasSubstr("initial-operator"));
      }
    }
    if (action == "policy.rollback") {
      ++rollbacks;
      EXPECT_EQ(rec["target"], r3);
      EXPECT_EQ(rec["details"]["rollback_of"], 1);
    }
    if (action == "admin.ApplyPolicy") {
      (rec["details"]["code"] == "OK" ? admin_apply_ok : admin_apply_refused)++;
    }
  }
  EXPECT_EQ(policy_apply, 2) << j.dump();  // parleyd's first revision + r2
  EXPECT_EQ(rollbacks, 1);
  EXPECT_EQ(admin_apply_ok, 1);
  EXPECT_EQ(admin_apply_refused, 1);  // "again"; the invalid ones never reached the server
  r = Ctl({"audit", "tail", "-n", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("SEQ"));
  j = CtlJson({"audit", "tail", "--after", std::to_string(last_seq - 1)});
  ASSERT_GE(j["records"].size(), 1u) << j.dump();
  EXPECT_EQ(j["records"][0]["seq"], last_seq);
}

TEST_F(ParleyctlTest, TokensAndRoles) {
  const std::string operator_id = CtlJson({"whoami"})["token"]["token_id"].get<std::string>();
  ASSERT_THAT(operator_id, StartsWith("t_"));

  // An auditor token written to a new file with mode 0600.
  const std::string auditor = dir_ + "/auditor.token";
  nlohmann::json j = CtlJson({"tokens", "create", "--role", "auditor", "--name", "audit-bot", "--out", auditor});
  EXPECT_EQ(j["secret_file"], auditor);
  EXPECT_FALSE(j.contains("secret"));
  EXPECT_EQ(j["token"]["role"], "auditor");
  EXPECT_EQ(j["token"]["name"], "audit-bot");
  EXPECT_EQ(j["token"]["created_by"], operator_id);
  const std::string auditor_id = j["token"]["token_id"].get<std::string>();
  ASSERT_FALSE(auditor_id.empty());
  struct stat st {};
  ASSERT_EQ(::stat(auditor.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  const std::string secret = testing::Slurp(auditor);
  EXPECT_THAT(secret, StartsWith("padm_"));

  // Refuses to overwrite, and a bad role or name is invalid input.
  RunResult r = Ctl({"tokens", "create", "--role", "auditor", "--name", "other", "--out", auditor});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("refusing to overwrite"));
  EXPECT_EQ(testing::Slurp(auditor), secret);
  r = Ctl({"tokens", "create", "--role", "janitor", "--name", "x"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown role"));
  r = Ctl({"tokens", "create", "--role", "auditor", "--name", "x", "--out", dir_ + "/no/such/dir/t"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot create"));

  // A live token with that name exists: the server refuses (exit 1) and the
  // new secret file is not left behind.
  r = Ctl({"tokens", "create", "--role", "auditor", "--name", "audit-bot", "--out", dir_ + "/dup.token"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("[ALREADY_EXISTS]"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/dup.token"));

  // Without --out the secret is printed once, with a warning on stderr.
  r = Ctl({"tokens", "create", "--role", "moderator", "--name", "mod"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("secret: padm_"));
  EXPECT_THAT(r.err, HasSubstr("shown only this once"));

  // The auditor: whoami and audit tail work, operator commands do not.
  r = Ctl({"whoami"}, auditor);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("audit-bot (auditor)"));
  r = Ctl({"audit", "tail"}, auditor);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("token.create"));
  r = Ctl({"policy", "apply", Preset("signal"), "-m", "sneaky"}, auditor);
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("[PERMISSION_DENIED]"));
  EXPECT_THAT(r.err, HasSubstr("role auditor may not call ApplyPolicy"));
  j = CtlJson({"policy", "show"}, 1, auditor);
  EXPECT_EQ(j["error"]["code"], "PERMISSION_DENIED");
  EXPECT_EQ(Ctl({"tokens", "list"}, auditor).code, 1);
  EXPECT_EQ(Ctl({"tokens", "revoke", auditor_id}, auditor).code, 1);
  EXPECT_EQ(CtlJson({"policy", "history"})["revisions"].size(), 1u);

  // The refusals are in the audit log too.
  j = CtlJson({"audit", "tail", "-n", "1000"});
  bool denied_apply = false;
  for (const auto& rec : j["records"]) {
    if (rec["action"] == "admin.ApplyPolicy" && rec["details"]["code"] == "PERMISSION_DENIED") {
      denied_apply = true;
      EXPECT_THAT(rec["actor"].get<std::string>(), HasSubstr("audit-bot"));
    }
  }
  EXPECT_TRUE(denied_apply) << j.dump();

  // tokens list shows both new tokens, never a secret.
  r = Ctl({"tokens", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(auditor_id));
  EXPECT_THAT(r.out, HasSubstr("audit-bot"));
  EXPECT_THAT(r.out, HasSubstr("initial-operator"));
  EXPECT_THAT(r.out, Not(HasSubstr("padm_")));
  j = CtlJson({"tokens", "list"});
  EXPECT_EQ(j["tokens"].size(), 3u) << j.dump();
  EXPECT_THAT(j.dump(), Not(HasSubstr("padm_")));

  // Revoked: the auditor is now unauthenticated (exit 1).
  j = CtlJson({"tokens", "revoke", auditor_id});
  EXPECT_EQ(j["token"]["token_id"], auditor_id);
  EXPECT_EQ(j["token"]["revoked"], true);
  r = Ctl({"audit", "tail"}, auditor);
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("[UNAUTHENTICATED]"));
  EXPECT_THAT(r.err, HasSubstr("revoked"));
  r = Ctl({"whoami"}, auditor);
  EXPECT_EQ(r.code, 1);
  j = CtlJson({"tokens", "list"});
  bool found = false;
  for (const auto& t : j["tokens"]) {
    if (t["token_id"] == auditor_id) {
      found = true;
      EXPECT_EQ(t["revoked"], true);
      EXPECT_GT(t["revoked_at_ms"].get<int64_t>(), 0);
    }
  }
  EXPECT_TRUE(found) << j.dump();
  r = Ctl({"tokens", "revoke", "t_nosuchtoken"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("[NOT_FOUND]"));
  EXPECT_EQ(Ctl({"tokens", "revoke", ""}).code, 2);
  // The operator still works.
  EXPECT_EQ(Ctl({"whoami"}).code, 0);
}

}  // namespace
}  // namespace parley

namespace parley {
namespace {

// Safety with the real binaries: parleyd with the pattern scanner and a
// transport policy that notifies participants; `parley` users; moderator,
// lawful-access and auditor tokens made and used through parleyctl.
TEST_F(ParleyctlTest, SafetyModerationExportAndAuditWithRealBinaries) {
  const std::string policy = WriteFile("safety.yaml",
                                       "version: 1\n"
                                       "name: safety-e2e\n"
                                       "rules:\n"
                                       "  - id: default\n"
                                       "    mode: transport\n"
                                       "    locked: true\n"
                                       "    transport:\n"
                                       "      retention_days: 30\n"
                                       "      moderation: reports\n"
                                       "      automated_scanning: true\n"
                                       "      lawful_access: true\n"
                                       "      notify_access: immediately\n"
                                       "    reason: Server-readable for safety review.\n");
  const std::string patterns = WriteFile("patterns.txt", "scam: re:wire \\d+ dollars\n");
  server_->process().Kill(SIGTERM);
  ASSERT_EQ(server_->process().Wait(std::chrono::seconds(20)), 0);
  server_ = std::make_unique<Parleyd>(PARLEYD_BIN, dir_ + "/data", dir_,
                                      std::vector<std::string>{"--policy", policy, "--scan-patterns", patterns});
  ASSERT_GT(server_->admin_port(), 0) << server_->log();

  const std::string conv = AliceAndBob();
  ASSERT_FALSE(conv.empty());
  ASSERT_EQ(Parley("alice", {"send", conv, "please wire 500 dollars to me"}).code, 0);
  ASSERT_EQ(Parley("alice", {"send", conv, "just chatting"}).code, 0);

  // Tokens of each safety role, made by the operator.
  const std::string mod = dir_ + "/mod.token", law = dir_ + "/law.token", aud = dir_ + "/aud.token";
  ASSERT_EQ(Ctl({"tokens", "create", "--role", "moderator", "--name", "mod", "--out", mod}).code, 0);
  ASSERT_EQ(Ctl({"tokens", "create", "--role", "lawful_access", "--name", "law", "--out", law}).code, 0);
  ASSERT_EQ(Ctl({"tokens", "create", "--role", "auditor", "--name", "aud", "--out", aud}).code, 0);

  // The scanner filed the first message; the moderator reviews it.
  RunResult r = Ctl({"reports", "list", "--status", "open"}, mod);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("rep-1"));
  EXPECT_THAT(r.out, HasSubstr(conv));
  r = Ctl({"reports", "show", "rep-1"}, aud);
  EXPECT_EQ(r.code, 1) << "an auditor may not read reports";
  r = Ctl({"reports", "show", "rep-1"}, mod);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("please wire 500 dollars to me"));
  EXPECT_THAT(r.out, HasSubstr("scam"));
  // notify_access: immediately -> bob's history has the staff-access event.
  r = Parley("bob", {"--json", "history", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ccess"));  // AccessNotice / access_notice

  // Suspend the sender: her client can no longer send.
  r = Ctl({"reports", "resolve", "rep-1", "--action", "suspend", "--note", "scam attempt"}, mod);
  ASSERT_EQ(r.code, 0) << r.err;
  r = Parley("alice", {"send", conv, "are you there?"});
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.out + r.err, HasSubstr("suspended"));

  // Lawful access: the readable history, into a new 0600 file.
  const std::string out = dir_ + "/export.json";
  r = Ctl({"access", "export", "--conversation", conv, "--case", "CASE-42", "--out", out}, mod);
  EXPECT_EQ(r.code, 1) << "a moderator may not export";
  r = Ctl({"access", "export", "--conversation", conv, "--case", "CASE-42", "--out", out}, law);
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json ex = Doc(testing::Slurp(out));
  ASSERT_FALSE(ex.is_null());
  EXPECT_EQ(ex["case_reference"], "CASE-42");
  EXPECT_EQ(ex["content_included"], true);
  EXPECT_THAT(ex.dump(), HasSubstr("just chatting"));
  struct stat st;
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // Every access above is in the chain, and the chain holds.
  r = Ctl({"audit", "verify"}, aud);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("chain intact"));
  r = Ctl({"audit", "tail", "-n", "100"}, aud);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* action : {"content.view", "report.resolve", "account.suspend", "content.export"}) {
    EXPECT_THAT(r.out, HasSubstr(action));
  }
  r = Ctl({"retention", "status"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("30"));  // queue retention days

  // The server's counters: the messages above, the group commit that made
  // them durable, writes accepted (exit 0). Operator only.
  r = Ctl({"stats"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("  writes        accepted\n"));
  nlohmann::json stats = CtlJson({"stats"});
  EXPECT_GE(stats["sends_stored"].get<uint64_t>(), 1u);
  EXPECT_GE(stats["group_commits"].get<uint64_t>(), 1u);
  EXPECT_GT(stats["table_file_bytes"].get<uint64_t>() + stats["memtable_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(stats["writes_stopped"], false);
  r = Ctl({"stats"}, aud);
  EXPECT_EQ(r.code, 1) << "an auditor may not read the server's stats";
  EXPECT_THAT(r.err, HasSubstr("PERMISSION_DENIED"));
}

}  // namespace
}  // namespace parley
