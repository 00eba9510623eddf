// End to end: `parley report` with the real parleyd and parley binaries
// (subprocesses). An end-to-end encrypted message is reported with its
// message-franking reveal and the server verifies it; a transport message is
// reported from the server's copy; bad arguments fail cleanly.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <sys/stat.h>

#include <filesystem>
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
using testing::Parleyd;
using testing::RunResult;

std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) v.push_back(j);
  }
  return v;
}

class ReportCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_report_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    server_ = std::make_unique<Parleyd>(PARLEYD_BIN, dir_ + "/data", dir_,
                                        std::vector<std::string>{});
    ASSERT_GT(server_->port(), 0) << server_->log();
    ca_ = dir_ + "/data/tls/ca.pem";
  }
  void TearDown() override {
    if (server_) {
      server_->process().Kill(SIGTERM);
      EXPECT_EQ(server_->process().Wait(std::chrono::seconds(20)), 0);
      server_.reset();
    }
    std::filesystem::remove_all(dir_);
  }
  RunResult Parley(const std::string& profile, std::vector<std::string> args,
                   bool with_server = false) {
    std::vector<std::string> argv = {PARLEY_BIN, "--profile", profile};
    if (with_server) {
      argv.insert(argv.end(), {"--server", server_->target(), "--ca", ca_});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::Run(argv, dir_, {"PARLEY_HOME=" + dir_ + "/home"});
  }
  void Register(const std::string& user) {
    RunResult r = Parley(user, {"register", user}, true);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  // seq of the message `text` in bob's `listen --json` output.
  static uint64_t SeqOf(const std::string& out, const std::string& text,
                        bool* e2ee, bool* reportable) {
    for (const auto& j : JsonLines(out)) {
      if (j.value("type", "") != "message" || !j["text"].is_string() ||
          j["text"] != text) {
        continue;
      }
      *e2ee = j.value("e2ee", false);
      *reportable = j.value("reportable", false);
      return j["seq"].get<uint64_t>();
    }
    return 0;
  }

  std::string dir_, ca_;
  std::unique_ptr<Parleyd> server_;
};

TEST_F(ReportCliTest, ReportsE2eeMessageVerifiedByFrankingAndTransport) {
  Register("alice");
  Register("bob");
  RunResult r = Parley("alice", {"--json", "chat", "create", "bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto created = JsonLines(r.out);
  ASSERT_FALSE(created.empty()) << r.out;
  const std::string conv = created[0]["conversation_id"].get<std::string>();

  // A transport message first, then E2EE.
  r = Parley("alice", {"send", conv, "plain spam"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = Parley("alice", {"secure", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  r = Parley("alice", {"--json", "send", conv, "encrypted abuse"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(JsonLines(r.out).at(0)["e2ee"], true) << r.out;

  r = Parley("bob", {"--json", "listen", "--timeout", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  bool e2ee = false, reportable = false;
  const uint64_t e2ee_seq = SeqOf(r.out, "encrypted abuse", &e2ee, &reportable);
  ASSERT_GT(e2ee_seq, 0u) << r.out;
  EXPECT_TRUE(e2ee);
  EXPECT_TRUE(reportable) << r.out;
  const uint64_t plain_seq = SeqOf(r.out, "plain spam", &e2ee, &reportable);
  ASSERT_GT(plain_seq, 0u) << r.out;
  EXPECT_FALSE(e2ee);

  // The franking store is private and does not hold the text in clear.
  const std::string store = dir_ + "/home/profiles/bob/franking";
  struct stat st;
  ASSERT_EQ(::stat(store.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  // E2EE: revealed and verified by message franking.
  r = Parley("bob", {"report", conv, std::to_string(e2ee_seq), "--reason",
                     "harassment", "--comment", "threatening me"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("verified by message franking")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("report "));
  r = Parley("bob", {"--json", "report", conv, std::to_string(e2ee_seq),
                     "--reason", "spam"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = JsonLines(r.out);
  ASSERT_EQ(j.size(), 1u) << r.out;
  EXPECT_EQ(j[0]["type"], "reported");
  EXPECT_EQ(j[0]["franking_verified"], true);
  EXPECT_EQ(j[0]["revealed"], true);
  EXPECT_FALSE(j[0]["report_id"].get<std::string>().empty());

  // Transport: no reveal, the server's copy.
  r = Parley("bob", {"--json", "report", conv, std::to_string(plain_seq),
                     "--reason", "spam"});
  ASSERT_EQ(r.code, 0) << r.err;
  j = JsonLines(r.out);
  ASSERT_EQ(j.size(), 1u) << r.out;
  EXPECT_EQ(j[0]["revealed"], false);
  EXPECT_EQ(j[0]["franking_verified"], false);
  EXPECT_FALSE(j[0]["report_id"].get<std::string>().empty());

  // Errors: a bad reason is a usage error; an unknown message fails.
  r = Parley("bob", {"report", conv, std::to_string(e2ee_seq), "--reason",
                     "rude"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("invalid report reason"));
  r = Parley("bob", {"report", conv, "9999", "--reason", "spam"});
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("reporting message #9999"));
}

}  // namespace
}  // namespace parley
