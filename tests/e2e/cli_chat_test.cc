// End to end: the real parleyd and parley binaries as subprocesses. Two users
// chat both ways over TLS; a linked second device receives its copies.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/subprocess.h"

namespace parley {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::Parleyd;
using testing::RunResult;

class CliChatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_cli_XXXXXX";
    dir_ = mkdtemp(tmpl);
    server_ = std::make_unique<Parleyd>(PARLEYD_BIN, dir_ + "/data", dir_);
    ASSERT_GT(server_->port(), 0) << server_->log();
    ca_ = dir_ + "/data/tls/ca.pem";
  }
  void TearDown() override {
    if (server_) {
      server_->process().Kill(SIGTERM);
      EXPECT_EQ(server_->process().Wait(std::chrono::seconds(20)), 0) << "parleyd did not stop cleanly";
    }
    std::filesystem::remove_all(dir_);
  }
  // Runs `parley --profile P [--server --ca] ARGS...`.
  RunResult Parley(const std::string& profile, std::vector<std::string> args, bool with_server = false) {
    std::vector<std::string> argv = {PARLEY_BIN, "--profile", profile};
    if (with_server) {
      argv.insert(argv.end(), {"--server", server_->target(), "--ca", ca_});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::Run(argv, dir_, {"PARLEY_HOME=" + dir_ + "/home"});
  }
  static std::vector<nlohmann::json> JsonLines(const std::string& out) {
    std::vector<nlohmann::json> v;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
      v.push_back(j);
    }
    return v;
  }
  static std::vector<std::string> Texts(const std::vector<nlohmann::json>& lines) {
    std::vector<std::string> t;
    for (const auto& j : lines) {
      if (j.value("type", "") == "message" && j.contains("text") && j["text"].is_string()) {
        t.push_back(j["text"].get<std::string>());
      }
    }
    return t;
  }

  std::string dir_, ca_;
  std::unique_ptr<Parleyd> server_;
};

