// parley-null-server: the null server as a process of its own, started by
// parley-bench (--null-server, --compare-null) like parleyd: it writes its
// CA to <data-dir>/tls/ca.pem and its port to --port-file, and stops on
// SIGTERM / SIGINT.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "core/allocator.h"
#include "tools/bench/null_server.h"

int main(int argc, char** argv) {
  // As parleyd does: no lock-order cycle check on every mutex acquisition
  // (Debian's Abseil has it on), so the baseline pays what parleyd pays.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // And parleyd's allocator settings (core/allocator.h), for the same reason.
  parley::core::TuneAllocator(std::getenv("GLIBC_TUNABLES"));
  std::string data_dir = "./var/parley-null", listen = "127.0.0.1:0", port_file;
  CLI::App app{
      "parley-null-server: Parley's RPC shapes with no storage and no policy"};
  app.add_option("--data-dir", data_dir, "where tls/ca.pem is written")
      ->capture_default_str();
  app.add_option("--listen", listen, "host:port (port 0: pick a free port)")
      ->capture_default_str();
  app.add_option("--port-file", port_file,
                 "write the bound port here once serving");
  CLI11_PARSE(app, argc, argv);

  // Block the stop signals in every thread (gRPC's included); main waits.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto server = parley::bench::NullServer::Start(listen);
  if (!server.ok()) {
    std::cerr << "parley-null-server: " << server.status() << "\n";
    return 1;
  }
  std::error_code ec;
  std::filesystem::create_directories(data_dir + "/tls", ec);
  {
    std::ofstream ca(data_dir + "/tls/ca.pem");
    ca << (*server)->ca_pem();
    if (!ca) {
      std::cerr << "parley-null-server: cannot write " << data_dir
                << "/tls/ca.pem\n";
      return 1;
    }
  }
  if (!port_file.empty()) {
    std::ofstream tmp(port_file + ".tmp");
    tmp << (*server)->port() << "\n";
    tmp.close();
    std::filesystem::rename(port_file + ".tmp", port_file, ec);
  }
  std::cerr << "parley-null-server: serving on port " << (*server)->port()
            << "\n";
  int sig = 0;
  sigwait(&set, &sig);
  (*server)->Shutdown();
  return 0;
}
