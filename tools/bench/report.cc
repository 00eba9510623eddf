// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/report.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace parley::bench {
namespace {

using nlohmann::json;

json OrNull(double v) { return v < 0 ? json(nullptr) : json(v); }
json OrNull(int64_t v) { return v < 0 ? json(nullptr) : json(v); }

json LatencyJson(const LatencySummary& l) {
  return {{"count", l.count},     {"p50_ms", l.p50_ms}, {"p99_ms", l.p99_ms},
          {"p999_ms", l.p999_ms}, {"max_ms", l.max_ms}, {"mean_ms", l.mean_ms}};
}

std::string Num(double v, int decimals = 0) {
  if (v < 0) return "-";
  return absl::StrFormat("%.*f", decimals, v);
}

// "p50 / p99" or, with `p999`, "p50 / p99 / p99.9" in ms; "-" when nothing
// was recorded.
std::string Percentiles(const LatencySummary& l, bool p999) {
  if (l.count == 0) return "-";
  return p999 ? absl::StrFormat("%.2f / %.2f / %.2f", l.p50_ms, l.p99_ms,
                                l.p999_ms)
              : absl::StrFormat("%.2f / %.2f", l.p50_ms, l.p99_ms);
}

// The p99 of the median and of the worst interval that carried messages,
// with the interval length: "2.10 / 19.80 (100 ms)"; "-" without a series.
std::string SeriesP99s(const RunResult& r) {
  std::vector<double> p99s;
  for (const SeriesPoint& p : r.series) {
    if (p.messages > 0) p99s.push_back(p.p99_ms);
  }
  if (p99s.empty()) return "-";
  std::sort(p99s.begin(), p99s.end());
  return absl::StrFormat("%.2f / %.2f (%d ms)", p99s[(p99s.size() - 1) / 2],
                         p99s.back(), r.series_ms);
}

// "k of n": how many of the n intervals that carried messages had a p99
// above `ms`.
std::string SeriesOver(const RunResult& r, double ms) {
  size_t n = 0, over = 0;
  for (const SeriesPoint& p : r.series) {
    if (p.messages == 0) continue;
    ++n;
    if (p.p99_ms > ms) ++over;
  }
  if (n == 0) return "-";
  return absl::StrCat(over, " of ", n);
}

}  // namespace

LatencySummary Summarize(const LatencyHistogram& h) {
  LatencySummary s;
  s.count = h.count();
  s.p50_ms = static_cast<double>(h.Percentile(50)) / 1e6;
  s.p99_ms = static_cast<double>(h.Percentile(99)) / 1e6;
  s.p999_ms = static_cast<double>(h.Percentile(99.9)) / 1e6;
  s.max_ms = static_cast<double>(h.max()) / 1e6;
  s.mean_ms = h.mean() / 1e6;
  return s;
}

std::vector<SeriesPoint> BuildSeries(
    std::vector<std::pair<int64_t, int64_t>> samples, int64_t window_start_ns,
    int64_t window_ns, int interval_ms) {
  std::vector<SeriesPoint> out;
  if (interval_ms <= 0 || window_ns <= 0) return out;
  const int64_t step = int64_t{interval_ms} * 1'000'000;
  const size_t n = static_cast<size_t>((window_ns + step - 1) / step);
  std::vector<std::vector<int64_t>> latencies(n);
  for (const auto& [send_ns, latency_ns] : samples) {
    const int64_t at = send_ns - window_start_ns;
    if (at < 0 || at >= window_ns) continue;
    latencies[static_cast<size_t>(at / step)].push_back(latency_ns);
  }
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    SeriesPoint& p = out[i];
    p.t_s = static_cast<double>(static_cast<int64_t>(i) * step) / 1e9;
    p.messages = latencies[i].size();
    if (latencies[i].empty()) continue;
    p.max_ms = static_cast<double>(*std::max_element(latencies[i].begin(),
                                                     latencies[i].end())) /
               1e6;
    p.p50_ms = static_cast<double>(ExactPercentile(latencies[i], 50)) / 1e6;
    p.p99_ms =
        static_cast<double>(ExactPercentile(std::move(latencies[i]), 99)) / 1e6;
  }
  return out;
}

