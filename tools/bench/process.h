// A server subprocess (parleyd or parley-null-server) started by the bench.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Start() runs the binary with stdout/stderr to a log file and waits
// (bounded) for its --port-file. Stop() sends SIGTERM and, after a bound,
// SIGKILL. The destructor kills a server that is still running. The child
// gets PR_SET_PDEATHSIG(SIGKILL), so it never outlives the bench. Start
// and Stop from the main thread.
#ifndef PARLEY_TOOLS_BENCH_PROCESS_H_
#define PARLEY_TOOLS_BENCH_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace parley::bench {

class ServerProcess {
 public:
  // `cpus` non-empty: the server runs on those CPUs only (set in the child
  // before exec; a failure there ends the child with code 126).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::vector<std::string>& argv, const std::string& port_file,
      const std::string& log_file, absl::Duration timeout,
      const std::vector<int>& cpus = {});
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  bool running();
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code
  // (128 + signal when killed).
  absl::StatusOr<int> Stop(absl::Duration grace);
  const std::string& log_file() const { return log_file_; }

 private:
  ServerProcess() = default;
  // Reaps the child if it has exited (non-blocking).
  bool Reap();

  pid_t pid_ = -1;
  int port_ = 0;
  bool exited_ = false;
  int exit_code_ = -1;
  std::string log_file_;
};

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_PROCESS_H_
