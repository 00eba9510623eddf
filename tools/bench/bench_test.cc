// Unit tests of parley-bench: argument parsing, percentile math, payloads,
// /proc parsing, JSON and table output, and short scenario runs against the
// in-process null server.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/tls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parley/v1/admin.grpc.pb.h"
#include "tools/bench/args.h"
#include "tools/bench/cpus.h"
#include "tools/bench/driver.h"
#include "tools/bench/find_max.h"
#include "tools/bench/histogram.h"
#include "tools/bench/null_server.h"
#include "tools/bench/proc.h"
#include "tools/bench/process.h"
#include "tools/bench/report.h"

namespace parley::bench {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<Options> Parse(std::vector<std::string> args,
                              std::string* help = nullptr) {
  std::vector<const char*> argv = {"parley-bench"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::string h;
  return ParseArgs(static_cast<int>(argv.size()), argv.data(),
                   help != nullptr ? help : &h);
}

TEST(ArgsTest, Defaults) {
  auto o = Parse({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->scenario, Scenario::kPairs);
  EXPECT_EQ(o->mode, Mode::kTransport);
  EXPECT_EQ(o->target_kind, TargetKind::kSpawn);
  EXPECT_EQ(o->pairs, 16);
  EXPECT_EQ(o->size, 256);
  EXPECT_EQ(o->rate, 0);
  EXPECT_EQ(o->receive_batch, 64);
  EXPECT_TRUE(o->compact);
}

TEST(ArgsTest, ScenarioModeAndLoad) {
  auto o = Parse({"--scenario", "group", "--group-size", "100", "--mode",
                  "e2ee-preencrypted", "--rate", "5000", "--duration", "3",
                  "--size", "1024", "--compare-null", "--server-arg",
                  "--max-group-members", "--server-arg", "200", "--sync"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->scenario, Scenario::kGroup);
  EXPECT_EQ(o->group_size, 100);
  EXPECT_EQ(o->mode, Mode::kE2eePreencrypted);
  EXPECT_EQ(o->rate, 5000);
  EXPECT_EQ(o->duration_s, 3);
  EXPECT_EQ(o->size, 1024);
  EXPECT_TRUE(o->compare_null);
  EXPECT_TRUE(o->sync);
  EXPECT_THAT(o->server_args,
              ::testing::ElementsAre("--max-group-members", "200"));
}

TEST(ArgsTest, DrainDefaultsToOneDevice) {
  auto o = Parse({"--scenario", "drain"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->pairs, 1);
  o = Parse({"--scenario", "drain", "--pairs", "4"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->pairs, 4);
}

TEST(ArgsTest, Targets) {
  EXPECT_FALSE(Parse({"--target", "127.0.0.1:7443"}).ok());  // needs --ca
  char path[] = "/tmp/parley_bench_ca_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  auto o =
      Parse({"--target", "127.0.0.1:7443", "--ca", path, "--server-pid", "42"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->target_kind, TargetKind::kTarget);
  EXPECT_EQ(o->server_pid, 42);
  unlink(path);
  o = Parse({"--null-server"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->target_kind, TargetKind::kNull);
  EXPECT_FALSE(Parse({"--null-server", "--compare-null"}).ok());
  EXPECT_FALSE(Parse({"--spawn", "--null-server"}).ok());
  EXPECT_FALSE(Parse({"--server-pid", "7"}).ok());  // only with --target
  EXPECT_TRUE(Parse({"--no-admin"})->no_admin);
}

TEST(ArgsTest, Errors) {
  auto o = Parse({"--mode", "e2ee-signal"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->mode, Mode::kE2eeSignal);
  EXPECT_FALSE(Parse({"--scenario", "nope"}).ok());
  EXPECT_FALSE(Parse({"--mode", "nope"}).ok());
  EXPECT_FALSE(Parse({"--size", "47"}).ok());  // below the payload header
  EXPECT_TRUE(Parse({"--size", "48"}).ok());
  EXPECT_FALSE(Parse({"--window", "0"}).ok());
  EXPECT_FALSE(Parse({"--receive-batch", "0"}).ok());
  EXPECT_FALSE(Parse({"--receive-batch", "257"}).ok());
  EXPECT_EQ(Parse({"--receive-batch", "1"})->receive_batch, 1);
  EXPECT_FALSE(Parse({})->send_stream);
  EXPECT_TRUE(Parse({"--send-stream"})->send_stream);
  EXPECT_FALSE(Parse({"--rate", "-1"}).ok());
  EXPECT_FALSE(Parse({"--bogus"}).ok());
  std::string help;
  auto h = Parse({"--help"}, &help);
  ASSERT_TRUE(h.ok());
  EXPECT_THAT(help, HasSubstr("--scenario"));
}

TEST(ArgsTest, SeriesMs) {
  EXPECT_EQ(Parse({})->series_ms, 0);
  EXPECT_EQ(Parse({"--series-ms", "100"})->series_ms, 100);
  EXPECT_EQ(Parse({"--scenario", "group", "--series-ms", "250"})->series_ms,
            250);
  auto neg = Parse({"--series-ms", "-1"});
  ASSERT_FALSE(neg.ok());
  EXPECT_THAT(neg.status().message(), HasSubstr("--series-ms"));
  EXPECT_FALSE(Parse({"--series-ms", "60001"}).ok());
  // A drain or idle run has no load over time to cut into intervals.
  for (const char* sc : {"drain", "idle"}) {
    auto o = Parse({"--scenario", sc, "--series-ms", "100"});
    ASSERT_FALSE(o.ok()) << sc;
    EXPECT_THAT(o.status().message(), HasSubstr("pairs or group"));
  }
}

TEST(CpusTest, ParseAndFormat) {
  const std::vector<int> avail = {0, 1, 2, 3};
  EXPECT_EQ(*ParseCpuList("--x", "0", avail), std::vector<int>({0}));
  EXPECT_EQ(*ParseCpuList("--x", "3,1", avail), std::vector<int>({1, 3}));
  EXPECT_EQ(*ParseCpuList("--x", "0-2,1", avail), std::vector<int>({0, 1, 2}));
  EXPECT_EQ(*ParseCpuList("--x", " 2 , 3", avail), std::vector<int>({2, 3}));
  struct Bad {
    const char* text;
    const char* says;
  };
  for (const Bad& b : {Bad{"", "is empty"}, Bad{" ", "is empty"},
                       Bad{"a", "not a CPU number"}, Bad{"-1", "not a CPU"},
                       Bad{"1-", "not a CPU"}, Bad{"0-1-2", "not a CPU"},
                       Bad{"1,,2", "not a CPU"}, Bad{"2-1", "backwards"},
                       Bad{"4", "names CPU 4"}, Bad{"2-5", "names CPU 4"}}) {
    auto r = ParseCpuList("--server-cpus", b.text, avail);
    ASSERT_FALSE(r.ok()) << b.text;
    EXPECT_THAT(r.status().message(), HasSubstr("--server-cpus")) << b.text;
    EXPECT_THAT(r.status().message(), HasSubstr(b.says)) << b.text;
    EXPECT_THAT(r.status().message(), HasSubstr("available CPUs: 0-3"));
  }
  EXPECT_EQ(FormatCpuList({}), "");
  EXPECT_EQ(FormatCpuList({5}), "5");
  EXPECT_EQ(FormatCpuList({0, 1, 3}), "0-1,3");
  EXPECT_EQ(FormatCpuList({0, 2, 4}), "0,2,4");
  EXPECT_EQ(FormatCpuList({0, 1, 2, 3}), "0-3");
}

TEST(ArgsTest, CpuPinning) {
  const std::vector<int> avail = AvailableCpus();
  ASSERT_FALSE(avail.empty());
  const std::string first = std::to_string(avail[0]);
  auto none = Parse({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->server_cpus.empty());
  EXPECT_TRUE(none->bench_cpus.empty());
  auto both = Parse({"--server-cpus", first, "--bench-cpus", first});
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->server_cpus, std::vector<int>({avail[0]}));
  EXPECT_EQ(both->bench_cpus, std::vector<int>({avail[0]}));
  // The bench alone: spawned servers get every CPU, not the bench's mask.
  auto bench = Parse({"--bench-cpus", first});
  ASSERT_TRUE(bench.ok()) << bench.status();
  EXPECT_EQ(bench->server_cpus, avail);
  auto empty = Parse({"--server-cpus", ""});
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("is empty"));
  auto bad = Parse({"--bench-cpus", "100000"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("--bench-cpus"));
  auto target = Parse(
      {"--target", "127.0.0.1:1", "--ca", "/dev/null", "--server-cpus", first});
  ASSERT_FALSE(target.ok());
  EXPECT_THAT(target.status().message(), HasSubstr("--target server"));
}

// A spawned server runs on the CPUs asked for (the kernel's own view).
TEST(ProcessTest, SpawnedServerRunsOnItsCpus) {
  const std::vector<int> avail = AvailableCpus();
  ASSERT_FALSE(avail.empty());
  const std::vector<int> want = {avail.back()};
  auto o = Parse({});
  ASSERT_TRUE(o.ok());
  char dir_template[] = "/tmp/parley-bench-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  auto server = ServerProcess::Start(
      {o->null_server_bin, "--data-dir", dir, "--listen", "127.0.0.1:0",
       "--port-file", dir + "/port"},
      dir + "/port", dir + "/log", absl::Seconds(30), want);
  ASSERT_TRUE(server.ok()) << server.status();
  std::ifstream status(absl::StrCat("/proc/", (*server)->pid(), "/status"));
  std::string line;
  std::string allowed;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "Cpus_allowed_list:")) {
      allowed = std::string(absl::StripAsciiWhitespace(
          absl::string_view(line).substr(strlen("Cpus_allowed_list:"))));
    }
  }
  EXPECT_EQ(allowed, FormatCpuList(want));
  auto code = (*server)->Stop(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  std::filesystem::remove_all(dir);
}

TEST(ArgsTest, FindMax) {
  auto o = Parse({"--scenario", "group", "--find-max", "--find-max-steps", "4",
                  "--half-rate", "--window", "2"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->find_max);
  EXPECT_TRUE(o->half_rate);
  EXPECT_EQ(o->find_max_steps, 4);
  EXPECT_EQ(o->window, 2);
  EXPECT_EQ(o->half_rate_runs, 1);
  auto d = Parse({"--find-max"});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->find_max_steps, 6);
  EXPECT_FALSE(d->half_rate);
  auto n = Parse({"--find-max", "--half-rate", "--half-rate-runs", "4"});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->half_rate_runs, 4);

  struct Bad {
    std::vector<std::string> args;
    const char* message;
  };
  const Bad bad[] = {
      {{"--find-max", "--rate", "100"}, "cannot be combined with --rate"},
      {{"--find-max", "--scenario", "drain"}, "--scenario pairs or group"},
      {{"--find-max", "--scenario", "idle"}, "--scenario pairs or group"},
      {{"--half-rate"}, "add --find-max"},
      {{"--half-rate-runs", "3"}, "add --find-max --half-rate"},
      {{"--find-max", "--half-rate-runs", "2"}, "add --find-max --half-rate"},
      {{"--find-max", "--half-rate", "--half-rate-runs", "0"},
       "--half-rate-runs: 0 is out of range [1, 20]"},
      {{"--find-max", "--half-rate", "--half-rate-runs", "21"},
       "--half-rate-runs: 21 is out"},
      {{"--find-max-steps", "3"}, "applies to --find-max"},
      {{"--find-max", "--find-max-steps", "1"}, "--find-max-steps: 1 is out"},
      {{"--find-max", "--find-max-steps", "13"}, "--find-max-steps: 13 is out"},
  };
  for (const Bad& b : bad) {
    auto r = Parse(b.args);
    ASSERT_FALSE(r.ok()) << b.args[0];
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(b.message));
  }
}

TEST(ArgsTest, FindRate) {
  auto o = Parse({"--find-rate", "10", "--rate", "4000"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_DOUBLE_EQ(o->find_rate_p99_ms, 10);
  EXPECT_EQ(
      Parse({"--find-rate", "10", "--rate", "100", "--find-max-steps", "8"})
          ->find_max_steps,
      8);
  EXPECT_DOUBLE_EQ(Parse({})->find_rate_p99_ms, 0);
  struct Bad {
    std::vector<std::string> args;
    const char* message;
  };
  const Bad bad[] = {
      {{"--find-rate", "10"}, "starts at --rate"},
      {{"--find-rate", "10", "--rate", "100", "--scenario", "drain"},
       "--scenario pairs or group"},
      {{"--find-rate", "10", "--find-max"}, "use one"},
      {{"--find-rate", "-1", "--rate", "100"}, "--find-rate: -1 is out"},
      {{"--find-rate", "nan", "--rate", "100"}, "--find-rate"},
      {{"--find-rate", "10", "--rate", "100", "--find-max-steps", "1"},
       "--find-max-steps: 1 is out"},
  };
  for (const Bad& b : bad) {
    auto r = Parse(b.args);
    ASSERT_FALSE(r.ok()) << b.args[0] << " " << b.args[1];
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(b.message));
  }
}

// The rate search against a made-up server that passes below a rate.
std::vector<RateStep> RunRateSearch(const FindRateOptions& o,
                                    bool (*passes)(double rate)) {
  std::vector<RateStep> done;
  for (double r = NextRate(o, done); r > 0; r = NextRate(o, done)) {
    done.push_back({r, passes(r)});
    if (done.size() > 64) break;  // the test's own bound
  }
  return done;
}

std::vector<double> Rates(const std::vector<RateStep>& steps) {
  std::vector<double> r;
  for (const RateStep& s : steps) r.push_back(s.rate);
  return r;
}

TEST(FindRateTest, DoublesThenBisectsBelowTheFirstFailure) {
  FindRateOptions o;
  o.first_rate = 1000;
  o.max_steps = 12;
  auto steps = RunRateSearch(o, [](double r) { return r <= 5300; });
  // 1000, 2000, 4000 pass; 8000 fails; then 6000 (fail), 5000 (pass),
  // 5500 (fail), 5250 (pass): 5250 and 5500 are within 5%.
  EXPECT_THAT(Rates(steps), testing::ElementsAre(1000, 2000, 4000, 8000, 6000,
                                                 5000, 5500, 5250));
  ASSERT_EQ(BestRate(steps), 7);
  EXPECT_DOUBLE_EQ(steps[7].rate, 5250);
}

TEST(FindRateTest, HalvesWhileEveryRunFails) {
  FindRateOptions o;
  o.first_rate = 8000;
  o.max_steps = 12;
  auto steps = RunRateSearch(o, [](double r) { return r <= 1500; });
  // 8000, 4000, 2000 fail; 1000 passes; 1500 passes (1500 <= 1500);
  // 1750 fails; 1625, 1562.5 fail: 1500 and 1562.5 are within 5%.
  EXPECT_THAT(Rates(steps), testing::ElementsAre(8000, 4000, 2000, 1000, 1500,
                                                 1750, 1625, 1562.5));
  EXPECT_DOUBLE_EQ(steps[BestRate(steps)].rate, 1500);
}

TEST(FindRateTest, BoundedByStepsAndRates) {
  FindRateOptions o;
  o.first_rate = 1000;
  o.max_steps = 3;
  auto all_pass = RunRateSearch(o, [](double) { return true; });
  EXPECT_THAT(Rates(all_pass), testing::ElementsAre(1000, 2000, 4000));
  EXPECT_EQ(BestRate(all_pass), 2);
  // Never above max_rate, and over once it was run there.
  o.max_steps = 12;
  o.max_rate = 3000;
  EXPECT_THAT(Rates(RunRateSearch(o, [](double) { return true; })),
              testing::ElementsAre(1000, 2000, 3000));
  // Never below min_rate; nothing passed: no best.
  o.first_rate = 8;
  o.min_rate = 1;
  auto none = RunRateSearch(o, [](double) { return false; });
  EXPECT_THAT(Rates(none), testing::ElementsAre(8, 4, 2, 1));
  EXPECT_EQ(BestRate(none), -1);
  EXPECT_EQ(BestRate({}), -1);
}

TEST(FindRateTest, AFailureBelowTheBestPassIsNoise) {
  FindRateOptions o;
  o.max_steps = 12;
  // 1000 passes, 2000 passes, 4000 fails, 3000 passes, 3500 fails;
  // a failure at 1500 in between would not lower the bracket.
  std::vector<RateStep> done = {
      {1000, true}, {2000, true}, {1500, false}, {4000, false}};
  EXPECT_DOUBLE_EQ(NextRate(o, done), 3000);
  done.push_back({3000, true});
  EXPECT_DOUBLE_EQ(NextRate(o, done), 3500);
  done.push_back({3500, false});
  EXPECT_DOUBLE_EQ(NextRate(o, done), 3250);
  done.push_back({3250, false});
  // 3000 and 3125 would be within 5%: 3125 is the last.
  EXPECT_DOUBLE_EQ(NextRate(o, done), 3125);
  done.push_back({3125, true});
  EXPECT_DOUBLE_EQ(NextRate(o, done), 0);
}

// The search's stop rule, run against a made-up server whose rate is a
// function of the window.
std::vector<SearchStep> RunSearch(const FindMaxOptions& o,
                                  double (*rate)(int window)) {
  std::vector<SearchStep> done;
  for (int w = NextWindow(o, done); w != 0; w = NextWindow(o, done)) {
    done.push_back({w, rate(w)});
    if (done.size() > 64) break;  // the test's own bound
  }
  return done;
}

TEST(FindMaxTest, DoublesWhileTheRateRisesAndKeepsTheBest) {
  FindMaxOptions o;
  o.first_window = 4;
  // 100, 150, 160 (+6.7%), 161 (+0.6%), 161 (a second run without gain:
  // stop).
  auto steps = RunSearch(o, [](int w) {
    switch (w) {
      case 4:
        return 100.0;
      case 8:
        return 150.0;
      case 16:
        return 160.0;
      default:
        return 161.0;
    }
  });
  ASSERT_EQ(steps.size(), 5u);
  EXPECT_EQ(steps[0].window, 4);
  EXPECT_EQ(steps[1].window, 8);
  EXPECT_EQ(steps[2].window, 16);
  EXPECT_EQ(steps[3].window, 32);
  EXPECT_EQ(steps[4].window, 64);
  EXPECT_EQ(BestStep(steps), 3u);  // 161 at 32; the later equal one loses

  o.patience = 1;  // one run without gain ends it
  EXPECT_EQ(RunSearch(o, [](int w) { return w == 4 ? 100.0 : 101.0; }).size(),
            2u);
}

TEST(FindMaxTest, OneRunLostToNoiseDoesNotEndTheSearch) {
  FindMaxOptions o;
  o.first_window = 8;
  // A dip at 16, then the rate rises again: the search goes on past it.
  auto steps = RunSearch(o, [](int w) {
    return w == 8 ? 100.0 : w == 16 ? 90.0 : w == 32 ? 130.0 : 131.0;
  });
  ASSERT_EQ(steps.size(), 5u);  // 8, 16, 32, then 64 and 128 without gain
  EXPECT_EQ(steps[BestStep(steps)].window, 64);
}

TEST(FindMaxTest, StopsWhenTheRateFallsAndTheBestIsEarlier) {
  FindMaxOptions o;
  o.first_window = 8;
  auto steps = RunSearch(o, [](int w) {
    return w == 8 ? 100.0 : w == 16 ? 120.0 : 90.0;
  });
  ASSERT_EQ(steps.size(), 4u);  // 32 and 64 without gain
  EXPECT_EQ(BestStep(steps), 1u);
  EXPECT_EQ(steps[BestStep(steps)].window, 16);
}

TEST(FindMaxTest, AGainOfExactlyMinGainStops) {
  FindMaxOptions o;
  o.first_window = 1;
  o.min_gain = 0.25;
  auto steps = RunSearch(o, [](int w) { return w == 1 ? 100.0 : 125.0; });
  ASSERT_EQ(steps.size(), 3u);  // +25% is no gain, twice
  // Equal rates: the earliest (smallest window) is the best.
  std::vector<SearchStep> equal = {{1, 5}, {2, 5}, {4, 5}};
  EXPECT_EQ(BestStep(equal), 0u);
}

TEST(FindMaxTest, MinStepsRunWhateverTheGain) {
  FindMaxOptions o;
  o.first_window = 2;
  o.min_steps = 4;
  auto flat = RunSearch(o, [](int) { return 100.0; });
  ASSERT_EQ(flat.size(), 4u);  // then the flat rate stops it
  EXPECT_EQ(flat.back().window, 16);
  // Still rising after min_steps: the search goes on.
  auto rising = RunSearch(o, [](int w) { return 10.0 * w; });
  EXPECT_EQ(rising.size(), 6u);  // max_steps
  // max_steps wins over min_steps.
  o.max_steps = 3;
  EXPECT_EQ(RunSearch(o, [](int) { return 1.0; }).size(), 3u);
}

TEST(FindMaxTest, BoundedByStepsAndByTheLargestWindow) {
  FindMaxOptions o;
  o.first_window = 1;
  o.max_steps = 3;
  auto rising = [](int w) { return 1000.0 * w; };
  auto steps = RunSearch(o, rising);
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps.back().window, 4);

  o.first_window = 3000;
  o.max_steps = 12;
  steps = RunSearch(o, rising);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].window, 3000);
  EXPECT_EQ(steps[1].window, 4096);  // capped, then no further run

  o.first_window = 5000;  // above the cap: the cap
  steps = RunSearch(o, rising);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].window, 4096);
}