json ToJson(const RunResult& r) {
  json j = {
      {"server", r.server},
      {"server_cpus", r.server_cpus},
      {"bench_cpus", r.bench_cpus},
      {"scenario", r.scenario},
      {"mode", r.mode},
      {"senders", r.senders},
      {"devices_per_send", r.devices_per_send},
      {"size_bytes", r.size},
      {"window", r.window},
      {"rate", r.rate},
      {"duration_s", r.duration_s},
      {"warmup_s", r.warmup_s},
      {"setup_s", r.setup_s},
      {"sends_accepted", r.sends_accepted},
      {"sends_window", r.sends_window},
      {"send_errors", r.send_errors},
      {"sends_skipped", r.sends_skipped},
      {"first_error", r.first_error},
      {"deliveries_window", r.deliveries_window},
      {"deliveries_total", r.deliveries_total},
      {"deliveries_expected", r.deliveries_expected},
      {"duplicates", r.duplicates},
      {"acked", r.acked},
      {"ack_errors", r.ack_errors},
      {"ack_calls", r.ack_calls},
      {"stream_envelopes", r.stream_envelopes},
      {"stream_responses", r.stream_responses},
      {"decrypt_errors", r.decrypt_errors},
      {"window_s", r.window_s},
      {"delivered_per_s", r.delivered_per_s},
      {"sends_per_s", r.sends_per_s},
      {"latency_send_to_deliver", LatencyJson(r.latency)},
      {"latency_send_rpc", LatencyJson(r.send_rpc)},
      {"latency_schedule_to_deliver", LatencyJson(r.latency_from_schedule)},
      {"issue_lag", LatencyJson(r.issue_lag)},
      {"server_pid", r.server_pid},
      {"server_cpu_s", OrNull(r.server_cpu_s)},
      {"server_cpu_s_per_1k_deliveries",
       OrNull(r.server_cpu_s_per_1k_deliveries)},
      {"server_cpu_s_per_1k_sends", OrNull(r.server_cpu_s_per_1k_sends)},
      {"server_minor_faults_per_1k_deliveries",
       OrNull(r.server_minor_faults_per_1k_deliveries)},
      {"server_context_switches_per_delivery",
       OrNull(r.server_context_switches_per_delivery)},
      {"server_group_commits", OrNull(r.server_group_commits)},
      {"server_sends_stored", OrNull(r.server_sends_stored)},
      {"server_sends_per_group_commit",
       OrNull(r.server_sends_per_group_commit)},
      {"server_send_latency",
       r.server_send_latency_count < 0
           ? json(nullptr)
           : json{{"count", r.server_send_latency_count},
                  {"p50_ms", OrNull(r.server_send_latency_p50_ms)},
                  {"p99_ms", OrNull(r.server_send_latency_p99_ms)},
                  {"p999_ms", OrNull(r.server_send_latency_p999_ms)}}},
      {"server_peak_rss_kb", OrNull(r.server_peak_rss_kb)},
      {"server_rss_kb", OrNull(r.server_rss_kb)},
      {"server_threads", OrNull(r.server_threads)},
      {"bench_cpu_s", OrNull(r.bench_cpu_s)},
      {"disk_bytes_before_compaction", OrNull(r.disk_bytes_before_compaction)},
      {"disk_bytes", OrNull(r.disk_bytes)},
      {"disk_compacted", r.compacted},
      {"disk_bytes_per_message", OrNull(r.disk_bytes_per_message)},
      {"loadavg_before", r.loadavg_before},
      {"loadavg_after", r.loadavg_after},
      {"notes", r.notes},
  };
  if (r.series_ms > 0) {
    json points = json::array();
    for (const SeriesPoint& p : r.series) {
      points.push_back({{"t_s", p.t_s},
                        {"messages", p.messages},
                        {"p50_ms", p.p50_ms},
                        {"p99_ms", p.p99_ms},
                        {"max_ms", p.max_ms}});
    }
    j["series"] = {{"interval_ms", r.series_ms}, {"points", points}};
  } else {
    j["series"] = nullptr;
  }
  if (r.scenario == "drain") {
    j["drain"] = {{"messages", r.drain_messages},
                  {"fill_per_s", OrNull(r.fill_per_s)},
                  {"drain_s", OrNull(r.drain_s)},
                  {"drain_per_s", OrNull(r.drain_per_s)}};
  }
  if (r.scenario == "idle") {
    j["idle"] = {{"streams", r.idle_streams},
                 {"connections", r.idle_connections},
                 {"open_s", OrNull(r.idle_open_s)},
                 {"rss_before_kb", OrNull(r.rss_before_idle_kb)},
                 {"rss_idle_kb", OrNull(r.rss_idle_kb)},
                 {"threads_before", OrNull(r.threads_before_idle)},
                 {"threads_idle", OrNull(r.threads_idle)}};
  }
  return j;
}

