// parley-bench: the end-to-end load generator for parleyd (see
// BENCHMARKS.md, "parley-bench (server load)").
// SPDX-License-Identifier: GPL-3.0-or-later
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tools/bench/args.h"
#include "tools/bench/compact.h"
#include "tools/bench/cpus.h"
#include "tools/bench/driver.h"
#include "tools/bench/find_max.h"
#include "tools/bench/proc.h"
#include "tools/bench/process.h"
#include "tools/bench/report.h"

namespace parley::bench {
namespace {

void OnSignal(int) { RequestStop(); }

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Tail(const std::string& path, size_t lines) {
  auto text = ReadFile(path);
  if (!text.ok()) return "";
  size_t pos = text->size();
  for (size_t n = 0; n <= lines && pos > 0; ++n) {
    size_t p = text->rfind('\n', pos - 1);
    if (p == std::string::npos) {
      pos = 0;
      break;
    }
    pos = p;
  }
  return text->substr(pos);
}

// Whether `binary --help` lists `flag` (parleyd's flags differ by version).
bool HelpMentions(const std::string& binary, const std::string& flag) {
  std::string cmd = "'";
  for (char c : binary) {
    if (c == '\'') {
      cmd += "'\\''";
    } else {
      cmd += c;
    }
  }
  cmd += "' --help 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return false;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && out.size() < (1 << 20))
    out.append(buf, n);
  pclose(f);
  return out.find(flag) != std::string::npos;
}

bool UserSets(const Options& o, const std::string& flag) {
  for (const auto& a : o.server_args) {
    if (a == flag || a.rfind(flag + "=", 0) == 0) return true;
  }
  return false;
}

// Starts parleyd (null == false) or parley-null-server on a temporary data
// directory, runs the scenario, stops the server and measures its disk use.
absl::StatusOr<RunResult> RunSpawned(const Options& o, bool null) {
  char tmpl[] = "/tmp/parley-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  const std::string dir = tmpl;
  const std::string data = dir + "/data", port_file = dir + "/port",
                    log = dir + "/server.log";
  std::vector<std::string> argv;
  std::string rate_limit_note;
  if (null) {
    argv = {o.null_server_bin, "--data-dir",  data,     "--listen",
            "127.0.0.1:0",     "--port-file", port_file};
  } else {
    argv = {o.parleyd,     "--data-dir",  data,     "--listen",
            "127.0.0.1:0", "--port-file", port_file};
    if (o.no_admin) {
      argv.insert(argv.end(), {"--admin-listen", ""});
    } else {
      argv.insert(argv.end(), {"--admin-listen", "127.0.0.1:0",
                               "--admin-port-file", dir + "/admin-port"});
    }
    if (o.mode != Mode::kTransport) {
      argv.push_back("--policy");
      argv.push_back("preset:signal");
    }
    if (o.sync) argv.push_back("--sync");
    // One bench device sends thousands of messages a second, far above any
    // person: lift the per-device rate limit unless the caller sets it.
    if (!UserSets(o, "--device-rate-limit") &&
        HelpMentions(o.parleyd, "--device-rate-limit")) {
      argv.push_back("--device-rate-limit");
      argv.push_back("0");
      rate_limit_note =
          "parleyd per-device rate limit off (--device-rate-limit 0)";
    }
    argv.insert(argv.end(), o.server_args.begin(), o.server_args.end());
  }
  absl::StatusOr<RunResult> result;
  {
    auto server = ServerProcess::Start(
        argv, port_file, log, absl::Seconds(o.timeout_s), o.server_cpus);
    if (!server.ok()) {
      std::cerr << Tail(log, 20);
      std::error_code ec;
      if (!o.keep_data) std::filesystem::remove_all(dir, ec);
      return server.status();
    }
    auto ca = ReadFile(data + "/tls/ca.pem");
    if (!ca.ok()) {
      result = ca.status();
    } else {
      Endpoint ep;
      ep.name = null ? "null" : "parleyd";
      ep.target = absl::StrCat("127.0.0.1:", (*server)->port());
      ep.ca_pem = *ca;
      ep.pid = (*server)->pid();
      // The admin service's counters (group commits) come from the
      // operator token parleyd writes on its first start.
      std::string stats_note;
      if (!null && !o.no_admin) {
        auto port = ReadFile(dir + "/admin-port");
        auto token = ReadFile(data + "/admin/operator.token");
        if (port.ok() && token.ok()) {
          ep.admin_target =
              absl::StrCat("127.0.0.1:", absl::StripAsciiWhitespace(*port));
          ep.admin_token = std::string(absl::StripAsciiWhitespace(*token));
        } else {
          stats_note = absl::StrCat(
              "server stats not read (",
              (port.ok() ? token.status() : port.status()).message(), ")");
        }
      }
      result = RunScenario(o, ep);
      if (result.ok() && !stats_note.empty())
        result->notes.push_back(stats_note);
      if (result.ok()) result->server_cpus = FormatCpuList(o.server_cpus);
      if (result.ok() && !rate_limit_note.empty())
        result->notes.push_back(rate_limit_note);
      if (result.ok() && !null && o.no_admin) {
        result->notes.push_back(
            "parleyd without its admin service (--admin-listen \"\")");
      }
    }
    auto code = (*server)->Stop(absl::Seconds(20));
    if (result.ok()) {
      if (!code.ok()) {
        result->notes.push_back(std::string(code.status().message()));
      } else if (*code != 0) {
        result->notes.push_back(absl::StrCat("server exited with code ", *code,
                                             " (log ", log, ")"));
      }
    } else {
      std::cerr << "server log tail (" << log << "):\n"
                << Tail(log, 20) << "\n";
    }
  }
  if (result.ok() && !null) {
    auto before = DiskUsage(data + "/db");
    if (before.ok()) result->disk_bytes_before_compaction = *before;
    absl::Status cs =
        o.compact ? CompactRocksDb(data + "/db") : absl::OkStatus();
    if (!cs.ok())
      result->notes.push_back(absl::StrCat("compaction: ", cs.message()));
    auto after = DiskUsage(data + "/db");
    if (after.ok()) {
      result->disk_bytes = *after;
      result->compacted = o.compact && cs.ok();
      if (result->sends_accepted > 0) {
        result->disk_bytes_per_message =
            static_cast<double>(*after) /
            static_cast<double>(result->sends_accepted);
      }
    }
  }
  if (o.keep_data) {
    if (result.ok())
      result->notes.push_back(absl::StrCat("data kept in ", dir));
  } else {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return result;
}

absl::StatusOr<RunResult> RunTarget(const Options& o) {
  auto ca = ReadFile(o.ca_file);
  if (!ca.ok()) return ca.status();
  Endpoint ep;
  ep.name = "target";
  ep.target = o.target;
  ep.ca_pem = *ca;
  ep.pid = static_cast<pid_t>(o.server_pid);
  auto r = RunScenario(o, ep);
  if (r.ok() && ep.pid == 0)
    r->notes.push_back("server CPU and RSS not measured (no --server-pid)");
  if (r.ok() && !o.server_data_dir.empty()) {
    auto du = DiskUsage(o.server_data_dir);
    if (du.ok()) {
      r->disk_bytes = *du;
      r->compacted = false;
      if (r->sends_accepted > 0) {
        r->disk_bytes_per_message =
            static_cast<double>(*du) / static_cast<double>(r->sends_accepted);
      }
      r->notes.push_back(
          "bytes on disk of a live server: whole data directory, not "
          "compacted");
    }
  }
  return r;
}

// The end of every invocation: writes `doc` to --json (when both are there)
// and reports `failed`. Returns the exit code.
int Conclude(const Options& o, const std::optional<nlohmann::json>& doc,
             const absl::Status& failed) {
  if (!o.json_file.empty() && doc.has_value()) {
    std::ofstream out(o.json_file);
    out << doc->dump(2) << "\n";
    if (!out) {
      std::cerr << "parley-bench: cannot write " << o.json_file << "\n";
      return 1;
    }
  }
  if (!failed.ok()) {
    std::cerr << "parley-bench: " << failed << "\n";
    return 1;
  }
  return 0;
}

absl::StatusOr<RunResult> RunOnce(const Options& o, TargetKind kind) {
  return kind == TargetKind::kTarget ? RunTarget(o)
                                     : RunSpawned(o, kind == TargetKind::kNull);
}

// --find-max on one server: closed-loop runs at the windows NextWindow
// picks, each on a fresh spawned server (or the same --target).
absl::StatusOr<Search> FindMax(const Options& o, TargetKind kind,
                               int min_steps) {
  FindMaxOptions fo;
  fo.first_window = o.window;
  fo.max_steps = o.find_max_steps;
  fo.min_steps = min_steps;
  std::vector<SearchStep> done;
  Search search;
  for (int w = NextWindow(fo, done); w != 0 && !StopRequested();
       w = NextWindow(fo, done)) {
    Options step = o;
    step.window = w;
    if (!o.quiet) {
      std::cerr << "parley-bench: find-max, "
                << (kind == TargetKind::kNull ? "null" : "server")
                << ": window " << w << "\n";
    }
    auto r = RunOnce(step, kind);
    if (!r.ok()) return r.status();
    done.push_back({w, r->delivered_per_s});
    search.steps.push_back(*std::move(r));
  }
  if (done.empty()) return absl::CancelledError("find-max: stopped");
  search.best = BestStep(done);
  return search;
}

// The searches of --find-max or --find-rate: the target's, then with
// --compare-null the null server's. `search(kind, done)` runs one, given
// those already done. The first failure ends them; `failed` holds it and
// `done` what finished before it.
template <typename S>
struct Searches {
  std::vector<S> done;
  absl::Status failed;
};
template <typename S, typename SearchFn>
Searches<S> SearchBoth(const Options& o, SearchFn search) {
  Searches<S> out;
  absl::StatusOr<S> first = search(o.target_kind, out.done);
  if (!first.ok()) {
    out.failed = first.status();
    return out;
  }
  out.done.push_back(*std::move(first));
  if (!o.compare_null || StopRequested()) return out;
  absl::StatusOr<S> null = search(TargetKind::kNull, out.done);
  if (null.ok()) {
    out.done.push_back(*std::move(null));
  } else {
    out.failed = null.status();
  }
  return out;
}

// --find-max [--compare-null] [--half-rate]: prints every search; then
// parleyd's best run beside the null server's run at the same window (the
// same RPC pattern; the null server's search covers every window parleyd's
// did, and may go on to its own maximum); then the half-rate run.
int MainFindMax(const Options& o) {
  auto [searches, failed] = SearchBoth<Search>(
      o, [&o](TargetKind kind, const std::vector<Search>& done) {
        // The null server's search covers every window parleyd's ran.
        const int min_steps =
            done.empty() ? 1 : static_cast<int>(done[0].steps.size());
        return FindMax(o, kind, min_steps);
      });
  // --half-rate: --half-rate-runs open-loop runs at half the best run's
  // Sends/s, each on a fresh server; the first failure ends them.
  std::vector<RunResult> halves;
  if (failed.ok() && o.half_rate && !StopRequested()) {
    const RunResult& best = searches[0].steps[searches[0].best];
    if (!(best.sends_per_s > 0)) {
      failed = absl::FailedPreconditionError(
          "--half-rate: the best run accepted no Sends");
    }
    Options h = o;
    h.rate = best.sends_per_s / 2;
    for (int i = 0; failed.ok() && i < o.half_rate_runs && !StopRequested();
         ++i) {
      if (!o.quiet) {
        std::cerr << "parley-bench: half rate (" << i + 1 << " of "
                  << o.half_rate_runs << "): open loop at " << h.rate
                  << " Sends/s\n";
      }
      auto r = RunOnce(h, o.target_kind);
      if (r.ok()) {
        halves.push_back(*std::move(r));
      } else {
        failed = r.status();
      }
    }
  }
  std::vector<RunResult> compared;
  for (const Search& s : searches) std::cout << FormatSearch(s);
  if (!searches.empty()) {
    const RunResult& best = searches[0].steps[searches[0].best];
    compared.push_back(best);
    if (searches.size() == 2) {
      for (const RunResult& r : searches[1].steps) {
        if (r.window == best.window) compared.push_back(r);
      }
    }
    std::cout << "\n"
              << (compared.size() == 2
                      ? "the best run, and the null server at its window:\n"
                      : "the best run:\n")
              << FormatTable(compared);
    if (searches.size() == 2) std::cout << FormatBestToBest(searches);
  }
  if (!halves.empty()) {
    std::cout << "\n"
              << FormatHalfRateRuns(halves) << "\nhalf the maximum rate"
              << (halves.size() > 1
                      ? absl::StrCat(", the median of ", halves.size(), " runs")
                      : std::string())
              << ":\n"
              << FormatTable({halves[MedianByP99(halves)]});
  }
  std::optional<nlohmann::json> doc;
  if (!searches.empty()) doc = FindMaxJson(o, compared, searches, halves);
  return Conclude(o, doc, failed);
}

// --find-rate: one server's open-loop search (find_max.h, NextRate).
absl::StatusOr<RateSearch> FindRate(const Options& o, TargetKind kind) {
  FindRateOptions fo;
  fo.first_rate = o.rate;
  fo.max_steps = o.find_max_steps;
  std::vector<RateStep> done;
  RateSearch search;
  for (double rate = NextRate(fo, done); rate > 0 && !StopRequested();
       rate = NextRate(fo, done)) {
    Options step = o;
    step.rate = rate;
    if (!o.quiet) {
      std::cerr << "parley-bench: find-rate, "
                << (kind == TargetKind::kNull ? "null" : "server") << ": "
                << rate << "/s\n";
    }
    auto r = RunOnce(step, kind);
    if (!r.ok()) return r.status();
    done.push_back({rate, WithinBound(*r, o.find_rate_p99_ms)});
    search.steps.push_back(*std::move(r));
  }
  if (done.empty()) return absl::CancelledError("find-rate: stopped");
  search.best = BestRate(done);
  return search;
}

// --find-rate [--compare-null]: each server's search (the null server's
// starts at the same --rate), the summary line, then each best run's table.
int MainFindRate(const Options& o) {
  auto [searches, failed] = SearchBoth<RateSearch>(
      o, [&o](TargetKind kind, const std::vector<RateSearch>&) {
        return FindRate(o, kind);
      });
  for (const RateSearch& s : searches) {
    std::cout << FormatRateSearch(s, o.find_rate_p99_ms);
  }
  std::cout << FormatRateSummary(searches, o.find_rate_p99_ms);
  for (const RateSearch& s : searches) {
    if (s.best < 0) continue;
    std::cout << "\n"
              << s.steps[s.best].server << " at its highest rate within "
              << "the bound:\n"
              << FormatTable({s.steps[s.best]});
  }
  std::optional<nlohmann::json> doc;
  if (!searches.empty()) doc = FindRateJson(o, searches);
  return Conclude(o, doc, failed);
}

int Main(int argc, char** argv) {
  // Debian's Abseil checks every mutex acquisition for lock-order cycles
  // (GraphCycles: 3% of the generator's CPU in a group run); parleyd turns
  // the check off too, and the generator shares the cores with the server.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  RaiseFileLimit();
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string help;
  auto opts = ParseArgs(argc, argv, &help);
  if (!opts.ok()) {
    std::cerr << "parley-bench: " << opts.status().message() << "\n";
    return 2;
  }
  if (!help.empty()) {
    std::cout << help;
    return 0;
  }
  const Options& o = *opts;
  // Before any other thread starts: gRPC's threads inherit the mask.
  if (!o.bench_cpus.empty()) {
    absl::Status pinned = PinCallingThread(o.bench_cpus);
    if (!pinned.ok()) {
      std::cerr << "parley-bench: --bench-cpus: " << pinned.message() << "\n";
      return 2;
    }
  }
  if (o.find_max) return MainFindMax(o);
  if (o.find_rate_p99_ms > 0) return MainFindRate(o);
  std::vector<RunResult> runs;
  absl::Status failed;
  absl::StatusOr<RunResult> first = RunOnce(o, o.target_kind);
  if (first.ok()) {
    runs.push_back(*first);
  } else {
    failed = first.status();
  }
  if (o.compare_null && failed.ok() && !StopRequested()) {
    auto null = RunSpawned(o, true);
    if (null.ok()) {
      runs.push_back(*null);
    } else {
      failed = null.status();
    }
  }
  if (!runs.empty()) std::cout << FormatTable(runs);
  std::optional<nlohmann::json> doc;
  if (!runs.empty()) doc = BenchJson(o, runs);
  return Conclude(o, doc, failed);
}

}  // namespace
}  // namespace parley::bench

int main(int argc, char** argv) { return parley::bench::Main(argc, argv); }