TEST(HistogramTest, BucketsCoverValuesWithBoundedError) {
  const std::vector<int64_t> values = {0,
                                       1,
                                       255,
                                       256,
                                       257,
                                       1000,
                                       123456789,
                                       (int64_t{1} << 40) + 12345,
                                       INT64_MAX / 2};
  for (int64_t v : values) {
    const int b = LatencyHistogram::BucketOf(v);
    ASSERT_GE(b, 0);
    ASSERT_LT(b, LatencyHistogram::kBuckets);
    const int64_t upper = LatencyHistogram::BucketUpper(b);
    EXPECT_GE(upper, v);
    EXPECT_LE(static_cast<double>(upper - v),
              static_cast<double>(v) / 128.0 + 1)
        << v;
    if (b > 0) {
      EXPECT_LT(LatencyHistogram::BucketUpper(b - 1), v);
    }
  }
}

TEST(HistogramTest, PercentilesMatchExactWithinOnePercent) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(13.0, 1.0);  // ~0.4 ms median, in ns
  LatencyHistogram h;
  std::vector<int64_t> samples;
  for (int i = 0; i < 100000; ++i) {
    int64_t v = static_cast<int64_t>(dist(rng));
    samples.push_back(v);
    h.Record(v);
  }
  EXPECT_EQ(h.count(), samples.size());
  for (double p : {50.0, 90.0, 99.0, 99.9, 100.0}) {
    const double exact = static_cast<double>(ExactPercentile(samples, p));
    const double got = static_cast<double>(h.Percentile(p));
    EXPECT_GE(got, exact) << p;
    EXPECT_LE(got, exact * 1.01) << p;
  }
  EXPECT_EQ(h.Percentile(100),
            *std::max_element(samples.begin(), samples.end()));
}