json OptionsToJson(const Options& o) {
  return {{"scenario", ScenarioName(o.scenario)},
          {"mode", ModeName(o.mode)},
          {"target_kind", TargetKindName(o.target_kind)},
          {"target", o.target},
          {"compare_null", o.compare_null},
          {"sync", o.sync},
          {"no_admin", o.no_admin},
          {"server_args", o.server_args},
          {"pairs", o.pairs},
          {"groups", o.groups},
          {"group_size", o.group_size},
          {"size", o.size},
          {"window", o.window},
          {"receive_batch", o.receive_batch},
          {"send_stream", o.send_stream},
          {"find_max", o.find_max},
          {"find_max_steps", o.find_max_steps},
          {"half_rate", o.half_rate},
          {"half_rate_runs", o.half_rate_runs},
          {"series_ms", o.series_ms},
          {"ack_batch", o.ack_batch},
          {"ack_flush_ms", o.ack_flush_ms},
          {"rate", o.rate},
          {"duration_s", o.duration_s},
          {"warmup_s", o.warmup_s},
          {"connections", o.connections},
          {"drain_messages", o.drain_messages},
          {"idle_streams", o.idle_streams},
          {"idle_connections", o.idle_connections},
          {"compact", o.compact}};
}

json BenchJson(const Options& o, const std::vector<RunResult>& runs) {
  json j = {
      {"tool", "parley-bench"}, {"format", 1}, {"options", OptionsToJson(o)}};
  j["runs"] = json::array();
  for (const RunResult& r : runs) j["runs"].push_back(ToJson(r));
  if (runs.size() == 2) {
    const RunResult &a = runs[0], &b = runs[1];
    auto ratio = [](double x, double y) {
      return y > 0 && x >= 0 ? json(x / y) : json(nullptr);
    };
    j["ratio_to_null"] = {
        {"delivered_per_s", ratio(a.delivered_per_s, b.delivered_per_s)},
        {"sends_per_s", ratio(a.sends_per_s, b.sends_per_s)},
        {"drain_per_s", ratio(a.drain_per_s, b.drain_per_s)},
        {"latency_p50", ratio(a.latency.p50_ms, b.latency.p50_ms)},
        {"latency_p99", ratio(a.latency.p99_ms, b.latency.p99_ms)},
    };
  }
  return j;
}

