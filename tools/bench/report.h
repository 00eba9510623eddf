// parley-bench results: one run's figures, the table and the JSON document.
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TOOLS_BENCH_REPORT_H_
#define PARLEY_TOOLS_BENCH_REPORT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"
#include "tools/bench/args.h"
#include "tools/bench/histogram.h"

namespace parley::bench {

// Latency percentiles in milliseconds.
struct LatencySummary {
  uint64_t count = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0, mean_ms = 0;
};
LatencySummary Summarize(const LatencyHistogram& h);  // h in nanoseconds

// --series-ms: one interval of the measured window.
struct SeriesPoint {
  double t_s = 0;         // the interval's start, seconds into the window
  uint64_t messages = 0;  // delivered messages whose Send call fell in it
  // Their Send->deliver latency (0 when `messages` is 0).
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
};
// Cuts the window [window_start_ns, window_start_ns + window_ns) into
// intervals of `interval_ms` (the last one may be shorter) and summarizes
// the samples, (Send call time, Send->deliver latency) in ns, of each; a
// sample outside the window is left out, an interval without samples is
// kept with `messages` 0. Empty when interval_ms or window_ns is not
// positive.
std::vector<SeriesPoint> BuildSeries(
    std::vector<std::pair<int64_t, int64_t>> samples, int64_t window_start_ns,
    int64_t window_ns, int interval_ms);

// Figures of one run. Negative numbers mean "not measured" (JSON null).
struct RunResult {
  std::string server;  // "parleyd", "null", "target"
  std::string scenario, mode;
  int senders = 0;
  int devices_per_send = 0;  // recipient devices of one Send (fan-out)
  int size = 0;
  int window = 0;
  double rate = 0;  // 0: closed loop
  double duration_s = 0, warmup_s = 0;
  double setup_s = 0;

  uint64_t sends_accepted = 0;  // whole run, warm-up included
  uint64_t sends_window = 0;    // accepted inside the measured window
  uint64_t send_errors = 0;
  uint64_t sends_skipped = 0;  // open loop: in-flight bound reached
  std::string first_error;
  uint64_t deliveries_window = 0;  // bench envelopes received in the window
  uint64_t deliveries_total = 0;   // unique bench envelopes, whole run
  uint64_t deliveries_expected = 0;
  uint64_t duplicates = 0;
  uint64_t acked = 0;
  uint64_t ack_errors = 0;
  uint64_t ack_calls = 0;  // Ack RPCs (each acks the ids that arrived meanwhile)
  // Envelopes received on Receive streams, and the responses that carried
  // them (a batch response carries several: ReceiveRequest.max_batch).
  uint64_t stream_envelopes = 0;
  uint64_t stream_responses = 0;
  // --mode e2ee-signal: envelopes the receiving device could not decrypt.
  uint64_t decrypt_errors = 0;
  double window_s = 0;         // measured length of the window
  double delivered_per_s = 0;  // deliveries_window / window_s
  double sends_per_s = 0;
  LatencySummary latency;   // Send call -> envelope on the recipient stream
  LatencySummary send_rpc;  // Send call -> SendResponse
  // Open loop only (count 0 otherwise): scheduled send time -> envelope,
  // and scheduled time -> Send call (the generator's own delay in issuing).
  LatencySummary latency_from_schedule;
  LatencySummary issue_lag;
  // --series-ms (pairs, group): the latency per interval of the window.
  int series_ms = 0;
  std::vector<SeriesPoint> series;

  int64_t server_pid = 0;
  // --server-cpus / --bench-cpus as "0-1,3"; empty: not pinned (a --target
  // server's own affinity is not known).
  std::string server_cpus;
  std::string bench_cpus;
  double server_cpu_s = -1;  // utime+stime inside the window
  double server_cpu_s_per_1k_deliveries = -1;
  double server_cpu_s_per_1k_sends = -1;
  // Minor page faults of the server inside the window, per 1,000 deliveries
  // (/proc/<pid>/stat minflt).
  double server_minor_faults_per_1k_deliveries = -1;
  // Context switches of the server's threads inside the window, per
  // delivery (voluntary + involuntary, /proc/<pid>/task/*/status).
  double server_context_switches_per_delivery = -1;
  // parleyd's group commits inside the window (GetServerStats, when the
  // bench reaches its admin service) and the Sends it stored meanwhile:
  // Sends per commit is how many Sends share one log write (or fsync).
  int64_t server_group_commits = -1;
  int64_t server_sends_stored = -1;
  double server_sends_per_group_commit = -1;
  // The server's own Send latency over the window (GetServerStats
  // send_latency, the end's histogram minus the start's): from its Send
  // handler starting to the durable reply, bucket bounds in ms (at most 9%
  // high; latency_histogram.h). count -1: not read; a percentile -1: above
  // the last bound.
  int64_t server_send_latency_count = -1;
  double server_send_latency_p50_ms = -1;
  double server_send_latency_p99_ms = -1;
  double server_send_latency_p999_ms = -1;
  int64_t server_peak_rss_kb = -1;  // VmHWM
  int64_t server_rss_kb = -1;       // VmRSS at the end of the load
  int64_t server_threads = -1;
  double bench_cpu_s = -1;  // this process, inside the window

