// parleyd's server: wires storage, services, delivery and TLS together.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Threading: Start/Shutdown/Wait may be called from any thread; Shutdown is
// idempotent. Ownership: the Server owns its storage and gRPC server.
#ifndef PARLEY_CORE_SERVER_H_
#define PARLEY_CORE_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace parley::core {

struct Limits {
  size_t max_body_bytes = 64 * 1024;  // content of one message
  size_t max_group_members = 1000;
  size_t max_devices_per_account = 16;
  size_t max_history_page = 500;
  int64_t device_link_ttl_ms = 10 * 60 * 1000;  // 10 minutes
  // Authenticated calls per second per device (token bucket); 0: no limit.
  double device_calls_per_second = 500;
  double device_call_burst = 1000;
  // Concurrent RPCs (HTTP/2 streams) per client connection.
  int max_streams_per_connection = 1000;
};

// Connection liveness (gRPC keepalive: HTTP/2 PING frames). A phone that
// loses its network without closing the connection (radio off, NAT entry
// expired, a new network) leaves its Receive stream open on the server,
// with the stream's buffers and the messages written into it: the server
// pings such connections and closes those that do not answer. Clients may
// ping too (the SDK does, to notice the same loss from its side).
struct Keepalive {
  // How often the server pings an idle connection (gRPC keepalive time).
  // 0: parleyd sets nothing and gRPC's default (2 hours) applies.
  int64_t time_ms = 60 * 1000;
  // Close the connection if a ping is not answered within this time.
  int64_t timeout_ms = 20 * 1000;
  // Clients may ping this often, with or without calls in flight. A client
  // that pings more often than this while nothing else is sent gets GOAWAY
  // "too_many_pings" once it has done so more than twice (gRPC's ping
  // strikes). The SDK's default interval (30 s) is above it.
  int64_t min_client_ping_interval_ms = 10 * 1000;
};

struct ServerOptions {
  // Data directory: RocksDB in <data_dir>/db, generated TLS material in
  // <data_dir>/tls. Created if missing.
  std::string data_dir = "./var/parley";
  // host:port to listen on; port 0 picks a free port (see Server::port()).
  std::string listen = "127.0.0.1:7443";
  // Plaintext gRPC. Refused unless `listen` is a loopback address.
  bool insecure = false;
  // PEM files of the server certificate chain and key. Empty (default):
  // a local CA and a server certificate for localhost/127.0.0.1/::1 are
  // generated into <data_dir>/tls on first start and reused afterwards.
  std::string tls_cert_file;
  std::string tls_key_file;
  // fsync every acknowledged write (power-loss durable, group commit).
  // Default false: WAL without fsync, survives kill -9 of parleyd.
  bool sync = false;
  // Without `sync`: a Send's log record is written to the log file together
  // with every other Send waiting at that moment (one write(2) per batch),
  // before the sender is answered and before any recipient gets it; the
  // guarantee (survives kill -9) is unchanged. Default true; false: one
  // write(2) per Send (storage::RocksDbOptions::batch_wal_writes).
  bool batch_wal_writes = true;
  // Policy document (YAML, see policy/SCHEMA.md), or "preset:NAME" for a
  // shipped preset (policy/presets). When given and different from the
  // revision in force, it is applied at start as a new revision (stored
  // conversations are re-evaluated, with SecurityChange events). Empty
  // (default): keep the revision in force; on first start that is the
  // default preset, "messenger-2016" (core/presets.h).
  std::string policy_file;
  // host:port of the admin service (parleyctl), TLS always; port 0 picks a
  // free port (Server::admin_port()). Empty: no admin listener.
  std::string admin_listen = "127.0.0.1:7444";
  // Where the initial operator token is written on first start (0600).
  // Empty (default): <data_dir>/admin/operator.token.
  std::string admin_token_file;
  // How often announced security changes (downgrades after their notice
  // period) are checked for being due.
  int64_t scheduler_interval_ms = 1000;
  // Cap on readable history of every conversation (per-conversation
  // retention comes from the policy's transport.retention_days), and the
  // retention of history kept from before a conversation became E2EE.
  // 0: no cap.
  int64_t history_retention_days = 90;
  // Undelivered queue entries older than this are purged (0: never).
  int64_t queue_retention_days = 30;
  // How long a Send's client_message_id is remembered (days): a retry within
  // the window returns the original result; afterwards the record is gone
  // (purged by the retention task) and the same id is a new message. The
  // record holds the sender device, id, conversation, seq and time: per-
  // message metadata that is not kept longer than retries need. 0: kept for
  // as long as the sending device exists.
  int64_t idempotency_window_days = 7;
  // How often the retention task runs (also once at every start).
  int64_t retention_interval_ms = 3600 * 1000;
  // Pattern file of the built-in content scanner (core/scanner.h) for
  // conversations whose policy enables automated_scanning. Empty (default):
  // no scanner.
  std::string scan_patterns_file;
  Limits limits;
  Keepalive keepalive;
  // Wall clock in Unix epoch milliseconds. Empty (default): the system
  // clock. Tests substitute a controllable clock.
  std::function<int64_t()> clock;
};

class Server {
 public:
  virtual ~Server() = default;
  // Opens storage, prepares TLS and starts serving.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options);

  virtual int port() const = 0;
  // Port of the admin listener (0 when disabled).
  virtual int admin_port() const = 0;
  // Path of the initial operator token file.
  virtual std::string admin_token_file() const = 0;
  // Path of the CA certificate clients should trust (empty with insecure or
  // operator-provided certificates).
  virtual std::string ca_cert_path() const = 0;
  // Stops accepting, ends streams, flushes storage. Idempotent.
  virtual void Shutdown() = 0;
  // Blocks until Shutdown has completed.
  virtual void Wait() = 0;
};

}  // namespace parley::core

#endif  // PARLEY_CORE_SERVER_H_
