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

}  // namespace
}  // namespace parley