TEST(HistogramTest, SmallAndEmpty) {
  LatencyHistogram h;
  EXPECT_EQ(h.Percentile(99), 0);
  EXPECT_EQ(h.min(), 0);
  for (int v = 1; v <= 100; ++v) h.Record(v);
  EXPECT_EQ(h.Percentile(50), 50);
  EXPECT_EQ(h.Percentile(99), 99);
  EXPECT_EQ(h.Percentile(99.9), 100);
  EXPECT_EQ(h.min(), 1);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
  EXPECT_EQ(ExactPercentile({5, 1, 3}, 50), 3);
  h.Reset();
  EXPECT_EQ(h.count(), 0u);
}

TEST(PayloadTest, RoundTrip) {
  PayloadHeader in;
  in.sender = 7;
  in.seq = 123456789012ULL;
  in.send_ns = -5;
  in.issue_lag_us = 4321;
  std::string p = MakePayload(in, 256);
  EXPECT_EQ(p.size(), 256u);
  std::optional<PayloadHeader> h = ParsePayload(p);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->sender, 7u);
  EXPECT_EQ(h->seq, 123456789012ULL);
  EXPECT_EQ(h->send_ns, -5);
  EXPECT_EQ(h->issue_lag_us, 4321);
  EXPECT_FALSE(ParsePayload("short").has_value());
  EXPECT_FALSE(ParsePayload(std::string(64, 'x')).has_value());
  // A header of the earlier format (40 bytes, "PB1:") is not taken for one.
  EXPECT_FALSE(ParsePayload("PB1:" + p.substr(4)).has_value());
  // A bad hex digit in the issue lag.
  std::string bad = p;
  bad[44] = 'g';
  EXPECT_FALSE(ParsePayload(bad).has_value());
  for (char c : p) EXPECT_TRUE(c > 0 && c < 127);  // ASCII: valid UTF-8 text
}