std::string FormatTable(const std::vector<RunResult>& runs) {
  if (runs.empty()) return "";
  struct Row {
    std::string label;
    std::function<std::string(const RunResult&)> cell;
    std::function<double(const RunResult&)> ratio_value;  // null: no ratio
  };
  const bool drain = runs[0].scenario == "drain";
  const bool idle = runs[0].scenario == "idle";
  std::vector<Row> rows = {
      {"server", [](const RunResult& r) { return r.server; }, nullptr},
      {"scenario / mode",
       [](const RunResult& r) {
         return absl::StrCat(r.scenario, " / ", r.mode);
       },
       nullptr},
      {"senders x fan-out, size",
       [](const RunResult& r) {
         return absl::StrCat(r.senders, " x ", r.devices_per_send, ", ", r.size,
                             " B");
       },
       nullptr},
      {"load",
       [](const RunResult& r) {
         return r.rate > 0 ? absl::StrCat("open ", Num(r.rate), "/s")
                           : absl::StrCat("closed, window ", r.window);
       },
       nullptr},
      {"window (s)", [](const RunResult& r) { return Num(r.window_s, 1); },
       nullptr},
      {"delivered msgs/s",
       [](const RunResult& r) { return Num(r.delivered_per_s); },
       [](const RunResult& r) { return r.delivered_per_s; }},
      {"accepted Sends/s",
       [](const RunResult& r) { return Num(r.sends_per_s); },
       [](const RunResult& r) { return r.sends_per_s; }},
      {"latency p50 / p99 / p99.9 (ms)",
       [](const RunResult& r) { return Percentiles(r.latency, true); },
       nullptr},
      {"Send RPC p50 / p99 (ms)",
       [](const RunResult& r) { return Percentiles(r.send_rpc, false); },
       nullptr},
      {"server CPU s / 1k deliveries",
       [](const RunResult& r) {
         return Num(r.server_cpu_s_per_1k_deliveries, 3);
       },
       [](const RunResult& r) { return r.server_cpu_s_per_1k_deliveries; }},
      {"server CPU s / 1k Sends",
       [](const RunResult& r) { return Num(r.server_cpu_s_per_1k_sends, 3); },
       [](const RunResult& r) { return r.server_cpu_s_per_1k_sends; }},
      {"server context switches / delivery",
       [](const RunResult& r) {
         return Num(r.server_context_switches_per_delivery, 2);
       },
       [](const RunResult& r) {
         return r.server_context_switches_per_delivery;
       }},
      {"server page faults / 1k deliveries",
       [](const RunResult& r) {
         return Num(r.server_minor_faults_per_1k_deliveries, 1);
       },
       [](const RunResult& r) {
         return r.server_minor_faults_per_1k_deliveries;
       }},
      {"server Sends per group commit",
       [](const RunResult& r) {
         return Num(r.server_sends_per_group_commit, 2);
       },
       [](const RunResult& r) { return r.server_sends_per_group_commit; }},
      {"server Send->reply p50 / p99 (ms)",
       [](const RunResult& r) {
         if (r.server_send_latency_count <= 0) return std::string("-");
         auto ms = [](double v) {
           return v < 0 ? std::string("over") : absl::StrFormat("%.2f", v);
         };
         return absl::StrCat(ms(r.server_send_latency_p50_ms), " / ",
                             ms(r.server_send_latency_p99_ms));
       },
       nullptr},
      {"bench CPU s (window)",
       [](const RunResult& r) { return Num(r.bench_cpu_s, 1); }, nullptr},
      {"server peak RSS (MB)",
       [](const RunResult& r) {
         return Num(
             r.server_peak_rss_kb < 0 ? -1 : r.server_peak_rss_kb / 1024.0, 1);
       },
       nullptr},
      {"server threads",
       [](const RunResult& r) { return Num(double(r.server_threads)); },
       nullptr},
      {"disk bytes / message",
       [](const RunResult& r) {
         if (r.disk_bytes_per_message < 0) return std::string("-");
         return absl::StrCat(Num(r.disk_bytes_per_message),
                             r.compacted ? " (compacted)" : " (not compacted)");
       },
       nullptr},
      {"delivered / expected, dups",
       [](const RunResult& r) {
         return absl::StrCat(r.deliveries_total, " / ", r.deliveries_expected,
                             ", ", r.duplicates);
       },
       nullptr},
      {"Ack RPCs per delivery",
       [](const RunResult& r) {
         return r.deliveries_total == 0
                    ? std::string("-")
                    : absl::StrFormat("%.2f", static_cast<double>(r.ack_calls) /
                                                  static_cast<double>(r.deliveries_total));
       },
       nullptr},
      {"envelopes per Receive response",
       [](const RunResult& r) {
         return r.stream_responses == 0
                    ? std::string("-")
                    : absl::StrFormat(
                          "%.2f", static_cast<double>(r.stream_envelopes) /
                                      static_cast<double>(r.stream_responses));
       },
       nullptr},
      {"send errors (skipped)",
       [](const RunResult& r) {
         return absl::StrCat(r.send_errors, " (", r.sends_skipped, ")");
       },
       nullptr},
  };
  // Rows that belong beside the Send call's latency go right after it.
  auto insert_after_send_rpc = [&rows](std::initializer_list<Row> more) {
    const auto after = std::find_if(
        rows.begin(), rows.end(),
        [](const Row& row) { return row.label == "Send RPC p50 / p99 (ms)"; });
    rows.insert(after == rows.end() ? after : after + 1, more);
  };
  const bool open_loop = std::any_of(
      runs.begin(), runs.end(), [](const RunResult& r) { return r.rate > 0; });
  if (open_loop) {
    // Beside the latency from the Send call: the same from the scheduled
    // send time, and the generator's own delay between the two.
    insert_after_send_rpc(
        {{"from schedule p50 / p99 / p99.9 (ms)",
          [](const RunResult& r) {
            return Percentiles(r.latency_from_schedule, true);
          },
          nullptr},
         {"issue lag p50 / p99 (ms)",
          [](const RunResult& r) { return Percentiles(r.issue_lag, false); },
          nullptr}});
  }
  const bool series =
      std::any_of(runs.begin(), runs.end(),
                  [](const RunResult& r) { return r.series_ms > 0; });
  if (series) {
    // Latency over time: is the tail a few bad intervals or every one?
    insert_after_send_rpc(
        {{"p99 per interval: median / worst (ms)",
          [](const RunResult& r) { return SeriesP99s(r); }, nullptr},
         {"intervals with p99 > 10 ms",
          [](const RunResult& r) { return SeriesOver(r, 10); }, nullptr}});
  }
  const bool signal = std::any_of(runs.begin(), runs.end(), [](const RunResult& r) {
    return r.mode == "e2ee-signal";
  });
  if (signal) {
    rows.push_back({"decrypt errors (e2ee-signal)",
                    [](const RunResult& r) { return absl::StrCat(r.decrypt_errors); },
                    nullptr});
  }
  if (drain) {
    rows.push_back(
        {"drain: queued messages",
         [](const RunResult& r) { return absl::StrCat(r.drain_messages); },
         nullptr});
    rows.push_back({"drain: fill Sends/s (offline)",
                    [](const RunResult& r) { return Num(r.fill_per_s); },
                    [](const RunResult& r) { return r.fill_per_s; }});
    rows.push_back({"drain: seconds",
                    [](const RunResult& r) { return Num(r.drain_s, 2); },
                    nullptr});
    rows.push_back({"drain: msgs/s on reconnect",
                    [](const RunResult& r) { return Num(r.drain_per_s); },
                    [](const RunResult& r) { return r.drain_per_s; }});
  }
  if (idle) {
    rows.push_back({"idle: streams / connections",
                    [](const RunResult& r) {
                      return absl::StrCat(r.idle_streams, " / ",
                                          r.idle_connections);
                    },
                    nullptr});
    rows.push_back({"idle: open time (s)",
                    [](const RunResult& r) { return Num(r.idle_open_s, 1); },
                    nullptr});
    rows.push_back({"idle: RSS before -> open (MB)",
                    [](const RunResult& r) {
                      if (r.rss_idle_kb < 0) return std::string("-");
                      return absl::StrFormat("%.1f -> %.1f",
                                             r.rss_before_idle_kb / 1024.0,
                                             r.rss_idle_kb / 1024.0);
                    },
                    nullptr});
    rows.push_back({"idle: threads before -> open",
                    [](const RunResult& r) {
                      return absl::StrCat(r.threads_before_idle, " -> ",
                                          r.threads_idle);
                    },
                    nullptr});
  }
  const bool pinned =
      std::any_of(runs.begin(), runs.end(), [](const RunResult& r) {
        return !r.server_cpus.empty() || !r.bench_cpus.empty();
      });
  if (pinned) {
    rows.push_back({"CPUs: server / bench",
                    [](const RunResult& r) {
                      auto or_all = [](const std::string& c) {
                        return c.empty() ? std::string("not pinned") : c;
                      };
                      return absl::StrCat(or_all(r.server_cpus), " / ",
                                          or_all(r.bench_cpus));
                    },
                    nullptr});
  }
  rows.push_back({"load average before",
                  [](const RunResult& r) { return r.loadavg_before; },
                  nullptr});

  const bool with_ratio = runs.size() == 2;
  size_t w0 = 0;
  for (const Row& row : rows) w0 = std::max(w0, row.label.size());
  std::vector<size_t> widths(runs.size(), 8);
  for (const Row& row : rows) {
    for (size_t i = 0; i < runs.size(); ++i) {
      widths[i] = std::max(widths[i], row.cell(runs[i]).size());
    }
  }
  std::string out;
  for (const Row& row : rows) {
    absl::StrAppend(&out,
                    absl::StrFormat("%-*s", static_cast<int>(w0), row.label));
    for (size_t i = 0; i < runs.size(); ++i) {
      absl::StrAppend(&out, "  ",
                      absl::StrFormat("%*s", static_cast<int>(widths[i]),
                                      row.cell(runs[i])));
    }
    if (with_ratio) {
      std::string ratio = row.label == "server" ? "ratio" : "";
      if (row.ratio_value) {
        const double a = row.ratio_value(runs[0]), b = row.ratio_value(runs[1]);
        if (a >= 0 && b > 0) ratio = absl::StrFormat("%.2f", a / b);
      }
      absl::StrAppend(&out, "  ", ratio);
    }
    absl::StrAppend(&out, "\n");
  }
  for (const RunResult& r : runs) {
    if (!r.first_error.empty()) {
      absl::StrAppend(&out, r.server, ": first error: ", r.first_error, "\n");
    }
    for (const std::string& n : r.notes)
      absl::StrAppend(&out, r.server, ": note: ", n, "\n");
  }
  return out;
}

