// parley-bench --find-max end to end: the bench spawns a real parleyd
// (subprocess, loopback, port 0) for every run of the search, then the null
// server the same way, then parleyd once more in open loop at half the best
// rate, twice (--half-rate-runs 2). The JSON must show the doubling windows,
// the best of each search as the compared runs, and two half-rate runs at
// half the best run's Sends/s with their verdicts and the median one.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/subprocess.h"

namespace parley {
namespace {

using testing::Process;
using testing::Slurp;
using ::testing::HasSubstr;

TEST(BenchFindMaxTest, SearchesParleydAndTheNullServerThenRunsAtHalfRate) {
  char tmpl[] = "/tmp/parley_bench_find_max_test_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string json_path = dir + "/run.json";
  Process p({PARLEY_BENCH_BIN, "--parleyd", PARLEYD_BIN, "--find-max", "--find-max-steps", "3", "--compare-null",
             "--half-rate", "--half-rate-runs", "2", "--pairs", "2", "--window", "1", "--duration", "0.5", "--warmup", "0.2", "--quiet",
             "--json", json_path},
            dir + "/out", dir + "/err");
  const int rc = p.Wait(std::chrono::seconds(240));
  const std::string out = Slurp(dir + "/out");
  ASSERT_EQ(rc, 0) << out << Slurp(dir + "/err");
  EXPECT_THAT(out, HasSubstr("find-max, parleyd: window"));
  EXPECT_THAT(out, HasSubstr("find-max, null: window"));
  EXPECT_THAT(out, HasSubstr("half rate, parleyd: run"));
  EXPECT_THAT(out, HasSubstr(" of 2 runs at half the maximum ("));
  EXPECT_THAT(out, HasSubstr("half the maximum rate, the median of 2 runs:"));

  const nlohmann::json j = nlohmann::json::parse(Slurp(json_path), nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << Slurp(json_path);
  const nlohmann::json& searches = j["find_max"]["searches"];
  ASSERT_EQ(searches.size(), 2u) << j.dump(2);
  ASSERT_EQ(j["runs"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const nlohmann::json& s = searches[i];
    EXPECT_EQ(s["server"], i == 0 ? "parleyd" : "null");
    const nlohmann::json& steps = s["steps"];
    ASSERT_GE(steps.size(), 2u) << s.dump(2);
    ASSERT_LE(steps.size(), 3u) << s.dump(2);
    double best = -1;
    int best_window = 0;
    for (size_t k = 0; k < steps.size(); ++k) {
      EXPECT_EQ(steps[k]["window"], 1 << k) << "windows double from --window";
      EXPECT_EQ(steps[k]["send_errors"], 0) << steps[k].dump(2);
      EXPECT_EQ(steps[k]["deliveries_total"], steps[k]["deliveries_expected"]);
      const double rate = steps[k]["delivered_per_s"].get<double>();
      EXPECT_GT(rate, 0);
      if (rate > best) {
        best = rate;
        best_window = steps[k]["window"].get<int>();
      }
    }
    EXPECT_EQ(s["best_window"], best_window);
    EXPECT_EQ(j["runs"][i]["server"], s["server"]);
  }
  // Compared: parleyd's best run, and the null server's run at that window
  // (its search ran every window parleyd's did).
  const nlohmann::json& best_window = searches[0]["best_window"];
  EXPECT_EQ(j["runs"][0]["window"], best_window);
  EXPECT_EQ(j["runs"][1]["window"], best_window);
  for (const nlohmann::json& step : searches[0]["steps"]) {
    if (step["window"] == best_window) {
      EXPECT_EQ(j["runs"][0]["delivered_per_s"], step["delivered_per_s"]);
    }
  }
  for (const nlohmann::json& step : searches[1]["steps"]) {
    if (step["window"] == best_window) {
      EXPECT_EQ(j["runs"][1]["delivered_per_s"], step["delivered_per_s"]);
    }
  }
  EXPECT_GE(searches[1]["steps"].size(), searches[0]["steps"].size());
  EXPECT_FALSE(j["ratio_to_null"]["delivered_per_s"].is_null());
  EXPECT_GT(j["find_max"]["best_to_best_ratio"].get<double>(), 0);
  EXPECT_THAT(out, HasSubstr("maxima: parleyd "));

  const nlohmann::json& half = j["find_max"]["half_rate"];
  ASSERT_TRUE(half.is_object()) << j.dump(2);
  EXPECT_EQ(half["server"], "parleyd");
  EXPECT_DOUBLE_EQ(half["rate"].get<double>(), j["runs"][0]["sends_per_s"].get<double>() / 2);
  EXPECT_EQ(half["send_errors"], 0) << half.dump(2);
  EXPECT_GT(half["deliveries_total"].get<uint64_t>(), 0u);
  EXPECT_EQ(half["deliveries_total"], half["deliveries_expected"]) << half.dump(2);
  EXPECT_GT(half["latency_send_to_deliver"]["count"].get<uint64_t>(), 0u);
  // Open loop: the latency from the scheduled send time covers the same
  // messages and adds the generator's issue lag to each, so none of its
  // percentiles is below the latency from the Send call.
  const nlohmann::json& from_send = half["latency_send_to_deliver"];
  const nlohmann::json& from_schedule = half["latency_schedule_to_deliver"];
  EXPECT_EQ(from_schedule["count"], from_send["count"]) << half.dump(2);
  for (const char* p : {"p50_ms", "p99_ms", "max_ms"}) {
    EXPECT_GE(from_schedule[p].get<double>(), from_send[p].get<double>()) << p << " " << half.dump(2);
  }
  EXPECT_GT(half["issue_lag"]["count"].get<uint64_t>(), 0u) << half.dump(2);
  // Both runs, each with its verdict against the 10 ms bound; the median
  // one (the lower p99 of two) is "half_rate".
  const nlohmann::json& halves = j["find_max"]["half_rate_runs"];
  ASSERT_EQ(halves.size(), 2u) << j.dump(2);
  int within = 0;
  for (const nlohmann::json& h : halves) {
    EXPECT_EQ(h["rate"], half["rate"]);
    EXPECT_EQ(h["send_errors"], 0) << h.dump(2);
    EXPECT_EQ(h["deliveries_total"], h["deliveries_expected"]) << h.dump(2);
    const bool ok = h["latency_send_to_deliver"]["p99_ms"].get<double>() <= 10 && h["sends_skipped"] == 0;
    EXPECT_EQ(h["within_bound"], ok) << h.dump(2);
    within += ok ? 1 : 0;
  }
  EXPECT_EQ(j["find_max"]["half_rate_within_bound"], within);
  EXPECT_EQ(half["latency_send_to_deliver"]["p99_ms"],
            std::min(halves[0]["latency_send_to_deliver"]["p99_ms"].get<double>(),
                     halves[1]["latency_send_to_deliver"]["p99_ms"].get<double>()));
  // Closed loop has no schedule: neither figure is given.
  EXPECT_EQ(j["runs"][0]["issue_lag"]["count"], 0) << j["runs"][0].dump(2);
  EXPECT_EQ(j["runs"][0]["latency_schedule_to_deliver"]["count"], 0);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// --find-rate end to end. With a bound every run meets (60 s), each search
// doubles from --rate; with one no run can meet (1 us), it halves and ends
// without a rate. Pass or fail is decided by the bound, not by the host's
// speed: no assertion here depends on a timing.
TEST(BenchFindMaxTest, FindRateSearchesBothServersUpAndDown) {
  char tmpl[] = "/tmp/parley_bench_find_max_test_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    const std::string json_path = dir + "/up.json";
    Process p({PARLEY_BENCH_BIN, "--parleyd", PARLEYD_BIN, "--find-rate", "60000", "--rate", "50", "--find-max-steps",
               "3", "--compare-null", "--pairs", "2", "--duration", "0.5", "--warmup", "0.2", "--quiet", "--json",
               json_path},
              dir + "/out", dir + "/err");
    const int rc = p.Wait(std::chrono::seconds(240));
    const std::string out = Slurp(dir + "/out");
    ASSERT_EQ(rc, 0) << out << Slurp(dir + "/err");
    EXPECT_THAT(out, HasSubstr("find-rate, parleyd: rate/s"));
    EXPECT_THAT(out, HasSubstr("find-rate, null: rate/s"));
    EXPECT_THAT(out, HasSubstr("highest rate with p99 <= 60000.0 ms: parleyd 200/s, null 200/s; ratio 1.00"));
    const nlohmann::json j = nlohmann::json::parse(Slurp(json_path), nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << Slurp(json_path);
    const nlohmann::json& searches = j["find_rate"]["searches"];
    ASSERT_EQ(searches.size(), 2u) << j.dump(2);
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(searches[i]["server"], i == 0 ? "parleyd" : "null");
      const nlohmann::json& steps = searches[i]["steps"];
      ASSERT_EQ(steps.size(), 3u) << searches[i].dump(2);
      for (size_t k = 0; k < steps.size(); ++k) {
        EXPECT_DOUBLE_EQ(steps[k]["rate"].get<double>(), 50.0 * (1 << k));
        EXPECT_EQ(steps[k]["within_bound"], true) << steps[k].dump(2);
        EXPECT_EQ(steps[k]["sends_skipped"], 0);
        EXPECT_EQ(steps[k]["deliveries_total"], steps[k]["deliveries_expected"]);
        EXPECT_GT(steps[k]["latency_send_to_deliver"]["count"].get<uint64_t>(), 0u);
      }
      EXPECT_DOUBLE_EQ(searches[i]["best_rate"].get<double>(), 200.0);
      EXPECT_EQ(j["runs"][i]["server"], searches[i]["server"]);
      EXPECT_DOUBLE_EQ(j["runs"][i]["rate"].get<double>(), 200.0);
    }
    EXPECT_DOUBLE_EQ(j["find_rate"]["ratio"].get<double>(), 1.0);
  }
  {
    const std::string json_path = dir + "/down.json";
    Process p({PARLEY_BENCH_BIN, "--parleyd", PARLEYD_BIN, "--find-rate", "0.001", "--rate", "40", "--find-max-steps",
               "3", "--pairs", "2", "--duration", "0.5", "--warmup", "0.2", "--quiet", "--json", json_path},
              dir + "/out2", dir + "/err2");
    const int rc = p.Wait(std::chrono::seconds(240));
    const std::string out = Slurp(dir + "/out2");
    ASSERT_EQ(rc, 0) << out << Slurp(dir + "/err2");
    EXPECT_THAT(out, HasSubstr("highest rate with p99 <= 0.0 ms: parleyd none of the rates tried"));
    const nlohmann::json j = nlohmann::json::parse(Slurp(json_path), nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << Slurp(json_path);
    const nlohmann::json& steps = j["find_rate"]["searches"][0]["steps"];
    ASSERT_EQ(steps.size(), 3u) << j.dump(2);
    for (size_t k = 0; k < steps.size(); ++k) {
      EXPECT_DOUBLE_EQ(steps[k]["rate"].get<double>(), 40.0 / (1 << k));
      EXPECT_EQ(steps[k]["within_bound"], false);
    }
    EXPECT_TRUE(j["find_rate"]["searches"][0]["best_rate"].is_null());
    EXPECT_EQ(j["runs"].size(), 0u);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// A search that cannot start fails with the reason and a non-zero exit, and
// writes no half-rate run (here: a parleyd binary that does not exist).
TEST(BenchFindMaxTest, AServerThatCannotStartFailsTheSearch) {
  char tmpl[] = "/tmp/parley_bench_find_max_test_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  Process p({PARLEY_BENCH_BIN, "--parleyd", dir + "/no-such-parleyd", "--find-max", "--half-rate", "--pairs", "1",
             "--duration", "0.2", "--warmup", "0", "--quiet", "--timeout", "10", "--json", dir + "/run.json"},
            dir + "/out", dir + "/err");
  const int rc = p.Wait(std::chrono::seconds(60));
  EXPECT_EQ(rc, 1) << Slurp(dir + "/out") << Slurp(dir + "/err");
  EXPECT_THAT(Slurp(dir + "/err"), HasSubstr("parley-bench: "));
  EXPECT_FALSE(std::filesystem::exists(dir + "/run.json"));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace parley