TEST(PayloadTest, IssueLagIsClampedToItsField) {
  PayloadHeader in;
  in.issue_lag_us = -3;
  EXPECT_EQ(ParsePayload(MakePayload(in, 48))->issue_lag_us, 0);
  in.issue_lag_us = int64_t{1} << 40;
  EXPECT_EQ(ParsePayload(MakePayload(in, 48))->issue_lag_us, 0xFFFFFFFF);
}

TEST(ProcTest, ParsesStatAndStatus) {
  // Fields 4-9 are 1-6, minflt (10) 777, cminflt 8, majflt 9, cmajflt 10,
  // utime 250, stime 50.
  auto stat =
      ParseStat("1234 (a (b) c) S 1 2 3 4 5 6 777 8 9 10 250 50 0 0 20 0 9 0");
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->ticks, 300);
  EXPECT_EQ(stat->minor_faults, 777);
  EXPECT_FALSE(ParseStat("garbage").ok());
  EXPECT_FALSE(ParseStat("1 (x) S 1 2 3 4 5 6 many 8 9 10 250 50").ok());
  EXPECT_EQ(ParseContextSwitches("Name:\tx\nvoluntary_ctxt_switches:\t120\n"
                                 "nonvoluntary_ctxt_switches:\t7\n"),
            127);
  EXPECT_EQ(ParseContextSwitches("voluntary_ctxt_switches:\t120\n"), -1);
  // This process: its counters read back, and they only grow.
  auto c0 = ReadProcessCounters(0);
  ASSERT_TRUE(c0.ok()) << c0.status();
  EXPECT_GT(c0->minor_faults, 0);
  EXPECT_GE(c0->context_switches, 0);
  std::vector<char> touched(8 << 20);
  volatile char* page = touched.data();
  for (size_t i = 0; i < touched.size(); i += 4096) page[i] = 1;  // faults
  std::this_thread::sleep_for(std::chrono::milliseconds(2));      // a switch
  auto c1 = ReadProcessCounters(0);
  ASSERT_TRUE(c1.ok());
  EXPECT_GT(c1->minor_faults, c0->minor_faults + 1000);
  EXPECT_GT(c1->context_switches, c0->context_switches);
  EXPECT_FALSE(ReadProcessCounters(999999999).ok());
  ProcessMemory m = ParseStatus(
      "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\nThreads:\t9\n");
  EXPECT_EQ(m.vm_hwm_kb, 2048);
  EXPECT_EQ(m.vm_rss_kb, 1024);
  EXPECT_EQ(m.threads, 9);
  auto self = ProcessCpuSeconds(0);
  ASSERT_TRUE(self.ok());
  EXPECT_GE(*self, 0);
  auto mem = ReadProcessMemory(getpid());
  ASSERT_TRUE(mem.ok());
  EXPECT_GT(mem->vm_hwm_kb, 0);
  EXPECT_GE(mem->threads, 1);
}