  int64_t disk_bytes_before_compaction = -1;
  int64_t disk_bytes = -1;  // after compaction when `compacted`
  bool compacted = false;
  double disk_bytes_per_message = -1;

  // drain
  uint64_t drain_messages = 0;
  double fill_per_s = -1;   // Sends/s while the recipients were offline
  double drain_s = -1;      // stream open -> last queued message received
  double drain_per_s = -1;  // messages/s to the reconnecting devices

  // idle
  int idle_streams = 0;
  int idle_connections = 0;
  double idle_open_s = -1;
  int64_t rss_before_idle_kb = -1;  // after the idle accounts exist
  int64_t rss_idle_kb = -1;         // with every idle stream open
  int64_t threads_before_idle = -1;
  int64_t threads_idle = -1;

  std::string loadavg_before, loadavg_after;
  std::vector<std::string> notes;
};

nlohmann::json ToJson(const RunResult& r);
nlohmann::json OptionsToJson(const Options& o);
// The whole document: options, runs and, with two runs, the parleyd/null ratio.
nlohmann::json BenchJson(const Options& o, const std::vector<RunResult>& runs);
// Human-readable table (one column per run, plus a ratio column for two runs).
std::string FormatTable(const std::vector<RunResult>& runs);

// --find-max: the runs of one server's search, in the order run, and the
// index of the best (highest delivered rate).
struct Search {
  std::vector<RunResult> steps;
  size_t best = 0;
};
// One line per run: window, rates, latency, CPU; the best marked "*".
std::string FormatSearch(const Search& s);
// With two searches (parleyd, null): each one's maximum and their ratio, one
// line. Beside the same-window comparison, so that a parleyd best found at
// a window where the null server is already past its own maximum does not
// flatter the ratio. Empty unless there are two non-empty searches.
std::string FormatBestToBest(const std::vector<Search>& searches);
// The bound of issue 6's latency target, for the half-rate runs' verdicts:
// p99 Send->deliver (from the Send call) at most 10 ms at half the maximum.
inline constexpr double kHalfRateP99BoundMs = 10;
// --half-rate-runs: the index of the median run by p99 Send->deliver (the
// lower of the two middle runs for an even count; a run without latency
// samples counts as the worst). 0 for no runs.
size_t MedianByP99(const std::vector<RunResult>& runs);
// One line per half-rate run (rate, delivered/s, p50 / p99, intervals with
// p99 over 10 ms when --series-ms was given, CPU, bench CPU, verdict
// against kHalfRateP99BoundMs by WithinBound), the median run marked "*",
// then the summary: "p99 <= 10 ms in K of N runs at half the maximum (R/s);
// median p99 X ms". Empty for no runs.
std::string FormatHalfRateRuns(const std::vector<RunResult>& runs);
// The --find-max document: BenchJson of `compared` (parleyd's best run and,
// with --compare-null, the null server's run at the same window), plus
// "find_max": every search's runs and best window, the ratio of the two
// searches' maxima (best_to_best_ratio, null unless two searches), and the
// half-rate runs: "half_rate" the median one (null without any),
// "half_rate_runs" each with its "within_bound", "half_rate_p99_bound_ms"
// and "half_rate_within_bound" (how many; null without runs).
nlohmann::json FindMaxJson(const Options& o,
                           const std::vector<RunResult>& compared,
                           const std::vector<Search>& searches,
                           const std::vector<RunResult>& half_rate_runs);

// --find-rate: whether a run carried its rate within the bound: p99
// Send->deliver (from the Send call) at most `p99_bound_ms` over at least
// one message, no Send skipped or failed, every accepted message delivered.
bool WithinBound(const RunResult& r, double p99_bound_ms);

// --find-rate: one server's runs in the order run and the index of the
// highest rate within the bound (-1: none was).
struct RateSearch {
  std::vector<RunResult> steps;
  int best = -1;
};
// One line per run: rate, delivered/s, latency, CPU, skipped, within the
// bound or not; the best marked "*".
std::string FormatRateSearch(const RateSearch& s, double p99_bound_ms);
// "highest rate with p99 <= B ms: parleyd R/s, null R/s; ratio X", one
// line over every search ("none of the rates tried" for a search without
// one; the ratio with two searches that both have one).
std::string FormatRateSummary(const std::vector<RateSearch>& searches,
                              double p99_bound_ms);
// The --find-rate document: BenchJson of each search's best run, plus
// "find_rate": the bound, every search's runs with their verdicts and its
// best rate (null when none), and the ratio of the two best rates (null
// unless two searches both found one).
nlohmann::json FindRateJson(const Options& o,
                            const std::vector<RateSearch>& searches);

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_REPORT_H_
