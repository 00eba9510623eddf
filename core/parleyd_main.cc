// parleyd: the Parley server.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <thread>

#include "absl/synchronization/mutex.h"

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "core/allocator.h"
#include "core/server.h"
#include "core/tls.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace {

// Applies a YAML config file; keys are the long flag names with '-' or '_'.
// Flags given on the command line win over the file.
absl::Status ApplyConfig(const std::string& path, CLI::App& app) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", e.mark.line + 1, ": ", e.msg));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a mapping of settings"));
  for (const auto& kv : root) {
    std::string key = kv.first.as<std::string>();
    std::string flag = key;
    for (char& c : flag) if (c == '_') c = '-';
    CLI::Option* opt = nullptr;
    try {
      opt = app.get_option("--" + flag);
    } catch (const CLI::Error&) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", kv.first.Mark().line + 1, ": unknown setting \"", key, "\""));
    }
    if (flag == "config") {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", kv.first.Mark().line + 1, ": config cannot nest"));
    }
    if (opt->count() > 0) continue;  // command line wins
    if (!kv.second.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", kv.second.Mark().line + 1, ": ", key, ": expected a single value"));
    }
    try {
      std::string v = kv.second.as<std::string>();
      if (opt->get_type_size() == 0) {  // a flag
        if (v == "true") opt->add_result("true");
        else if (v != "false")
          return absl::InvalidArgumentError(
              absl::StrCat(path, ":", kv.second.Mark().line + 1, ": ", key, ": expected true or false"));
      } else {
        opt->add_result(v);
      }
      opt->run_callback();
    } catch (const CLI::Error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", kv.second.Mark().line + 1, ": ", key, ": ", e.what()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  // Everything parleyd creates (database, keys, tokens, TLS material, port
  // files) is private to its user: 0700 directories, 0600 files.
  ::umask(077);
  // Debian's Abseil checks every mutex acquisition for lock-order cycles
  // (2-3% of parleyd's CPU under load, see BENCHMARKS.md); the tests keep
  // the check, the server does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Freed heap memory stays mapped for reuse (fewer page faults per message;
  // core/allocator.h). GLIBC_TUNABLES with glibc.malloc.* settings wins.
  const bool allocator_tuned = parley::core::TuneAllocator(std::getenv("GLIBC_TUNABLES"));
  parley::core::ServerOptions o;
  int64_t retention_interval_s = o.retention_interval_ms / 1000;
  std::string config, log_level = "info", port_file;
  CLI::App app{"parleyd: the Parley messaging server"};
  app.add_option("--config", config, "YAML config file (keys = flag names)")->check(CLI::ExistingFile);
  app.add_option("--data-dir", o.data_dir, "data directory (RocksDB, TLS material)")->capture_default_str();
  app.add_option("--listen", o.listen, "host:port to serve on (port 0: pick a free port)")->capture_default_str();
  app.add_flag("--insecure", o.insecure, "plaintext gRPC (loopback addresses only)");
  app.add_option("--tls-cert", o.tls_cert_file, "PEM certificate chain (default: generate a local CA)");
  app.add_option("--tls-key", o.tls_key_file, "PEM private key of --tls-cert");
  app.add_option("--policy", o.policy_file,
                 "policy document (YAML) or preset:NAME to put in force at start (default: keep the "
                 "revision in force; first start: preset:messenger-2016)")
      ->check([](const std::string& v) -> std::string {
        if (v.rfind("preset:", 0) == 0) return "";
        return CLI::ExistingFile(v);
      });
  app.add_option("--admin-listen", o.admin_listen,
                 "host:port of the admin service for parleyctl, TLS (empty: disabled)")
      ->capture_default_str();
  app.add_option("--admin-token-file", o.admin_token_file,
                 "where the initial operator token is written on first start (default: "
                 "<data-dir>/admin/operator.token)");
  app.add_flag("--sync", o.sync, "fsync every acknowledged write (power-loss durability, group commit)");
  app.add_option("--batch-wal-writes", o.batch_wal_writes,
                 "without --sync: write Sends' log records once per batch, before answering or delivering them "
                 "(false: one write per Send)")
      ->capture_default_str();
  app.add_option("--history-retention-days", o.history_retention_days,
                 "cap on readable history (days); the policy's transport.retention_days applies per conversation")
      ->capture_default_str()->check(CLI::Range(1, 36500));
  app.add_option("--device-rate-limit", o.limits.device_calls_per_second,
                 "authenticated calls per second per device (token bucket; 0: no limit)")
      ->capture_default_str()->check(CLI::Range(0.0, 1e6));
  app.add_option("--device-rate-burst", o.limits.device_call_burst, "calls a device may make at once")
      ->capture_default_str()->check(CLI::Range(1.0, 1e7));
  app.add_option("--max-streams-per-connection", o.limits.max_streams_per_connection,
                 "concurrent RPCs per client connection")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--keepalive-time-ms", o.keepalive.time_ms,
                 "ping an idle connection this often; close it if the ping goes unanswered "
                 "(0: gRPC's default, 2 hours)")
      ->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{std::numeric_limits<int>::max()}));
  app.add_option("--keepalive-timeout-ms", o.keepalive.timeout_ms, "how long a keepalive ping may go unanswered")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{std::numeric_limits<int>::max()}));
  app.add_option("--min-client-ping-interval-ms", o.keepalive.min_client_ping_interval_ms,
                 "clients may send keepalive pings this often (more often: GOAWAY too_many_pings)")
      ->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{std::numeric_limits<int>::max()}));
  app.add_option("--queue-retention-days", o.queue_retention_days,
                 "undelivered queue entries older than this are purged (0: never)")
      ->capture_default_str()->check(CLI::Range(0, 36500));
  app.add_option("--idempotency-window-days", o.idempotency_window_days,
                 "how long a Send's client_message_id is remembered for retries; older records are purged "
                 "(0: kept while the sending device exists)")
      ->capture_default_str()->check(CLI::Range(0, 36500));
  app.add_option("--retention-interval-seconds", retention_interval_s, "how often the retention task runs")
      ->capture_default_str()->check(CLI::Range(1, 7 * 24 * 3600));
  app.add_option("--scan-patterns", o.scan_patterns_file,
                 "pattern file of the built-in content scanner (transport conversations whose policy enables "
                 "automated_scanning)")
      ->check(CLI::ExistingFile);
  app.add_option("--max-body-bytes", o.limits.max_body_bytes, "largest message content")
      ->capture_default_str()->check(CLI::Range(1, 4 << 20));
  app.add_option("--max-group-members", o.limits.max_group_members, "largest group")
      ->capture_default_str()->check(CLI::Range(2, 100000));
  app.add_option("--max-devices", o.limits.max_devices_per_account, "devices per account")
      ->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--port-file", port_file, "write the bound port to this file once serving");
  std::string admin_port_file;
  app.add_option("--admin-port-file", admin_port_file, "write the admin port to this file once serving");
  try {
    app.parse(argc, argv);
    if (!config.empty()) {
      absl::Status s = ApplyConfig(config, app);
      if (!s.ok()) {
        std::cerr << "parleyd: " << s.message() << "\n";
        return 2;
      }
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  auto logger = spdlog::stderr_logger_mt("parleyd");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z level=%l %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));
  if (!allocator_tuned) {
    spdlog::info("event=allocator_tuning applied=0 reason=\"GLIBC_TUNABLES sets glibc.malloc, or the allocator refused\"");
  }

  // Block the signals in every thread; one thread waits for them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  o.retention_interval_ms = retention_interval_s * 1000;
  auto server = parley::core::Server::Start(o);
  if (!server.ok()) {
    std::cerr << "parleyd: " << server.status().message() << "\n";
    return 1;
  }
  std::string host = o.listen.substr(0, o.listen.rfind(':'));
  std::cout << "parleyd listening on " << host << ":" << (*server)->port()
            << (o.insecure ? " (plaintext, loopback only)" : " (TLS)") << "\n";
  if (!(*server)->ca_cert_path().empty()) {
    std::cout << "CA certificate for clients: " << (*server)->ca_cert_path() << "\n";
  }
  if ((*server)->admin_port() != 0) {
    std::cout << "admin service (parleyctl) on " << o.admin_listen.substr(0, o.admin_listen.rfind(':')) << ":"
              << (*server)->admin_port() << " (TLS); initial operator token: " << (*server)->admin_token_file()
              << "\n";
  }
  std::cout.flush();
  // Admin port first: a waiter on --port-file then finds both.
  for (const auto& [file, port] : {std::pair{admin_port_file, (*server)->admin_port()},
                                   std::pair{port_file, (*server)->port()}}) {
    if (file.empty()) continue;
    absl::Status s = parley::core::WriteFileAtomic(file, std::to_string(port) + "\n", 0644);
    if (!s.ok()) {
      std::cerr << "parleyd: " << s.message() << "\n";
      (*server)->Shutdown();
      return 1;
    }
  }
  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("event=signal signal={}", sig == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->Shutdown();
  return 0;
}