TEST(ReportTest, JsonAndTable) {
  RunResult a;
  a.server = "parleyd";
  a.scenario = "pairs";
  a.mode = "transport";
  a.delivered_per_s = 5000;
  a.latency.p99_ms = 3.5;
  RunResult b = a;
  b.server = "null";
  b.delivered_per_s = 20000;
  b.server_peak_rss_kb = 4096;
  a.server_context_switches_per_delivery = 0.84;
  b.server_context_switches_per_delivery = 0.12;
  a.server_minor_faults_per_1k_deliveries = 230.5;
  a.server_group_commits = 1000;
  a.server_sends_stored = 3750;
  a.server_sends_per_group_commit = 3.75;
  a.server_send_latency_count = 3750;
  a.server_send_latency_p50_ms = 0.512;
  a.server_send_latency_p99_ms = 4.096;
  a.server_send_latency_p999_ms = -1;  // above the last bound
  nlohmann::json j = ToJson(a);
  EXPECT_EQ(j["server_send_latency"]["count"], 3750);
  EXPECT_EQ(j["server_send_latency"]["p99_ms"], 4.096);
  EXPECT_TRUE(j["server_send_latency"]["p999_ms"].is_null());
  EXPECT_TRUE(ToJson(b)["server_send_latency"].is_null());
  EXPECT_EQ(j["server_group_commits"], 1000);
  EXPECT_EQ(j["server_sends_stored"], 3750);
  EXPECT_DOUBLE_EQ(j["server_sends_per_group_commit"].get<double>(), 3.75);
  EXPECT_TRUE(ToJson(b)["server_group_commits"].is_null());  // the null server
  EXPECT_TRUE(ToJson(b)["server_sends_per_group_commit"].is_null());
  EXPECT_TRUE(j["server_cpu_s"].is_null());  // not measured
  EXPECT_DOUBLE_EQ(j["server_context_switches_per_delivery"].get<double>(),
                   0.84);
  EXPECT_DOUBLE_EQ(j["server_minor_faults_per_1k_deliveries"].get<double>(),
                   230.5);
  EXPECT_TRUE(ToJson(b)["server_minor_faults_per_1k_deliveries"].is_null());
  EXPECT_EQ(j["latency_send_to_deliver"]["p99_ms"], 3.5);
  EXPECT_EQ(ToJson(b)["server_peak_rss_kb"], 4096);
  Options o;
  nlohmann::json doc = BenchJson(o, {a, b});
  EXPECT_EQ(doc["runs"].size(), 2u);
  EXPECT_DOUBLE_EQ(doc["ratio_to_null"]["delivered_per_s"].get<double>(), 0.25);
  EXPECT_EQ(doc["options"]["scenario"], "pairs");
  const std::string table = FormatTable({a, b});
  EXPECT_THAT(table, HasSubstr("delivered msgs/s"));
  EXPECT_THAT(table, HasSubstr("0.25"));
  EXPECT_THAT(table, HasSubstr("ratio"));
  EXPECT_THAT(table,
              testing::ContainsRegex(
                  "server context switches / delivery +0.84 +0.12 +7.00"));
  EXPECT_THAT(table,
              testing::ContainsRegex(
                  "server Send->reply p50 / p99 \\(ms\\) +0.51 / 4.10 +- *\n"));
  EXPECT_THAT(table, testing::ContainsRegex(
                         "server page faults / 1k deliveries +230.5 +- "));
  EXPECT_THAT(
      table, testing::ContainsRegex("server Sends per group commit +3.75 +- "));
  // Closed loop: no schedule, so no issue lag rows.
  EXPECT_THAT(table, testing::Not(HasSubstr("issue lag")));
  EXPECT_EQ(j["issue_lag"]["count"], 0);
}

TEST(ReportTest, OpenLoopShowsLatencyFromScheduleAndIssueLag) {
  RunResult a;
  a.server = "parleyd";
  a.scenario = "pairs";
  a.rate = 5000;
  a.latency = {100, 1.5, 9.0, 12.0, 20.0, 2.0};
  a.send_rpc = {100, 1.0, 8.0, 11.0, 19.0, 1.8};
  a.latency_from_schedule = {100, 2.25, 14.5, 18.0, 30.0, 3.0};
  a.issue_lag = {100, 0.6, 4.75, 7.0, 9.0, 0.8};
  const std::string table = FormatTable({a});
  // The rows follow the Send RPC row, in this order.
  EXPECT_THAT(table, testing::ContainsRegex(
                         "Send RPC p50 / p99 \\(ms\\) +1.00 / 8.00\n"
                         "from schedule p50 / p99 / p99.9 \\(ms\\) +2.25 / "
                         "14.50 / 18.00\n"
                         "issue lag p50 / p99 \\(ms\\) +0.60 / 4.75\n"));
  nlohmann::json j = ToJson(a);
  EXPECT_EQ(j["latency_schedule_to_deliver"]["p99_ms"], 14.5);
  EXPECT_EQ(j["issue_lag"]["p50_ms"], 0.6);
  EXPECT_EQ(j["latency_send_to_deliver"]["p99_ms"], 9.0);
}

TEST(ReportTest, SeriesCutsTheWindowIntoIntervals) {
  constexpr int64_t kMs = 1'000'000;
  const int64_t start = 5'000 * kMs;
  std::vector<std::pair<int64_t, int64_t>> samples;
  // Interval 0: latencies 1..100 ms, sent in reverse order.
  for (int64_t i = 100; i >= 1; --i)
    samples.emplace_back(start + i * kMs / 2, i * kMs);
  // Interval 1 (100-199 ms): nothing. Interval 2, the last and shorter
  // one (200-249 ms): one message at its very end.
  samples.emplace_back(start + 250 * kMs - 1, 7 * kMs);
  // Outside the window: before its start and at its (exclusive) end.
  samples.emplace_back(start - 1, 999 * kMs);
  samples.emplace_back(start + 250 * kMs, 999 * kMs);
  const std::vector<SeriesPoint> s =
      BuildSeries(samples, start, 250 * kMs, 100);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_DOUBLE_EQ(s[0].t_s, 0.0);
  EXPECT_DOUBLE_EQ(s[1].t_s, 0.1);
  EXPECT_DOUBLE_EQ(s[2].t_s, 0.2);
  EXPECT_EQ(s[0].messages, 100u);
  EXPECT_DOUBLE_EQ(s[0].p50_ms, 50.0);
  EXPECT_DOUBLE_EQ(s[0].p99_ms, 99.0);
  EXPECT_DOUBLE_EQ(s[0].max_ms, 100.0);
  EXPECT_EQ(s[1].messages, 0u);
  EXPECT_DOUBLE_EQ(s[1].p99_ms, 0.0);
  EXPECT_EQ(s[2].messages, 1u);
  EXPECT_DOUBLE_EQ(s[2].p50_ms, 7.0);
  EXPECT_DOUBLE_EQ(s[2].max_ms, 7.0);
  EXPECT_TRUE(BuildSeries(samples, start, 250 * kMs, 0).empty());
  EXPECT_TRUE(BuildSeries(samples, start, 0, 100).empty());
}

TEST(ReportTest, CpuPinningRowAndJson) {
  RunResult a;
  a.server = "parleyd";
  a.scenario = "pairs";
  RunResult b = a;
  b.server = "null";
  EXPECT_THAT(FormatTable({a, b}), testing::Not(HasSubstr("CPUs")));
  a.server_cpus = "0";
  a.bench_cpus = "1";
  b.bench_cpus = "1";
  const std::string table = FormatTable({a, b});
  EXPECT_THAT(table, testing::ContainsRegex(
                         "CPUs: server / bench +0 / 1 +not pinned / 1"));
  EXPECT_EQ(ToJson(a)["server_cpus"], "0");
  EXPECT_EQ(ToJson(a)["bench_cpus"], "1");
  EXPECT_EQ(ToJson(b)["server_cpus"], "");
}