std::string FormatSearch(const Search& s) {
  if (s.steps.empty()) return "";
  const std::string head = absl::StrCat("find-max, ", s.steps[0].server, ": ");
  std::string out = absl::StrCat(
      head, absl::StrFormat("%-7s %12s %9s %16s %17s %10s %7s\n", "window",
                            "delivered/s", "Sends/s", "p50 / p99 (ms)",
                            "CPU s / 1k deliv", "bench CPU", "errors"));
  const std::string pad(head.size() - 2, ' ');
  for (size_t i = 0; i < s.steps.size(); ++i) {
    const RunResult& r = s.steps[i];
    const std::string latency = Percentiles(r.latency, false);
    absl::StrAppend(
        &out, pad, i == s.best ? "* " : "  ",
        absl::StrFormat("%-7d %12s %9s %16s %17s %10s %7d\n", r.window,
                        Num(r.delivered_per_s), Num(r.sends_per_s), latency,
                        Num(r.server_cpu_s_per_1k_deliveries, 3),
                        Num(r.bench_cpu_s, 1), r.send_errors));
  }
  return out;
}

namespace {
// Both searches' best runs, or nullptr when there are not two of them.
std::pair<const RunResult*, const RunResult*> Bests(
    const std::vector<Search>& searches) {
  if (searches.size() != 2 || searches[0].steps.empty() ||
      searches[1].steps.empty()) {
    return {nullptr, nullptr};
  }
  return {&searches[0].steps[searches[0].best],
          &searches[1].steps[searches[1].best]};
}
}  // namespace

