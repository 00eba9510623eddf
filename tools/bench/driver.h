// parley-bench's load driver: sets up accounts and conversations over the
// public API, runs a scenario against one server and measures it.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Clients use the gRPC callback API: every device's Receive stream is a
// ClientReadReactor, Sends and Acks are callback unary calls, so one process
// keeps thousands of RPCs in flight on gRPC's few threads. Every wait is
// bounded by Options::timeout_s; RequestStop() (from a signal handler) ends
// the current phase early.
#ifndef PARLEY_TOOLS_BENCH_DRIVER_H_
#define PARLEY_TOOLS_BENCH_DRIVER_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "tools/bench/args.h"
#include "tools/bench/report.h"

namespace parley::bench {

struct Endpoint {
  std::string name;    // "parleyd", "null", "target": the result's label
  std::string target;  // host:port
  std::string ca_pem;  // trusted root for TLS
  pid_t pid = 0;       // server process for /proc figures; 0: unknown
  // parleyd's admin service (same CA) and an operator token: the window's
  // group commits from GetServerStats. Empty: not measured.
  std::string admin_target;
  std::string admin_token;
};

// Bytes of the header every bench payload starts with, in ASCII (plain
// bodies must be UTF-8): "PB2:", sender index (8 hex), sequence number
// (12 hex), the time of the Send call in steady-clock ns (16 hex) and the
// issue lag in microseconds (8 hex). --size must be at least this.
inline constexpr int kPayloadHeaderBytes = 48;
static_assert(kPayloadHeaderBytes == kMinPayloadBytes);

// What a bench payload's header carries.
struct PayloadHeader {
  uint32_t sender = 0;  // index of the sending Sender
  uint64_t seq = 0;     // the sender's message number (48 bits kept)
  // When the generator made the Send call (Sender::Issue began): the origin
  // of the Send->deliver latency.
  int64_t send_ns = 0;
  // Open loop: how late the Send call came after its scheduled time (the
  // generator's own delay, e.g. its pacer waiting for a CPU), in whole
  // microseconds; 0 in closed loop. Scheduled->deliver = Send->deliver +
  // this. Kept up to 2^32-1 us (71 minutes).
  int64_t issue_lag_us = 0;
};

// Encodes / decodes the payload header (exposed for tests). ParsePayload
// returns nullopt for a payload that does not start with a valid header.
std::string MakePayload(const PayloadHeader& h, int size);
std::optional<PayloadHeader> ParsePayload(const std::string& payload);

// Runs `o.scenario` against `ep`. Fills every figure except bytes on disk
// (the caller measures those after stopping the server).
absl::StatusOr<RunResult> RunScenario(const Options& o, const Endpoint& ep);

// Async-signal-safe: asks the running scenario to wind down now.
void RequestStop();
bool StopRequested();

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_DRIVER_H_