TEST(ReportTest, SeriesRowsAndJson) {
  RunResult a;
  a.server = "parleyd";
  a.scenario = "pairs";
  a.series_ms = 100;
  // p99s of the intervals that carried messages: 3, 12, 4, 30 (median 4).
  for (double p99 : {3.0, 12.0, 0.0, 4.0, 30.0}) {
    SeriesPoint p;
    p.t_s = 0.1 * static_cast<double>(a.series.size());
    p.messages = p99 > 0 ? 10 : 0;
    p.p50_ms = p99 / 2;
    p.p99_ms = p99;
    p.max_ms = p99 + 1;
    a.series.push_back(p);
  }
  RunResult b = a;
  b.server = "null";
  b.series_ms = 0;
  b.series.clear();
  const std::string table = FormatTable({a, b});
  EXPECT_THAT(table, testing::ContainsRegex(
                         "p99 per interval: median / worst \\(ms\\) +4.00 / "
                         "30.00 \\(100 ms\\) +- "));
  EXPECT_THAT(table,
              testing::ContainsRegex("intervals with p99 > 10 ms +2 of 4 +- "));
  const nlohmann::json j = ToJson(a);
  EXPECT_EQ(j["series"]["interval_ms"], 100);
  ASSERT_EQ(j["series"]["points"].size(), 5u);
  EXPECT_EQ(j["series"]["points"][1]["p99_ms"], 12.0);
  EXPECT_EQ(j["series"]["points"][2]["messages"], 0);
  EXPECT_TRUE(ToJson(b)["series"].is_null());
  // Without a series in any run, no rows.
  EXPECT_THAT(FormatTable({b}), testing::Not(HasSubstr("per interval")));
}

TEST(ReportTest, RateSearchLinesSummaryAndJson) {
  auto run = [](const char* server, double rate, double p99, uint64_t skipped) {
    RunResult r;
    r.server = server;
    r.scenario = "pairs";
    r.rate = rate;
    r.delivered_per_s = rate;
    r.latency = {100, p99 / 4, p99, p99, p99, p99 / 3};
    r.sends_skipped = skipped;
    r.deliveries_total = r.deliveries_expected = 100;
    return r;
  };
  RunResult lost = run("parleyd", 3000, 5, 0);
  lost.deliveries_total = 99;  // one accepted message never arrived
  EXPECT_TRUE(WithinBound(run("parleyd", 1000, 10, 0), 10));
  EXPECT_FALSE(WithinBound(run("parleyd", 1000, 10.5, 0), 10));
  EXPECT_FALSE(WithinBound(run("parleyd", 1000, 5, 1), 10));
  EXPECT_FALSE(WithinBound(lost, 10));
  RunResult empty = run("parleyd", 1000, 5, 0);
  empty.latency.count = 0;
  EXPECT_FALSE(WithinBound(empty, 10));

  RateSearch p;
  p.steps = {run("parleyd", 1000, 4, 0), run("parleyd", 2000, 25, 0),
             run("parleyd", 1500, 9, 0)};
  p.best = 2;
  RateSearch n;
  n.steps = {run("null", 1000, 2, 0), run("null", 2000, 3, 0),
             run("null", 4000, 30, 0), run("null", 3000, 8, 0)};
  n.best = 3;
  const std::string lines = FormatRateSearch(p, 10);
  EXPECT_THAT(lines, HasSubstr("find-rate, parleyd: rate/s"));
  EXPECT_THAT(lines, HasSubstr("p99 <= 10.0"));
  EXPECT_THAT(lines, testing::ContainsRegex("\\* 1500 +1500 .* yes\n"));
  EXPECT_THAT(lines, testing::ContainsRegex("  2000 +2000 .* no\n"));
  EXPECT_EQ(FormatRateSummary({p, n}, 10),
            "highest rate with p99 <= 10.0 ms: parleyd 1500/s, null 3000/s; "
            "ratio 0.50\n");
  RateSearch none;
  none.steps = {run("parleyd", 1000, 40, 0)};
  EXPECT_EQ(FormatRateSummary({none, n}, 10),
            "highest rate with p99 <= 10.0 ms: parleyd none of the rates "
            "tried, null 3000/s\n");

  Options o;
  o.find_rate_p99_ms = 10;
  nlohmann::json j = FindRateJson(o, {p, n});
  EXPECT_EQ(j["find_rate"]["p99_bound_ms"], 10.0);
  ASSERT_EQ(j["find_rate"]["searches"].size(), 2u);
  EXPECT_EQ(j["find_rate"]["searches"][0]["best_rate"], 1500.0);
  EXPECT_EQ(j["find_rate"]["searches"][0]["steps"][1]["within_bound"], false);
  EXPECT_EQ(j["find_rate"]["searches"][0]["steps"][2]["within_bound"], true);
  EXPECT_DOUBLE_EQ(j["find_rate"]["ratio"].get<double>(), 0.5);
  ASSERT_EQ(j["runs"].size(), 2u);  // the best run of each
  EXPECT_EQ(j["runs"][1]["rate"], 3000.0);
  nlohmann::json jn = FindRateJson(o, {none});
  EXPECT_TRUE(jn["find_rate"]["searches"][0]["best_rate"].is_null());
  EXPECT_TRUE(jn["find_rate"]["ratio"].is_null());
  EXPECT_EQ(jn["runs"].size(), 0u);
}

TEST(ReportTest, FindMaxTableAndJson) {
  auto run = [](const char* server, int window, double rate) {
    RunResult r;
    r.server = server;
    r.scenario = "group";
    r.mode = "transport";
    r.window = window;
    r.delivered_per_s = rate;
    r.sends_per_s = rate / 99;
    r.latency.count = 10;
    r.latency.p50_ms = 2;
    r.latency.p99_ms = 7.25;
    return r;
  };
  Search parleyd{{run("parleyd", 4, 50000), run("parleyd", 8, 90000),
                  run("parleyd", 16, 88000)},
                 1};
  Search null{{run("null", 4, 100000), run("null", 8, 180000)}, 1};
  const std::string table = FormatSearch(parleyd);
  EXPECT_THAT(table, HasSubstr("find-max, parleyd: window"));
  EXPECT_THAT(table, HasSubstr("* 8 "));
  EXPECT_THAT(table, HasSubstr("  4 "));
  EXPECT_THAT(table, HasSubstr("2.00 / 7.25"));
  EXPECT_EQ(FormatSearch(Search{}), "");

  RunResult half = run("parleyd", 8, 45000);
  half.rate = 454.5;
  Options o;
  o.find_max = true;
  nlohmann::json j = FindMaxJson(o, {parleyd.steps[1], null.steps[1]},
                                 {parleyd, null}, {half});
  ASSERT_EQ(j["runs"].size(), 2u);  // the compared runs
  EXPECT_EQ(j["runs"][0]["window"], 8);
  EXPECT_EQ(j["runs"][1]["server"], "null");
  EXPECT_DOUBLE_EQ(j["ratio_to_null"]["delivered_per_s"].get<double>(), 0.5);
  EXPECT_EQ(j["options"]["find_max"], true);
  ASSERT_EQ(j["find_max"]["searches"].size(), 2u);
  EXPECT_EQ(j["find_max"]["searches"][0]["best_window"], 8);
  EXPECT_EQ(j["find_max"]["searches"][0]["steps"].size(), 3u);
  EXPECT_EQ(j["find_max"]["searches"][1]["best_delivered_per_s"], 180000.0);
  EXPECT_EQ(j["find_max"]["half_rate"]["rate"], 454.5);
  ASSERT_EQ(j["find_max"]["half_rate_runs"].size(), 1u);
  EXPECT_EQ(j["find_max"]["half_rate_runs"][0]["within_bound"], true);
  EXPECT_EQ(j["find_max"]["half_rate_within_bound"], 1);
  EXPECT_EQ(j["find_max"]["half_rate_p99_bound_ms"], 10.0);
  // Best against best: 90,000 (window 8) against 180,000 (window 8).
  EXPECT_DOUBLE_EQ(j["find_max"]["best_to_best_ratio"].get<double>(), 0.5);
  EXPECT_EQ(FormatBestToBest({parleyd, null}),
            "maxima: parleyd 90000 delivered/s at window 8, null 180000 at "
            "window 8; ratio 0.50\n");
  // A parleyd best where the null server is past its maximum: the two
  // ratios differ.
  Search late{{run("parleyd", 4, 50000), run("parleyd", 8, 60000),
               run("parleyd", 16, 70000)},
              2};
  Search peaked{
      {run("null", 4, 100000), run("null", 8, 140000), run("null", 16, 100000)},
      1};
  EXPECT_THAT(FormatBestToBest({late, peaked}), HasSubstr("ratio 0.50"));
  EXPECT_DOUBLE_EQ(
      FindMaxJson(o, {late.steps[2], peaked.steps[2]}, {late, peaked},
                  {})["ratio_to_null"]["delivered_per_s"]
          .get<double>(),
      0.7);
  EXPECT_EQ(FormatBestToBest({parleyd}), "");
  const nlohmann::json alone =
      FindMaxJson(o, {parleyd.steps[1]}, {parleyd}, {});
  EXPECT_TRUE(alone["find_max"]["half_rate"].is_null());
  EXPECT_EQ(alone["find_max"]["half_rate_runs"].size(), 0u);
  EXPECT_TRUE(alone["find_max"]["half_rate_within_bound"].is_null());
  EXPECT_TRUE(alone["find_max"]["best_to_best_ratio"].is_null());
}

