// parley-bench --mode e2ee-signal end to end: the bench spawns a real parleyd
// (subprocess, loopback, port 0, preset:signal), gives every device a Signal
// profile, publishes its keys, fetches bundles from parleyd's key directory,
// and every measured message is encrypted by the sending device and
// decrypted by the receiving one. A message that arrives undecryptable
// (e.g. the server or the bench mixing up ciphertexts) is a decrypt error.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/subprocess.h"

namespace parley {
namespace {

using testing::Process;
using testing::Slurp;

void CheckSignalRun(const std::vector<std::string>& scenario_args, const std::string& name) {
  char tmpl[] = "/tmp/parley_bench_signal_test_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string json_path = dir + "/run.json";
  std::vector<std::string> argv = {PARLEY_BENCH_BIN, "--parleyd", PARLEYD_BIN, "--mode", "e2ee-signal",
                                   "--duration",     "1",          "--warmup",  "0.5",    "--quiet",
                                   "--json",         json_path};
  argv.insert(argv.end(), scenario_args.begin(), scenario_args.end());
  Process p(argv, dir + "/out", dir + "/err");
  const int rc = p.Wait(std::chrono::seconds(120));
  ASSERT_EQ(rc, 0) << name << ": parley-bench exit " << rc << "\n" << Slurp(dir + "/out") << Slurp(dir + "/err");
  const nlohmann::json j = nlohmann::json::parse(Slurp(json_path), nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << Slurp(json_path);
  ASSERT_EQ(j["runs"].size(), 1u);
  const nlohmann::json& r = j["runs"][0];
  EXPECT_EQ(r["server"], "parleyd");
  EXPECT_EQ(r["mode"], "e2ee-signal");
  EXPECT_EQ(r["decrypt_errors"], 0) << r.dump(2);
  EXPECT_EQ(r["send_errors"], 0) << r.dump(2);
  EXPECT_GT(r["deliveries_total"].get<uint64_t>(), 0u) << r.dump(2);
  EXPECT_EQ(r["deliveries_total"], r["deliveries_expected"]) << r.dump(2);
  EXPECT_EQ(r["first_error"], "") << r.dump(2);
  // parleyd's own counters over the window, from its admin service: the
  // Sends it stored and the group commits that made them durable (the
  // drain's window has no Sends).
  ASSERT_TRUE(r["server_group_commits"].is_number()) << r.dump(2);
  if (name != "drain") {
    EXPECT_GT(r["server_sends_stored"].get<int64_t>(), 0) << r.dump(2);
    EXPECT_GT(r["server_group_commits"].get<int64_t>(), 0) << r.dump(2);
    EXPECT_GE(r["server_sends_per_group_commit"].get<double>(), 0.5) << r.dump(2);
    // Its own Send latency over the window: every Send stored in it was
    // answered in it (the window ends after the last reply), give or take
    // those in flight at its edges.
    const nlohmann::json& l = r["server_send_latency"];
    ASSERT_TRUE(l.is_object()) << r.dump(2);
    EXPECT_GT(l["count"].get<int64_t>(), 0) << r.dump(2);
    EXPECT_GT(l["p50_ms"].get<double>(), 0) << r.dump(2);
    EXPECT_GE(l["p99_ms"].get<double>(), l["p50_ms"].get<double>()) << r.dump(2);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST(BenchSignalTest, PairsThroughParleyd) {
  CheckSignalRun({"--pairs", "2", "--window", "2"}, "pairs");
}

TEST(BenchSignalTest, GroupThroughParleyd) {
  CheckSignalRun({"--scenario", "group", "--groups", "1", "--group-size", "4", "--window", "2"}, "group");
}

TEST(BenchSignalTest, DrainThroughParleyd) {
  CheckSignalRun({"--scenario", "drain", "--drain-messages", "200"}, "drain");
}

// The same real-Signal load over SendStream (pipelined Sends on one call per
// sender) and without Receive batches.
TEST(BenchSignalTest, PairsOverSendStreamThroughParleyd) {
  CheckSignalRun({"--pairs", "2", "--window", "8", "--send-stream", "--receive-batch", "1"}, "send-stream");
}

TEST(BenchSignalTest, GroupOverSendStreamThroughParleyd) {
  CheckSignalRun({"--scenario", "group", "--groups", "1", "--group-size", "4", "--window", "4", "--send-stream"},
                 "group send-stream");
}

}  // namespace
}  // namespace parley