std::string FormatBestToBest(const std::vector<Search>& searches) {
  auto [a, b] = Bests(searches);
  if (a == nullptr) return "";
  return absl::StrFormat(
      "maxima: %s %s delivered/s at window %d, %s %s at window %d; ratio "
      "%s\n",
      a->server, Num(a->delivered_per_s), a->window, b->server,
      Num(b->delivered_per_s), b->window,
      b->delivered_per_s > 0
          ? absl::StrFormat("%.2f", a->delivered_per_s / b->delivered_per_s)
          : std::string("-"));
}

size_t MedianByP99(const std::vector<RunResult>& runs) {
  if (runs.empty()) return 0;
  auto p99 = [&runs](size_t i) {
    return runs[i].latency.count > 0 ? runs[i].latency.p99_ms
                                     : std::numeric_limits<double>::infinity();
  };
  std::vector<size_t> order(runs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&p99](size_t a, size_t b) { return p99(a) < p99(b); });
  return order[(order.size() - 1) / 2];
}

std::string FormatHalfRateRuns(const std::vector<RunResult>& runs) {
  if (runs.empty()) return "";
  const size_t median = MedianByP99(runs);
  const std::string bound = Num(kHalfRateP99BoundMs, 0);
  const std::string head = absl::StrCat("half rate, ", runs[0].server, ": ");
  std::string out = absl::StrCat(
      head,
      absl::StrFormat("%-4s %9s %12s %16s %14s %17s %10s %s\n", "run", "rate/s",
                      "delivered/s", "p50 / p99 (ms)",
                      absl::StrCat("intervals >", bound), "CPU s / 1k deliv",
                      "bench CPU", absl::StrCat("p99 <= ", bound)));
  const std::string pad(head.size() - 2, ' ');
  int within = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunResult& r = runs[i];
    const bool ok = WithinBound(r, kHalfRateP99BoundMs);
    within += ok ? 1 : 0;
    absl::StrAppend(
        &out, pad, i == median ? "* " : "  ",
        absl::StrFormat("%-4d %9s %12s %16s %14s %17s %10s %s\n", i + 1,
                        Num(r.rate), Num(r.delivered_per_s),
                        Percentiles(r.latency, false),
                        r.series_ms > 0 ? SeriesOver(r, kHalfRateP99BoundMs)
                                        : std::string("-"),
                        Num(r.server_cpu_s_per_1k_deliveries, 3),
                        Num(r.bench_cpu_s, 1), ok ? "yes" : "no"));
  }
  const RunResult& m = runs[median];
  absl::StrAppend(
      &out,
      absl::StrFormat(
          "p99 <= %s ms in %d of %d run%s at half the maximum (%s/s); "
          "median p99 %s ms\n",
          bound, within, static_cast<int>(runs.size()),
          runs.size() == 1 ? "" : "s", Num(m.rate),
          m.latency.count > 0 ? Num(m.latency.p99_ms, 2) : std::string("-")));
  return out;
}

