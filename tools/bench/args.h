// parley-bench command line: options and their validation.
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TOOLS_BENCH_ARGS_H_
#define PARLEY_TOOLS_BENCH_ARGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace parley::bench {

enum class Scenario { kPairs, kGroup, kDrain, kIdle };
// kE2eePreencrypted: opaque per-device bytes (isolates the server);
// kE2eeSignal: every message Signal-encrypted by the sending device and
// decrypted by each receiving device (clients/crypto), as real clients do.
enum class Mode { kTransport, kE2eePreencrypted, kE2eeSignal };
// Where the load goes: a parleyd started by the bench, a running server, or
// the null server (a separate process started by the bench).
enum class TargetKind { kSpawn, kTarget, kNull };

const char* ScenarioName(Scenario s);
const char* ModeName(Mode m);
const char* TargetKindName(TargetKind t);

// The smallest --size: a bench payload's header (driver.h,
// kPayloadHeaderBytes).
inline constexpr int kMinPayloadBytes = 48;

struct Options {
  Scenario scenario = Scenario::kPairs;
  Mode mode = Mode::kTransport;
  TargetKind target_kind = TargetKind::kSpawn;
  bool compare_null = false;  // also run the same scenario on the null server

  // --target
  std::string target;      // host:port
  std::string ca_file;     // PEM of the CA that signed the server certificate
  int64_t server_pid = 0;  // for CPU/RSS of a --target server
  std::string server_data_dir;  // for bytes on disk of a --target server
  // --spawn / --null-server
  std::string parleyd;
  std::string null_server_bin;
  std::vector<std::string> server_args;  // extra parleyd arguments
  bool sync = false;                     // parleyd --sync
  bool no_admin = false;  // spawned parleyd without its admin service
  bool keep_data = false;
  bool compact = true;  // compact the stopped server's RocksDB before du
  // CPUs the spawned server (parleyd or the null server) may run on, and
  // the bench's own (cpus.h). Empty: not pinned. With bench_cpus alone,
  // ParseArgs sets server_cpus to every CPU the bench was started with, so
  // the server does not inherit the bench's mask.
  std::vector<int> server_cpus;
  std::vector<int> bench_cpus;

  // Load shape.
  int pairs = 16;
  int groups = 1;
  int group_size = 100;
  int size = 256;   // payload bytes per message (per device in E2EE), >= 48
  int window = 16;  // closed loop: Sends in flight per sender
  double rate = 0;  // open loop: messages/s over all senders (0: closed)
  double duration_s = 10;
  double warmup_s = 2;
  int connections = 4;  // HTTP/2 connections for the load devices
  // ReceiveRequest.max_batch of every Receive stream (1: one envelope per
  // response; 64 is what the SDK asks for).
  int receive_batch = 64;
  // Receivers ack as the SDK does (ReceiveOptions::ack_batch and
  // ack_flush_interval): when this many ids are pending or the oldest has
  // waited ack_flush_ms; one Ack in flight per device. 1: ack at once.
  int ack_batch = 64;
  int ack_flush_ms = 200;
  // Sends over one SendStream call per sender instead of a unary Send each.
  bool send_stream = false;
  // Closed loop: search for the maximum rate instead of one run at --window
  // (find_max.h): runs at window, 2*window, ... until the delivered rate
  // stops rising by more than 5%, at most find_max_steps runs per server.
  bool find_max = false;
  int find_max_steps = 6;
  // With find_max: then one open-loop run at half the maximum's Sends/s
  // (the load of issue 6's p99 target).
  bool half_rate = false;
  // With half_rate: that many half-rate runs (each on a fresh spawned
  // server), so that the p99 target is stated as "met in k of N runs"
  // with the median run, on a host whose speed varies between minutes.
  int half_rate_runs = 1;
  // Open loop: search for the highest rate whose p99 Send->deliver latency
  // (from the Send call) is at most this many ms, with every Send issued
  // and accepted and every message delivered (find_max.h, NextRate): starts
  // at --rate, doubles or halves, then bisects; at most find_max_steps runs
  // per server. 0: off.
  double find_rate_p99_ms = 0;
  // Latency over time (pairs, group): the measured window cut into
  // intervals of this many ms, each with the Send->deliver p50/p99/max of
  // the messages whose Send call fell in it (RunResult::series), to tell a
  // steady tail from bursts. 0: off. Every delivery's latency is kept
  // (16 bytes) until the run ends.
  int series_ms = 0;
  int64_t drain_messages = 20000;
  int idle_streams = 10000;
  int idle_connections = 100;
  int setup_concurrency = 16;
  int max_inflight = 20000;  // open loop: bound on Sends in flight
  double timeout_s = 60;     // bound on every wait (setup, drain, shutdown)

  std::string json_file;
  bool quiet = false;
};

// Parses and validates the command line. On --help, returns Options with
// *help set to the usage text (and *help empty otherwise).
absl::StatusOr<Options> ParseArgs(int argc, const char* const* argv,
                                  std::string* help);

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_ARGS_H_