// --half-rate-runs: the verdict of each run against the 10 ms bound, the
// median run by p99, the summary line and the JSON.
TEST(ReportTest, HalfRateRunsVerdictsMedianAndJson) {
  auto run = [](double p99, uint64_t skipped) {
    RunResult r;
    r.server = "parleyd";
    r.scenario = "pairs";
    r.mode = "transport";
    r.rate = 5000;
    r.delivered_per_s = 5000;
    r.latency.count = 100;
    r.latency.p50_ms = 1;
    r.latency.p99_ms = p99;
    r.sends_skipped = skipped;
    r.deliveries_total = r.deliveries_expected = 100;
    return r;
  };
  EXPECT_EQ(MedianByP99({}), 0u);
  EXPECT_EQ(FormatHalfRateRuns({}), "");
  // p99s 31.5, 8.25, 12, 9.5 (skipped Sends: not within the bound), 4:
  // sorted 4, 8.25, 9.5, 12, 31.5, so the median is run 4 (9.5 ms).
  std::vector<RunResult> runs = {run(31.5, 0), run(8.25, 0), run(12, 0),
                                 run(9.5, 3), run(4, 0)};
  runs[2].series_ms = 100;
  runs[2].series = {{.messages = 10, .p99_ms = 11},
                    {.messages = 10, .p99_ms = 3},
                    {.messages = 0, .p99_ms = 0}};
  EXPECT_EQ(MedianByP99(runs), 3u);
  const std::string out = FormatHalfRateRuns(runs);
  EXPECT_THAT(out, HasSubstr("half rate, parleyd: run"));
  EXPECT_THAT(out, HasSubstr("p99 <= 10"));
  EXPECT_THAT(out, HasSubstr("  1 "));
  EXPECT_THAT(out, HasSubstr("* 4 "));
  EXPECT_THAT(out, HasSubstr("1 of 2"));  // run 3's intervals over 10 ms
  EXPECT_THAT(out, HasSubstr("p99 <= 10 ms in 2 of 5 runs at half the maximum "
                             "(5000/s); median p99 9.50 ms\n"));
  // Even count: the lower of the two middle runs; a run without latency
  // samples counts as the worst.
  RunResult empty = run(0, 0);
  empty.latency.count = 0;
  EXPECT_EQ(MedianByP99({run(20, 0), empty, run(5, 0), run(7, 0)}), 3u);
  EXPECT_EQ(MedianByP99({empty, run(5, 0)}), 1u);
  EXPECT_THAT(FormatHalfRateRuns({run(5, 0)}),
              HasSubstr("in 1 of 1 run at half the maximum"));

  Options o;
  o.find_max = true;
  o.half_rate = true;
  o.half_rate_runs = 5;
  Search s{{run(1, 0)}, 0};
  const nlohmann::json j = FindMaxJson(o, {s.steps[0]}, {s}, runs);
  EXPECT_EQ(j["options"]["half_rate_runs"], 5);
  ASSERT_EQ(j["find_max"]["half_rate_runs"].size(), 5u);
  EXPECT_EQ(j["find_max"]["half_rate_runs"][0]["within_bound"], false);
  EXPECT_EQ(j["find_max"]["half_rate_runs"][1]["within_bound"], true);
  EXPECT_EQ(j["find_max"]["half_rate_runs"][3]["within_bound"], false);
  EXPECT_EQ(j["find_max"]["half_rate_within_bound"], 2);
  EXPECT_EQ(j["find_max"]["half_rate"]["latency_send_to_deliver"]["p99_ms"],
            9.5);
}

// Short runs against the in-process null server: the driver's setup, streams,
// acks and counting work end to end.
class NullServerRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = NullServer::Start("127.0.0.1:0");
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ep_.name = "null";
    ep_.target = "127.0.0.1:" + std::to_string(server_->port());
    ep_.ca_pem = server_->ca_pem();
    ep_.pid = getpid();
    o_.quiet = true;
    o_.duration_s = 0.5;
    o_.warmup_s = 0.2;
    o_.timeout_s = 20;
    o_.connections = 2;
  }
  void TearDown() override { server_->Shutdown(); }

  std::unique_ptr<NullServer> server_;
  Endpoint ep_;
  Options o_;
};

TEST_F(NullServerRunTest, PairsClosedLoop) {
  o_.pairs = 3;
  o_.window = 4;
  auto r = RunScenario(o_, ep_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->deliveries_window, 0u);
  EXPECT_GT(r->delivered_per_s, 0);
  EXPECT_EQ(r->deliveries_total, r->deliveries_expected);
  EXPECT_EQ(r->send_errors, 0u);
  EXPECT_GT(r->ack_calls, 0u);
  EXPECT_LE(r->ack_calls, r->deliveries_total);  // one Ack covers every id that arrived meanwhile
  EXPECT_GT(r->latency.count, 0u);
  EXPECT_GE(r->latency.p99_ms, r->latency.p50_ms);
  EXPECT_GE(r->server_cpu_s, 0);
  EXPECT_GT(r->server_peak_rss_kb, 0);
  // The "server" is this process: its gRPC threads sleep and wake.
  EXPECT_GT(r->server_context_switches_per_delivery, 0);
  EXPECT_GE(r->server_minor_faults_per_1k_deliveries, 0);
}

