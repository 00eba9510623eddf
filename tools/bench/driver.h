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
};

// Bytes of the header every bench payload starts with, in ASCII (plain
// bodies must be UTF-8): "PB1:", sender index (8 hex), sequence number
// (12 hex), send time in steady-clock ns (16 hex). --size must be at least
// this.
inline constexpr int kPayloadHeaderBytes = 40;

// Encodes / decodes the payload header (exposed for tests).
std::string MakePayload(uint32_t sender, uint64_t seq, int64_t send_ns,
                        int size);
bool ParsePayload(const std::string& payload, uint32_t* sender, uint64_t* seq,
                  int64_t* send_ns);

// Runs `o.scenario` against `ep`. Fills every figure except bytes on disk
// (the caller measures those after stopping the server).
absl::StatusOr<RunResult> RunScenario(const Options& o, const Endpoint& ep);

// Async-signal-safe: asks the running scenario to wind down now.
void RequestStop();
bool StopRequested();

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_DRIVER_H_