json FindMaxJson(const Options& o, const std::vector<RunResult>& compared,
                 const std::vector<Search>& searches,
                 const std::vector<RunResult>& half_rate_runs) {
  json j = BenchJson(o, compared);
  json fm = {{"searches", json::array()}};
  for (const Search& s : searches) {
    if (s.steps.empty()) continue;
    json steps = json::array();
    for (const RunResult& r : s.steps) steps.push_back(ToJson(r));
    fm["searches"].push_back(
        {{"server", s.steps[0].server},
         {"best_window", s.steps[s.best].window},
         {"best_delivered_per_s", s.steps[s.best].delivered_per_s},
         {"steps", steps}});
  }
  fm["half_rate"] = half_rate_runs.empty()
                        ? json(nullptr)
                        : ToJson(half_rate_runs[MedianByP99(half_rate_runs)]);
  json halves = json::array();
  int within = 0;
  for (const RunResult& r : half_rate_runs) {
    json h = ToJson(r);
    h["within_bound"] = WithinBound(r, kHalfRateP99BoundMs);
    within += WithinBound(r, kHalfRateP99BoundMs) ? 1 : 0;
    halves.push_back(h);
  }
  fm["half_rate_runs"] = halves;
  fm["half_rate_p99_bound_ms"] = kHalfRateP99BoundMs;
  fm["half_rate_within_bound"] =
      half_rate_runs.empty() ? json(nullptr) : json(within);
  auto [a, b] = Bests(searches);
  fm["best_to_best_ratio"] = a != nullptr && b->delivered_per_s > 0
                                 ? json(a->delivered_per_s / b->delivered_per_s)
                                 : json(nullptr);
  j["find_max"] = fm;
  return j;
}

