// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/server.h"

#include <arpa/inet.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/delivery.h"
#include "core/grpc_services.h"
#include "core/policy_decider.h"
#include "core/service.h"
#include "core/status_macros.h"
#include "core/tls.h"
#include "spdlog/spdlog.h"
#include "storage/rocksdb_storage.h"

namespace parley::core {
namespace {

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct HostPort {
  std::string host;
  int port = 0;
};

absl::StatusOr<HostPort> ParseListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("listen: \"", listen, "\" is not host:port"));
  }
  HostPort hp;
  hp.host = listen.substr(0, colon);
  if (hp.host.size() > 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &hp.port) || hp.port < 0 || hp.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("listen: bad port in \"", listen, "\""));
  }
  return hp;
}

bool IsLoopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr a4;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6;
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

class ServerImpl final : public Server {
 public:
  ~ServerImpl() override { Shutdown(); }

  absl::Status Init(const ServerOptions& o) {
    options_ = o;
    PARLEY_ASSIGN_OR_RETURN(HostPort hp, ParseListen(o.listen));
    if (o.insecure && !IsLoopback(hp.host)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "insecure: plaintext is only allowed on a loopback address, not \"", hp.host, "\""));
    }
    if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
      return absl::InvalidArgumentError("tls: give both tls_cert_file and tls_key_file, or neither");
    }
    std::error_code ec;
    std::filesystem::create_directories(o.data_dir, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("data_dir ", o.data_dir, ": ", ec.message()));

    std::shared_ptr<grpc::ServerCredentials> creds;
    if (o.insecure) {
      creds = grpc::InsecureServerCredentials();
    } else {
      TlsMaterial tls;
      if (!o.tls_cert_file.empty()) {
        PARLEY_ASSIGN_OR_RETURN(tls, LoadTls(o.tls_cert_file, o.tls_key_file));
      } else {
        PARLEY_ASSIGN_OR_RETURN(tls, EnsureLocalTls(o.data_dir + "/tls", {hp.host}));
      }
      ca_path_ = tls.ca_cert_path;
      grpc::SslServerCredentialsOptions ssl;
      ssl.pem_key_cert_pairs.push_back({tls.private_key_pem, tls.cert_chain_pem});
      creds = grpc::SslServerCredentials(ssl);
    }

    storage::RocksDbOptions ro;
    ro.path = o.data_dir + "/db";
    ro.sync = o.sync;
    PARLEY_ASSIGN_OR_RETURN(storage_, storage::OpenRocksDbStorage(ro));

    ParleyService::Deps deps;
    deps.storage = storage_.get();
    deps.hub = &hub_;
    now_ms_ = o.clock ? o.clock : std::function<int64_t()>(WallMs);
    deps.now_ms = now_ms_;
    deps.limits = o.limits;
    deps.history_retention_days = o.history_retention_days;
    if (!o.policy_file.empty()) {
      PARLEY_ASSIGN_OR_RETURN(auto policy, LoadPolicy(o.policy_file));
      spdlog::info("event=policy file={} revision={} name=\"{}\"", o.policy_file, policy->revision(),
                   std::string(policy->name()));
      deps.decide_security = MakePolicyDecider(std::move(policy));
    }
    service_ = std::make_unique<ParleyService>(deps);
    accounts_ = std::make_unique<AccountGrpc>(service_.get());
    conversations_ = std::make_unique<ConversationGrpc>(service_.get());
    messaging_ = std::make_unique<MessagingGrpc>(service_.get(), &hub_);
    keys_ = std::make_unique<KeyGrpc>();

    PurgeOnce();  // before serving: nothing past retention is ever served after a restart
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder b;
    b.AddListeningPort(o.listen, creds, &port_);
    b.RegisterService(accounts_.get());
    b.RegisterService(conversations_.get());
    b.RegisterService(messaging_.get());
    b.RegisterService(keys_.get());
    b.SetMaxReceiveMessageSize(static_cast<int>(o.limits.max_body_bytes * 16 + (1 << 20)));
    server_ = b.BuildAndStart();
    if (!server_ || port_ == 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", o.listen,
                                                 " (address in use or not available)"));
    }
    retention_ = std::thread([this] { RetentionLoop(); });
    spdlog::info("event=start listen={}:{} tls={} data_dir={} sync={}", hp.host, port_,
                 o.insecure ? "off" : "on", o.data_dir, o.sync);
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  std::string ca_cert_path() const override { return ca_path_; }

  void Shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      if (shutting_down_) {
        mu_.Await(absl::Condition(&shut_down_));
        return;
      }
      shutting_down_ = true;
    }
    spdlog::info("event=shutdown phase=begin streams={}", hub_.size());
    hub_.CloseAll(absl::UnavailableError("server is shutting down"));
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (retention_.joinable()) retention_.join();
    if (storage_) {
      absl::Status s = storage_->Flush();
      if (!s.ok()) spdlog::error("event=shutdown flush_error=\"{}\"", std::string(s.message()));
    }
    spdlog::info("event=shutdown phase=done");
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
  }

  void Wait() override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&shut_down_));
  }

 private:
  // Purges readable history past its retention.
  void PurgeOnce() {
    const int64_t cutoff = now_ms_() - options_.history_retention_days * 24 * 3600 * 1000;
    auto purged = storage_->messages().PurgeHistoryBefore(cutoff);
    if (!purged.ok()) {
      spdlog::warn("event=retention error=\"{}\"", std::string(purged.status().message()));
    } else if (*purged > 0) {
      spdlog::info("event=retention purged_history={}", *purged);
    }
  }

  // After the pass at start, purges once an hour until shutdown.
  void RetentionLoop() {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&shutting_down_), absl::Hours(1))) return;
      }
      PurgeOnce();
    }
  }

  ServerOptions options_;
  std::function<int64_t()> now_ms_;
  std::unique_ptr<storage::Storage> storage_;
  DeliveryHub hub_;
  std::unique_ptr<ParleyService> service_;
  std::unique_ptr<AccountGrpc> accounts_;
  std::unique_ptr<ConversationGrpc> conversations_;
  std::unique_ptr<MessagingGrpc> messaging_;
  std::unique_ptr<KeyGrpc> keys_;
  std::unique_ptr<grpc::Server> server_;
  std::thread retention_;
  int port_ = 0;
  std::string ca_path_;
  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  auto s = std::make_unique<ServerImpl>();
  PARLEY_RETURN_IF_ERROR(s->Init(options));
  return std::unique_ptr<Server>(std::move(s));
}

}  // namespace parley::core
