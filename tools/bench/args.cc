// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/args.h"

#include <map>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "tools/bench/cpus.h"

#ifndef PARLEY_BENCH_DEFAULT_PARLEYD
#define PARLEY_BENCH_DEFAULT_PARLEYD "parleyd"
#endif
#ifndef PARLEY_BENCH_DEFAULT_NULL_SERVER
#define PARLEY_BENCH_DEFAULT_NULL_SERVER "parley-null-server"
#endif

namespace parley::bench {

const char* ScenarioName(Scenario s) {
  switch (s) {
    case Scenario::kPairs:
      return "pairs";
    case Scenario::kGroup:
      return "group";
    case Scenario::kDrain:
      return "drain";
    case Scenario::kIdle:
      return "idle";
  }
  return "?";
}

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kTransport:
      return "transport";
    case Mode::kE2eePreencrypted:
      return "e2ee-preencrypted";
    case Mode::kE2eeSignal:
      return "e2ee-signal";
  }
  return "?";
}

const char* TargetKindName(TargetKind t) {
  switch (t) {
    case TargetKind::kSpawn:
      return "spawn";
    case TargetKind::kTarget:
      return "target";
    case TargetKind::kNull:
      return "null";
  }
  return "?";
}

absl::StatusOr<Options> ParseArgs(int argc, const char* const* argv,
                                  std::string* help) {
  help->clear();
  Options o;
  o.parleyd = PARLEY_BENCH_DEFAULT_PARLEYD;
  o.null_server_bin = PARLEY_BENCH_DEFAULT_NULL_SERVER;
  std::string scenario = "pairs", mode = "transport";
  bool spawn = false, null_server = false;

  CLI::App app{
      "parley-bench: drives parleyd over gRPC+TLS and measures delivered "
      "messages/s, Send->deliver latency, server CPU, RSS and bytes on disk"};
  app.add_option("--scenario", scenario, "pairs | group | drain | idle")
      ->capture_default_str();
  app.add_option("--mode", mode,
                 "transport (PlainBody) | e2ee-preencrypted (opaque per-device "
                 "ciphertexts) | e2ee-signal (Signal-encrypted by the sending "
                 "device, decrypted by each receiving device)")
      ->capture_default_str();
  auto* spawn_opt =
      app.add_flag("--spawn", spawn,
                   "start parleyd on a temporary data directory (the default)");
  auto* target_opt =
      app.add_option("--target", o.target, "host:port of a running parleyd");
  auto* null_opt =
      app.add_flag("--null-server", null_server,
                   "run against the null server (gRPC, no storage, no policy)");
  spawn_opt->excludes(target_opt)->excludes(null_opt);
  target_opt->excludes(null_opt);
  app.add_flag("--compare-null", o.compare_null,
               "run the same scenario on the null server too; print the ratio");
  app.add_option("--ca", o.ca_file, "CA certificate (PEM) of --target")
      ->check(CLI::ExistingFile);
  app.add_option("--server-pid", o.server_pid,
                 "pid of the --target server (CPU and RSS from /proc)");
  app.add_option("--server-data-dir", o.server_data_dir,
                 "data directory of the --target server (bytes on disk)");
  std::string server_cpus;
  std::string bench_cpus;
  auto* server_cpus_opt = app.add_option(
      "--server-cpus", server_cpus,
      "CPUs the spawned server runs on, as taskset -c (e.g. 0 or "
      "0-1,3); default: every CPU the bench may use");
  auto* bench_cpus_opt =
      app.add_option("--bench-cpus", bench_cpus,
                     "CPUs the bench itself runs on (e.g. 1), so it does not "
                     "queue beside the server; default: not pinned");
  app.add_option("--parleyd", o.parleyd, "parleyd binary for --spawn")
      ->capture_default_str();
  app.add_option("--null-server-bin", o.null_server_bin,
                 "parley-null-server binary")
      ->capture_default_str();
  app.add_option("--server-arg", o.server_args,
                 "extra argument for the spawned parleyd (repeatable)")
      ->allow_extra_args(false);
  app.add_flag("--sync", o.sync,
               "spawned parleyd with --sync (fsync per write, group commit)");
  app.add_flag(
      "--no-admin", o.no_admin,
      "spawned parleyd without its admin service (--admin-listen \"\")");
  app.add_flag("--keep-data", o.keep_data,
               "keep the spawned server's temporary data directory");
  bool no_compact = false;
  app.add_flag("--no-compact", no_compact,
               "measure bytes on disk without compacting the stopped store");
  app.add_option("--pairs", o.pairs,
                 "sender/recipient pairs (pairs, drain, idle)")
      ->capture_default_str();
  app.add_option("--groups", o.groups, "groups, one sender each (group)")
      ->capture_default_str();
  app.add_option("--group-size", o.group_size,
                 "members per group, sender included")
      ->capture_default_str();
  app.add_option("--size", o.size, "payload bytes per message (and device)")
      ->capture_default_str();
  app.add_option("--window", o.window,
                 "closed loop: Sends in flight per sender")
      ->capture_default_str();
  app.add_option("--ack-batch", o.ack_batch,
                 "receivers ack once this many ids are pending (the SDK's "
                 "ReceiveOptions::ack_batch; 1: at once)")
      ->capture_default_str();
  app.add_option("--ack-flush-ms", o.ack_flush_ms,
                 "... or once the oldest pending id has waited this long")
      ->capture_default_str();
  app.add_flag("--send-stream", o.send_stream,
               "send over one SendStream call per sender (pipelined) instead "
               "of a unary Send per message");
  app.add_flag("--find-max", o.find_max,
               "closed loop at the maximum: run at --window, then double it "
               "until two runs in a row gain no more than 5% on the best; "
               "print every run and use the best (pairs, group)");
  app.add_option("--find-max-steps", o.find_max_steps,
                 "--find-max or --find-rate: runs per server at most")
      ->capture_default_str();
  app.add_flag("--half-rate", o.half_rate,
               "after --find-max: one open-loop run at half the maximum "
               "Sends/s (latency at half load)");
  app.add_option("--half-rate-runs", o.half_rate_runs,
                 "--half-rate: that many runs at half the maximum, each on a "
                 "fresh server; prints how many kept p99 <= 10 ms and the "
                 "median run")
      ->capture_default_str();
  app.add_option("--find-rate", o.find_rate_p99_ms,
                 "open loop: search for the highest rate whose p99 "
                 "Send->deliver is at most this many ms (every Send issued, "
                 "accepted and delivered); starts at --rate, doubles or "
                 "halves, then bisects (pairs, group)");
  app.add_option("--series-ms", o.series_ms,
                 "latency over time: p50/p99/max per interval of this many "
                 "ms of the window (JSON \"series\"; the table gives the "
                 "median and worst interval); 0: off (pairs, group)")
      ->capture_default_str();
  app.add_option("--receive-batch", o.receive_batch,
                 "envelopes per Receive response at most (ReceiveRequest."
                 "max_batch; 1: one per response, as older clients)")
      ->capture_default_str();
  app.add_option("--rate", o.rate,
                 "open loop: Sends/s over all senders (0: closed loop)")
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "measured seconds")
      ->capture_default_str();
  app.add_option("--warmup", o.warmup_s, "seconds of load before measuring")
      ->capture_default_str();
  app.add_option("--connections", o.connections,
                 "HTTP/2 connections for the load")
      ->capture_default_str();
  app.add_option("--drain-messages", o.drain_messages,
                 "drain: messages queued while the recipients are offline")
      ->capture_default_str();
  app.add_option("--idle-streams", o.idle_streams, "idle: open Receive streams")
      ->capture_default_str();
  app.add_option("--idle-connections", o.idle_connections,
                 "idle: HTTP/2 connections carrying the idle streams")
      ->capture_default_str();
  app.add_option("--setup-concurrency", o.setup_concurrency,
                 "threads creating accounts and conversations")
      ->capture_default_str();
  app.add_option(
         "--max-inflight", o.max_inflight,
         "open loop: Sends in flight at most (beyond: counted as skipped)")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "bound in seconds of every wait")
      ->capture_default_str();
  app.add_option("--json", o.json_file,
                 "write the results as JSON to this file");
  app.add_flag("--quiet", o.quiet, "no progress lines on stderr");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    *help = app.help();
    return o;
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  o.compact = !no_compact;
  // The drain target is "to one reconnecting device".
  if (scenario == "drain" && app.count("--pairs") == 0) o.pairs = 1;

  static const std::map<std::string, Scenario> kScenarios = {
      {"pairs", Scenario::kPairs},
      {"group", Scenario::kGroup},
      {"drain", Scenario::kDrain},
      {"idle", Scenario::kIdle}};
  auto sc = kScenarios.find(scenario);
  if (sc == kScenarios.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--scenario: unknown \"", scenario, "\" (pairs, group, drain, idle)"));
  }
  o.scenario = sc->second;
  if (mode == "transport") {
    o.mode = Mode::kTransport;
  } else if (mode == "e2ee-preencrypted") {
    o.mode = Mode::kE2eePreencrypted;
  } else if (mode == "e2ee-signal") {
    o.mode = Mode::kE2eeSignal;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--mode: unknown \"", mode,
                     "\" (transport, e2ee-preencrypted, e2ee-signal)"));
  }
  if (!o.target.empty()) {
    o.target_kind = TargetKind::kTarget;
    if (o.ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--target needs --ca (the server's CA, e.g. <data-dir>/tls/ca.pem)");
    }
  } else if (null_server) {
    o.target_kind = TargetKind::kNull;
    if (o.compare_null) {
      return absl::InvalidArgumentError(
          "--compare-null compares parleyd (--spawn or --target) with the null "
          "server; it cannot be combined with --null-server");
    }
  } else {
    o.target_kind = TargetKind::kSpawn;
  }
  if (server_cpus_opt->count() > 0 || bench_cpus_opt->count() > 0) {
    const std::vector<int> available = AvailableCpus();
    if (server_cpus_opt->count() > 0) {
      if (o.target_kind == TargetKind::kTarget) {
        return absl::InvalidArgumentError(
            "--server-cpus pins a server the bench starts (--spawn or "
            "--null-server); pin a --target server yourself (taskset)");
      }
      auto cpus = ParseCpuList("--server-cpus", server_cpus, available);
      if (!cpus.ok()) return cpus.status();
      o.server_cpus = *std::move(cpus);
    }
    if (bench_cpus_opt->count() > 0) {
      auto cpus = ParseCpuList("--bench-cpus", bench_cpus, available);
      if (!cpus.ok()) return cpus.status();
      o.bench_cpus = *std::move(cpus);
      // Spawned servers (also --compare-null's) would inherit the bench's
      // mask.
      if (o.server_cpus.empty()) o.server_cpus = available;
    }
  }
  if (o.find_max) {
    if (o.scenario != Scenario::kPairs && o.scenario != Scenario::kGroup) {
      return absl::InvalidArgumentError(
          "--find-max searches a closed loop's maximum: --scenario pairs or "
          "group");
    }
    if (o.rate > 0) {
      return absl::InvalidArgumentError(
          "--find-max is a closed-loop search; it cannot be combined with "
          "--rate");
    }
    if (o.find_rate_p99_ms > 0) {
      return absl::InvalidArgumentError(
          "--find-max (closed loop) and --find-rate (open loop) are separate "
          "searches: use one");
    }
  } else if (o.half_rate) {
    return absl::InvalidArgumentError(
        "--half-rate runs at half the rate --find-max found; add --find-max");
  }
  if (app.count("--half-rate-runs") > 0 && !o.half_rate) {
    return absl::InvalidArgumentError(
        "--half-rate-runs repeats the --half-rate run; add --find-max "
        "--half-rate");
  }
  if (!o.find_max && app.count("--find-max-steps") > 0 &&
      !(o.find_rate_p99_ms > 0)) {
    return absl::InvalidArgumentError(
        "--find-max-steps applies to --find-max and --find-rate");
  }
  if (o.find_rate_p99_ms > 0) {
    if (o.scenario != Scenario::kPairs && o.scenario != Scenario::kGroup) {
      return absl::InvalidArgumentError(
          "--find-rate searches an open loop's rate: --scenario pairs or "
          "group");
    }
    if (!(o.rate > 0)) {
      return absl::InvalidArgumentError(
          "--find-rate starts at --rate: give the first rate to try (e.g. "
          "--rate 1000)");
    }
  }
  if (o.series_ms > 0 && o.scenario != Scenario::kPairs &&
      o.scenario != Scenario::kGroup) {
    return absl::InvalidArgumentError(
        "--series-ms measures the latency of a load over time: --scenario "
        "pairs or group");
  }
  if (o.no_admin && o.target_kind == TargetKind::kTarget) {
    return absl::InvalidArgumentError(
        "--no-admin applies to a spawned parleyd");
  }
  if (o.target_kind != TargetKind::kTarget &&
      (o.server_pid != 0 || !o.server_data_dir.empty())) {
    return absl::InvalidArgumentError(
        "--server-pid and --server-data-dir are for --target (spawned servers "
        "are measured anyway)");
  }

  struct Range {
    const char* name;
    double value, lo, hi;
  };
  const Range ranges[] = {
      {"--pairs", double(o.pairs), 1, 10000},
      {"--groups", double(o.groups), 1, 1000},
      {"--group-size", double(o.group_size), 2, 1000},
      {"--size", double(o.size), kMinPayloadBytes, 65536},
      {"--window", double(o.window), 1, 4096},
      {"--find-max-steps", double(o.find_max_steps), 2, 12},
      {"--half-rate-runs", double(o.half_rate_runs), 1, 20},
      {"--receive-batch", double(o.receive_batch), 1, 256},
      {"--series-ms", double(o.series_ms), 0, 60000},
      {"--find-rate", o.find_rate_p99_ms, 0, 60000},
      {"--ack-batch", double(o.ack_batch), 1, 1000},
      {"--ack-flush-ms", double(o.ack_flush_ms), 0, 60000},
      {"--rate", o.rate, 0, 10000000},
      {"--duration", o.duration_s, 0.1, 3600},
      {"--warmup", o.warmup_s, 0, 600},
      {"--connections", double(o.connections), 1, 1000},
      {"--drain-messages", double(o.drain_messages), 1, 100000000},
      {"--idle-streams", double(o.idle_streams), 1, 200000},
      {"--idle-connections", double(o.idle_connections), 1, 200000},
      {"--setup-concurrency", double(o.setup_concurrency), 1, 256},
      {"--max-inflight", double(o.max_inflight), 1, 1000000},
      {"--timeout", o.timeout_s, 1, 3600},
      {"--server-pid", double(o.server_pid), 0, 4194304},
  };
  for (const Range& r : ranges) {
    if (!(r.value >= r.lo && r.value <= r.hi)) {
      return absl::InvalidArgumentError(absl::StrCat(
          r.name, ": ", r.value, " is out of range [", r.lo, ", ", r.hi, "]"));
    }
  }
  if (o.idle_connections > o.idle_streams) o.idle_connections = o.idle_streams;
  return o;
}

}  // namespace parley::bench
