// parleyd's command line and config file, run as a real subprocess.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

namespace parley {
namespace {

using ::testing::HasSubstr;

class ParleydConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_cfg_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }
  std::string dir_;
};

TEST_F(ParleydConfigTest, ConfigFileSetsOptionsAndSigtermStopsCleanly) {
  Write("parleyd.yaml", "# test config\ndata_dir: " + dir_ + "/data\nlisten: 127.0.0.1:0\nport_file: " + dir_ +
                            "/port\nadmin_listen: 127.0.0.1:0\nhistory_retention_days: 7\n");
  testing::Process p({PARLEYD_BIN, "--config", dir_ + "/parleyd.yaml"}, dir_ + "/out", dir_ + "/err");
  ASSERT_TRUE(p.started());
  std::string port;
  for (int i = 0; i < 1500 && port.empty(); ++i) {  // at most 15 s
    std::string s = testing::Slurp(dir_ + "/port");
    if (!s.empty() && s.back() == '\n') port = s;
    if (p.Wait(std::chrono::milliseconds(10)) != -1) break;
  }
  ASSERT_FALSE(port.empty()) << testing::Slurp(dir_ + "/err");
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/data/db"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/data/tls/ca.pem"));
  EXPECT_THAT(testing::Slurp(dir_ + "/out"), HasSubstr("CA certificate for clients"));
  p.Kill(SIGTERM);
  EXPECT_EQ(p.Wait(std::chrono::seconds(20)), 0);
  EXPECT_THAT(testing::Slurp(dir_ + "/err"), HasSubstr("event=shutdown phase=done"));
}

TEST_F(ParleydConfigTest, BadConfigAndFlagsExitTwoNamingTheProblem) {
  Write("bad.yaml", "listen: 127.0.0.1:0\nno_such_setting: 1\n");
  auto r = testing::Run({PARLEYD_BIN, "--config", dir_ + "/bad.yaml"}, dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("bad.yaml:2"));
  EXPECT_THAT(r.err, HasSubstr("no_such_setting"));
  Write("range.yaml", "history_retention_days: 0\n");
  r = testing::Run({PARLEYD_BIN, "--config", dir_ + "/range.yaml"}, dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("range.yaml:1"));
  r = testing::Run({PARLEYD_BIN, "--no-such-flag"}, dir_);
  EXPECT_EQ(r.code, 2);
  r = testing::Run({PARLEYD_BIN, "--idempotency-window-days", "-1"}, dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--idempotency-window-days"));
  // Plaintext off loopback is refused at start (exit 1, message names it).
  r = testing::Run({PARLEYD_BIN, "--data-dir", dir_ + "/d", "--listen", "0.0.0.0:0", "--insecure",
                    "--admin-listen", "127.0.0.1:0"},
                   dir_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("loopback"));
}

}  // namespace
}  // namespace parley