// --series-ms against a real server: every in-window latency lands in one
// interval, and the intervals cover the window.
TEST_F(NullServerRunTest, PairsOpenLoopWithSeries) {
  o_.pairs = 2;
  o_.rate = 400;
  o_.series_ms = 100;
  auto r = RunScenario(o_, ep_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->series_ms, 100);
  ASSERT_FALSE(r->series.empty());
  // The last interval may be a short one.
  EXPECT_NEAR(static_cast<double>(r->series.size()) * 0.1, r->window_s, 0.1);
  uint64_t messages = 0;
  double worst = 0;
  for (const SeriesPoint& p : r->series) {
    messages += p.messages;
    worst = std::max(worst, p.max_ms);
    if (p.messages > 0) {
      EXPECT_GE(p.p99_ms, p.p50_ms);
    }
  }
  EXPECT_EQ(messages, r->latency.count);
  EXPECT_GT(messages, 0u);
  EXPECT_DOUBLE_EQ(worst, r->latency.max_ms);
}

// parleyd's admin service answering GetServerStats only after `delay`, as a
// saturated server does: counters that grow by 5 commits and 20 Sends a call.
class SlowStatsAdmin final : public v1::AdminService::Service {
 public:
  explicit SlowStatsAdmin(absl::Duration delay) : delay_(delay) {}
  grpc::Status GetServerStats(grpc::ServerContext*,
                              const v1::GetServerStatsRequest*,
                              v1::GetServerStatsResponse* resp) override {
    absl::SleepFor(delay_);
    const int64_t n = calls_.fetch_add(1) + 1;
    resp->set_group_commits(static_cast<uint64_t>(5 * n));
    resp->set_sends_stored(static_cast<uint64_t>(20 * n));
    return grpc::Status::OK;
  }
  int64_t calls() const { return calls_.load(); }

 private:
  const absl::Duration delay_;
  std::atomic<int64_t> calls_{0};
};

// The window is bounded by the generator's clock, not by the server's stats
// RPC. With that RPC taking 1 s, a closed loop measured over a 1 s window
// counts its deliveries over that window: the 100 ms series, cut at the bounds
// the deliveries are counted between, covers the window_s the rate is divided
// by. (The window's length used to be taken after the first RPC returned
// while deliveries were counted from before it, 2 s of them here: a closed
// loop's rate came out twice too high.)
TEST_F(NullServerRunTest, ASlowStatsRpcDoesNotStretchTheWindow) {
  auto tls = core::GenerateTls("slow admin CA", "slow-admin", {}, 1, 1);
  ASSERT_TRUE(tls.ok()) << tls.status();
  SlowStatsAdmin admin(absl::Seconds(1));
  grpc::SslServerCredentialsOptions so;
  so.pem_key_cert_pairs.push_back({tls->key_pem, tls->cert_pem});
  int port = 0;
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(so), &port);
  b.RegisterService(&admin);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  ASSERT_TRUE(server != nullptr && port != 0);
  ep_.admin_target = "127.0.0.1:" + std::to_string(port);
  ep_.admin_token = "not-checked";
  ep_.ca_pem = server_->ca_pem() + tls->ca_cert_pem;  // both servers' CAs
  o_.pairs = 2;
  o_.window = 4;
  o_.duration_s = 1.0;
  o_.series_ms = 100;
  auto r = RunScenario(o_, ep_);
  server->Shutdown();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(admin.calls(), 2);
  EXPECT_EQ(r->server_group_commits, 5);  // read at both ends of the window
  EXPECT_EQ(r->server_sends_stored, 20);
  EXPECT_GE(r->window_s, 0.99);
  ASSERT_FALSE(r->series.empty());
  EXPECT_NEAR(static_cast<double>(r->series.size()) * 0.1, r->window_s, 0.15);
  EXPECT_GT(r->deliveries_window, 0u);
  EXPECT_DOUBLE_EQ(r->delivered_per_s,
                   static_cast<double>(r->deliveries_window) / r->window_s);
  EXPECT_EQ(r->deliveries_total, r->deliveries_expected);
}

TEST_F(NullServerRunTest, GroupE2eeOpenLoop) {
  o_.scenario = Scenario::kGroup;
  o_.mode = Mode::kE2eePreencrypted;
  o_.group_size = 5;
  o_.rate = 200;
  auto r = RunScenario(o_, ep_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->devices_per_send, 4);
  EXPECT_EQ(r->deliveries_total, r->sends_accepted * 4);
  EXPECT_GT(r->deliveries_window, 0u);
  EXPECT_EQ(r->send_errors, 0u);
}

// Real Signal encryption in the generator: every envelope is decrypted by its
// receiving device before it counts (bytes that are not a Signal message for
// that device would be decrypt errors and never delivered).
TEST_F(NullServerRunTest, GroupRealSignalClosedLoop) {
  o_.scenario = Scenario::kGroup;
  o_.mode = Mode::kE2eeSignal;
  o_.group_size = 4;
  o_.window = 2;
  auto r = RunScenario(o_, ep_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->mode, "e2ee-signal");
  EXPECT_EQ(r->decrypt_errors, 0u) << r->first_error;
  EXPECT_EQ(r->send_errors, 0u) << r->first_error;
  EXPECT_GT(r->deliveries_window, 0u);
  EXPECT_EQ(r->deliveries_total, r->sends_accepted * 3);
}

TEST_F(NullServerRunTest, DrainDeliversTheBacklog) {
  o_.scenario = Scenario::kDrain;
  o_.pairs = 1;
  o_.drain_messages = 300;
  auto r = RunScenario(o_, ep_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->drain_messages, 300u);
  EXPECT_EQ(r->deliveries_total, 300u);
  EXPECT_GT(r->drain_per_s, 0);
  EXPECT_GT(r->fill_per_s, 0);
  // The backlog was waiting: it came in batches of up to 64 envelopes.
  EXPECT_EQ(r->stream_envelopes, 300u);
  EXPECT_LT(r->stream_responses, 300u / 2);
}

TEST_F(NullServerRunTest, PairsOverSendStream) {
  o_.pairs = 3;
  o_.window = 8;
  o_.send_stream = true;
  auto r = RunScenario(o_, ep_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->send_errors, 0u) << r->first_error;
  EXPECT_GT(r->sends_accepted, 0u);
  EXPECT_GT(r->deliveries_window, 0u);
  EXPECT_EQ(r->deliveries_total, r->deliveries_expected);
  EXPECT_GT(r->latency.count, 0u);
}

TEST_F(NullServerRunTest, DrainWithoutBatchesOneEnvelopePerResponse) {
  o_.scenario = Scenario::kDrain;
  o_.pairs = 1;
  o_.drain_messages = 100;
  o_.receive_batch = 1;
  auto r = RunScenario(o_, ep_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->deliveries_total, 100u);
  EXPECT_EQ(r->stream_envelopes, 100u);
  EXPECT_EQ(r->stream_responses, 100u);
}

TEST_F(NullServerRunTest, IdleStreams) {
  o_.scenario = Scenario::kIdle;
  o_.pairs = 1;
  o_.idle_streams = 50;
  o_.idle_connections = 5;
  auto r = RunScenario(o_, ep_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->idle_streams, 50);
  EXPECT_EQ(r->idle_connections, 5);
  EXPECT_GT(r->rss_idle_kb, 0);
  EXPECT_GT(r->deliveries_window, 0u);
}

}  // namespace
}  // namespace parley::bench