TEST_F(CliChatTest, TwoUsersChatAndSecondDeviceGetsCopies) {
  RunResult r = Parley("alice", {"register", "alice", "--age-band", "adult", "--region", "DE"}, true);
  ASSERT_EQ(r.code, 0) << r.err;
  r = Parley("bob", {"register", "bob"}, true);
  ASSERT_EQ(r.code, 0) << r.err;

  // Alice links a second device.
  r = Parley("alice", {"--json", "devices", "link-code"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  std::string code = lines[0]["code"].get<std::string>();
  r = Parley("alice2", {"link", code, "--device-name", "laptop"}, true);
  ASSERT_EQ(r.code, 0) << r.err;

  r = Parley("alice", {"--json", "chat", "create", "bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  lines = JsonLines(r.out);
  ASSERT_FALSE(lines.empty());
  std::string conv = lines[0]["conversation_id"].get<std::string>();
  ASSERT_THAT(conv, ::testing::StartsWith("c_"));

  ASSERT_EQ(Parley("alice", {"send", conv, "hello bob"}).code, 0);
  ASSERT_EQ(Parley("alice", {"send", conv, "second line"}).code, 0);

  // Bob receives both, in order, marked as readable by the server.
  r = Parley("bob", {"--json", "listen", "--count", "2", "--timeout", "10"});
  ASSERT_EQ(r.code, 0) << r.err;
  lines = JsonLines(r.out);
  EXPECT_THAT(Texts(lines), ::testing::ElementsAre("hello bob", "second line"));
  for (const auto& j : lines) {
    if (j.value("type", "") != "message") continue;
    EXPECT_EQ(j["e2ee"], false);
    EXPECT_EQ(j["protection"], "transport");
  }

  // Bob replies using @alice; the human-readable line says the server can read it.
  ASSERT_EQ(Parley("bob", {"send", "@alice", "hi alice"}).code, 0);
  r = Parley("alice", {"listen", "--count", "1", "--timeout", "10"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("hi alice"));
  EXPECT_THAT(r.out, HasSubstr("server can read"));

  // The laptop got copies of alice's own messages and bob's reply.
  r = Parley("alice2", {"--json", "listen", "--count", "3", "--timeout", "10"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(Texts(JsonLines(r.out)), ::testing::ElementsAre("hello bob", "second line", "hi alice"));

  // Acked: listening again yields nothing new within the timeout.
  r = Parley("bob", {"--json", "listen", "--count", "1", "--timeout", "1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Texts(JsonLines(r.out)).empty()) << r.out;

  // History and conversation listing.
  r = Parley("bob", {"--json", "history", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Texts(JsonLines(r.out)).size(), 3u);
  r = Parley("bob", {"conversations"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(conv));

  // Groups.
  ASSERT_EQ(Parley("carol", {"register", "carol"}, true).code, 0);
  r = Parley("alice", {"--json", "group", "create", "friends", "--members", "bob,carol"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string group = JsonLines(r.out)[0]["conversation_id"].get<std::string>();
  ASSERT_EQ(Parley("carol", {"send", group, "hello group"}).code, 0);
  r = Parley("bob", {"--json", "listen", "--count", "2", "--timeout", "10"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(Texts(JsonLines(r.out)), ::testing::ElementsAre("hello group"));
}

TEST_F(CliChatTest, ExitCodes) {
  ASSERT_EQ(Parley("alice", {"register", "alice"}, true).code, 0);
  // 2: invalid input (bad flags, bad values).
  EXPECT_EQ(Parley("alice", {"send"}).code, 2);
  EXPECT_EQ(Parley("alice", {"no-such-command"}).code, 2);
  EXPECT_EQ(Parley("x", {"register", "xuser", "--kind", "robot"}, true).code, 2);
  // 1: the server refused (names what failed on stderr).
  RunResult r = Parley("alice", {"send", "c_000000000000000000000000", "hi"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("not found"));
  r = Parley("dup", {"register", "alice"}, true);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("taken"));
  // A profile that was never registered.
  EXPECT_NE(Parley("ghost", {"conversations"}).code, 0);
}

// `parley secure` under the default policy (messenger-2016): a 1:1 chat is
// opt-in, so either participant may turn E2EE on, and never off again; a group
// is transport-only and cannot be secured.
TEST_F(CliChatTest, SecureTurnsOnE2eeOnlyWhereThePolicyAllows) {
  ASSERT_EQ(Parley("alice", {"register", "alice"}, true).code, 0);
  ASSERT_EQ(Parley("bob", {"register", "bob"}, true).code, 0);
  ASSERT_EQ(Parley("carol", {"register", "carol"}, true).code, 0);
  RunResult r = Parley("alice", {"--json", "chat", "create", "bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto lines = JsonLines(r.out);
  ASSERT_FALSE(lines.empty());
  const std::string conv = lines[0]["conversation_id"].get<std::string>();
  EXPECT_EQ(lines[0]["mode"], "opt-in");

  // Before: opt-in, a plaintext message goes through.
  r = Parley("alice", {"info", "@bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("mode:         opt-in"));
  EXPECT_THAT(r.out, HasSubstr("rule direct-opt-in"));
  ASSERT_EQ(Parley("alice", {"send", conv, "before the switch"}).code, 0);

  // alice turns E2EE on by naming bob.
  r = Parley("alice", {"secure", "@bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("end-to-end encryption is now ON for " + conv + " (@bob)"));
  EXPECT_THAT(r.err, HasSubstr("must be end-to-end encrypted"));

  r = Parley("alice", {"info", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("mode:         e2ee (end-to-end encrypted)"));
  EXPECT_THAT(r.out, HasSubstr("e2ee ever enabled: yes"));
  EXPECT_THAT(r.out, HasSubstr("participants' consent"));
  r = Parley("bob", {"--json", "info", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  EXPECT_EQ(lines[0]["e2ee"], true);
  EXPECT_EQ(lines[0]["security"]["set_by_participants"], true);
  EXPECT_EQ(lines[0]["security"]["rule_id"], "direct-opt-in");

  // Asking again is refused: it already is.
  r = Parley("alice", {"secure", conv});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr("already end-to-end encrypted"));

  // bob sees the earlier message, then the security change block.
  r = Parley("bob", {"listen", "--count", "2", "--timeout", "10"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("before the switch"));
  EXPECT_THAT(r.out, HasSubstr("*** SECURITY CHANGE in " + conv));
  EXPECT_THAT(r.out, HasSubstr("opt-in \xe2\x86\x92 "));
  EXPECT_THAT(r.out, HasSubstr("decided by: rule direct-opt-in"));
  EXPECT_LT(r.out.find("before the switch"), r.out.find("*** SECURITY CHANGE"));

  // Plaintext is never sent now: both of them send end-to-end encrypted
  // (tests/e2e/e2ee_test.cc covers the encryption itself).
  r = Parley("alice", {"send", conv, "after the switch"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(end-to-end encrypted)"));
  EXPECT_THAT(r.out, Not(HasSubstr("server can read")));
  r = Parley("bob", {"--json", "send", "@alice", "encrypted reply"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(JsonLines(r.out).at(0)["e2ee"], true) << r.out;

  // Turning it off is refused by the policy (disable: never).
  r = Parley("alice", {"insecure", "--yes", "@bob"});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr("does not let participants turn off end-to-end encryption"));
  EXPECT_THAT(r.err, HasSubstr("rule direct-opt-in, policy revision r1-"));
  EXPECT_THAT(r.err, HasSubstr("[FAILED_PRECONDITION]"));
  r = Parley("bob", {"--json", "info", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(JsonLines(r.out).at(0)["e2ee"], true);
  // Without --yes and with no answer on stdin: aborted, nothing asked.
  r = Parley("alice", {"insecure", conv});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("aborted; nothing was changed"));

  // bob gets alice's message decrypted, marked end-to-end encrypted.
  r = Parley("bob", {"--json", "listen", "--count", "3", "--timeout", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(Texts(JsonLines(r.out)), ::testing::ElementsAre("after the switch")) << r.out;
  for (const auto& j : JsonLines(r.out)) {
    if (j.value("type", "") == "message") {
      EXPECT_EQ(j["e2ee"], true) << j.dump();
    }
  }

  // A group is transport-only under this policy: secure is refused.
  r = Parley("alice", {"--json", "group", "create", "friends", "--members", "bob,carol"});
  ASSERT_EQ(r.code, 0) << r.err;
  lines = JsonLines(r.out);
  ASSERT_FALSE(lines.empty());
  const std::string group = lines[0]["conversation_id"].get<std::string>();
  EXPECT_EQ(lines[0]["mode"], "transport");
  r = Parley("carol", {"secure", group});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr("does not let participants turn on end-to-end encryption"));
  EXPECT_THAT(r.err, HasSubstr("rule default, policy revision r1-"));
  r = Parley("alice", {"--json", "info", group});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(JsonLines(r.out).at(0)["mode"], "transport");
  EXPECT_EQ(Parley("carol", {"send", group, "still readable"}).code, 0);
  // Usage errors stay exit 2.
  EXPECT_EQ(Parley("alice", {"secure"}).code, 2);
  EXPECT_EQ(Parley("alice", {"secure", "@"}).code, 2);
}

}  // namespace
}  // namespace parley