bool WithinBound(const RunResult& r, double p99_bound_ms) {
  return r.latency.count > 0 && r.latency.p99_ms <= p99_bound_ms &&
         r.sends_skipped == 0 && r.send_errors == 0 &&
         r.deliveries_total == r.deliveries_expected;
}

std::string FormatRateSearch(const RateSearch& s, double p99_bound_ms) {
  if (s.steps.empty()) return "";
  const std::string head = absl::StrCat("find-rate, ", s.steps[0].server, ": ");
  const std::string verdict = absl::StrCat("p99 <= ", Num(p99_bound_ms, 1));
  std::string out = absl::StrCat(
      head, absl::StrFormat("%-9s %12s %16s %17s %10s %8s %s\n", "rate/s",
                            "delivered/s", "p50 / p99 (ms)", "CPU s / 1k deliv",
                            "bench CPU", "skipped", verdict));
  const std::string pad(head.size() - 2, ' ');
  for (size_t i = 0; i < s.steps.size(); ++i) {
    const RunResult& r = s.steps[i];
    absl::StrAppend(
        &out, pad, static_cast<int>(i) == s.best ? "* " : "  ",
        absl::StrFormat("%-9s %12s %16s %17s %10s %8d %s\n", Num(r.rate),
                        Num(r.delivered_per_s), Percentiles(r.latency, false),
                        Num(r.server_cpu_s_per_1k_deliveries, 3),
                        Num(r.bench_cpu_s, 1), r.sends_skipped,
                        WithinBound(r, p99_bound_ms) ? "yes" : "no"));
  }
  return out;
}

namespace {
// The best run's rate of a search, or -1 without one.
double BestRateOf(const RateSearch& s) {
  return s.best < 0 || static_cast<size_t>(s.best) >= s.steps.size()
             ? -1
             : s.steps[s.best].rate;
}
}  // namespace

std::string FormatRateSummary(const std::vector<RateSearch>& searches,
                              double p99_bound_ms) {
  std::vector<std::string> parts;
  for (const RateSearch& s : searches) {
    if (s.steps.empty()) continue;
    const double best = BestRateOf(s);
    parts.push_back(absl::StrCat(s.steps[0].server, " ",
                                 best < 0
                                     ? std::string("none of the rates tried")
                                     : absl::StrCat(Num(best), "/s")));
  }
  if (parts.empty()) return "";
  std::string out =
      absl::StrCat("highest rate with p99 <= ", Num(p99_bound_ms, 1),
                   " ms: ", absl::StrJoin(parts, ", "));
  if (searches.size() == 2 && BestRateOf(searches[0]) > 0 &&
      BestRateOf(searches[1]) > 0) {
    absl::StrAppend(
        &out, absl::StrFormat("; ratio %.2f", BestRateOf(searches[0]) /
                                                  BestRateOf(searches[1])));
  }
  return out + "\n";
}

json FindRateJson(const Options& o, const std::vector<RateSearch>& searches) {
  std::vector<RunResult> bests;
  for (const RateSearch& s : searches) {
    if (BestRateOf(s) >= 0) bests.push_back(s.steps[s.best]);
  }
  json j = BenchJson(o, bests);
  json fr = {{"p99_bound_ms", o.find_rate_p99_ms}, {"searches", json::array()}};
  for (const RateSearch& s : searches) {
    if (s.steps.empty()) continue;
    json steps = json::array();
    for (const RunResult& r : s.steps) {
      json step = ToJson(r);
      step["within_bound"] = WithinBound(r, o.find_rate_p99_ms);
      steps.push_back(step);
    }
    const double best = BestRateOf(s);
    fr["searches"].push_back(
        {{"server", s.steps[0].server},
         {"best_rate", best < 0 ? json(nullptr) : json(best)},
         {"steps", steps}});
  }
  fr["ratio"] = searches.size() == 2 && BestRateOf(searches[0]) > 0 &&
                        BestRateOf(searches[1]) > 0
                    ? json(BestRateOf(searches[0]) / BestRateOf(searches[1]))
                    : json(nullptr);
  j["find_rate"] = fr;
  return j;
}

}  // namespace parley::bench
