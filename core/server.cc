// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/server.h"

#include <arpa/inet.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <filesystem>
#include <limits>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/delivery.h"
#include "core/franker.h"
#include "core/safety.h"
#include "core/scanner.h"
#include "core/grpc_services.h"
#include "core/admin.h"
#include "core/admin_grpc.h"
#include "core/audit.h"
#include "core/policy_engine.h"
#include "core/presets.h"
#include "core/service.h"
#include "core/statement.h"
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

absl::Status ValidateKeepalive(const Keepalive& k) {
  constexpr int64_t kMaxMs = std::numeric_limits<int>::max();  // gRPC takes an int
  auto check = [&](const char* name, int64_t v, int64_t min) -> absl::Status {
    if (v < min || v > kMaxMs) {
      return absl::InvalidArgumentError(
          absl::StrCat("keepalive.", name, ": ", v, " ms is out of range [", min, ", ", kMaxMs, "]"));
    }
    return absl::OkStatus();
  };
  PARLEY_RETURN_IF_ERROR(check("time_ms", k.time_ms, 0));
  PARLEY_RETURN_IF_ERROR(check("timeout_ms", k.timeout_ms, 1));
  return check("min_client_ping_interval_ms", k.min_client_ping_interval_ms, 0);
}

// gRPC's keepalive arguments for Keepalive (see server.h). Pings are allowed
// without data frames in between (an idle Receive stream sends none), in
// both directions.
void ApplyKeepalive(const Keepalive& k, grpc::ServerBuilder& b) {
  if (k.time_ms > 0) {
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(k.time_ms));
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(k.timeout_ms));
    b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, static_cast<int>(k.time_ms));
  }
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                       static_cast<int>(k.min_client_ping_interval_ms));
}

class ServerImpl final : public Server {
 public:
  ~ServerImpl() override { Shutdown(); }

  absl::Status Init(const ServerOptions& o) {
    options_ = o;
    PARLEY_ASSIGN_OR_RETURN(HostPort hp, ParseListen(o.listen));
    PARLEY_RETURN_IF_ERROR(ValidateKeepalive(o.keepalive));
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

    // The admin listener is TLS even when the public one is not.
    std::shared_ptr<grpc::ServerCredentials> creds, admin_creds;
    HostPort admin_hp;
    if (!o.admin_listen.empty()) {
      PARLEY_ASSIGN_OR_RETURN(admin_hp, ParseListen(o.admin_listen));
    }
    if (!o.insecure || !o.admin_listen.empty()) {
      TlsMaterial tls;
      if (!o.tls_cert_file.empty()) {
        PARLEY_ASSIGN_OR_RETURN(tls, LoadTls(o.tls_cert_file, o.tls_key_file));
      } else {
        std::vector<std::string> hosts = {hp.host};
        if (!o.admin_listen.empty() && admin_hp.host != hp.host) hosts.push_back(admin_hp.host);
        PARLEY_ASSIGN_OR_RETURN(tls, EnsureLocalTls(o.data_dir + "/tls", hosts));
      }
      ca_path_ = tls.ca_cert_path;
      grpc::SslServerCredentialsOptions ssl;
      ssl.pem_key_cert_pairs.push_back({tls.private_key_pem, tls.cert_chain_pem});
      admin_creds = grpc::SslServerCredentials(ssl);
      if (!o.insecure) creds = admin_creds;
    }
    if (o.insecure) creds = grpc::InsecureServerCredentials();

    storage::RocksDbOptions ro;
    ro.path = o.data_dir + "/db";
    ro.sync = o.sync;
    ro.batch_wal_writes = o.batch_wal_writes;
    PARLEY_ASSIGN_OR_RETURN(storage_, storage::OpenRocksDbStorage(ro));

    ParleyService::Deps deps;
    deps.storage = storage_.get();
    deps.hub = &hub_;
    now_ms_ = o.clock ? o.clock : std::function<int64_t()>(WallMs);
    deps.now_ms = now_ms_;
    deps.limits = o.limits;
    deps.history_retention_days = o.history_retention_days;
    deps.idempotency_window_days = o.idempotency_window_days;
    PARLEY_ASSIGN_OR_RETURN(audit_, AuditLog::Open(&storage_->audit(), now_ms_));
    tokens_ = std::make_unique<AdminTokens>(&storage_->admin_tokens(), now_ms_);
    admin_token_file_ = o.admin_token_file.empty() ? o.data_dir + "/admin/operator.token"
                                                   : o.admin_token_file;
    PARLEY_ASSIGN_OR_RETURN(bool created_token, tokens_->EnsureInitialOperator(admin_token_file_));
    if (created_token) {
      spdlog::info("event=admin_token created=initial-operator file={} (mode 0600; use it with parleyctl "
                   "--token-file)", admin_token_file_);
      PARLEY_RETURN_IF_ERROR(
          audit_->Append("parleyd", "token.create", "initial-operator", "{\"role\":\"operator\"}").status());
    }

    PolicyEngine::Options po;
    po.storage = storage_.get();
    po.now_ms = now_ms_;
    const BuiltinPreset* def = FindPreset(kDefaultPreset);
    if (def == nullptr) return absl::InternalError("the default policy preset is not compiled in");
    po.default_content = def->content;
    po.default_file_name = absl::StrCat("preset:", kDefaultPreset);
    if (!o.policy_file.empty()) {
      po.start_file_name = o.policy_file;
      if (o.policy_file.rfind("preset:", 0) == 0) {
        const BuiltinPreset* p = FindPreset(o.policy_file.substr(7));
        if (p == nullptr) {
          std::string names;
          for (const auto& b : BuiltinPresets()) absl::StrAppend(&names, names.empty() ? "" : ", ", b.name);
          return absl::InvalidArgumentError(absl::StrCat("policy: unknown preset \"", o.policy_file.substr(7),
                                                         "\" (available: ", names, ")"));
        }
        po.start_content = p->content;
      } else {
        PARLEY_ASSIGN_OR_RETURN(po.start_content, ReadFile(o.policy_file));
        if (po.start_content.empty()) {
          return absl::InvalidArgumentError(absl::StrCat("policy: ", o.policy_file, " is empty"));
        }
      }
    }
    PARLEY_ASSIGN_OR_RETURN(auto opened, PolicyEngine::Open(po));
    policy_ = std::move(opened.first);
    const bool committed = opened.second;
    auto current = policy_->current();
    spdlog::info("event=policy revision={} name=\"{}\" committed_at_start={}", current->revision_id,
                 std::string(current->policy.name()), committed);
    if (committed) {
      PARLEY_RETURN_IF_ERROR(
          audit_->Append("parleyd", "policy.apply", current->revision_id,
                         absl::StrCat("{\"revision\":", JsonQuote(current->revision_id), ",\"content_hash\":",
                                      JsonQuote(current->record.content_hash), ",\"previous_hash\":",
                                      JsonQuote(current->record.previous_hash), ",\"comment\":",
                                      JsonQuote(current->record.comment), "}"))
              .status());
    }
    deps.policy = policy_.get();
    PARLEY_ASSIGN_OR_RETURN(signer_,
                            StatementSigner::LoadOrCreate(o.data_dir + "/" + kDefaultStatementKeyFile));
    spdlog::info("event=statement_key key_id={} file={}", signer_->key_id(), signer_->path());
    deps.signer = signer_.get();
    PARLEY_ASSIGN_OR_RETURN(franker_, Franker::Open(o.data_dir + "/keys/franking.key"));
    deps.franker = franker_.get();
    if (!o.scan_patterns_file.empty()) {
      PARLEY_ASSIGN_OR_RETURN(scanner_, PatternScanner::Load(o.scan_patterns_file));
      spdlog::info("event=scanner name=patterns file={} patterns={}", o.scan_patterns_file, scanner_->size());
    }
    Safety::Deps sd;
    sd.storage = storage_.get();
    sd.policy = policy_.get();
    sd.audit = audit_.get();
    sd.hub = &hub_;
    sd.scanner = scanner_.get();
    sd.now_ms = now_ms_;
    sd.post_event = [this](const std::string& conversation_id, const std::function<void(v1::Message*)>& fill,
                           const std::vector<std::string>& only) {
      return service_->PostEvent(conversation_id, fill, only);
    };
    Safety::Options so;
    so.history_retention_days = static_cast<int32_t>(o.history_retention_days);
    so.queue_retention_days = static_cast<int32_t>(o.queue_retention_days);
    so.idempotency_window_days = static_cast<int32_t>(o.idempotency_window_days);
    so.retention_interval_ms = std::max<int64_t>(o.retention_interval_ms, 1000);
    safety_ = std::make_unique<Safety>(sd, so);
    deps.safety = safety_.get();
    rate_limiter_ = std::make_unique<RateLimiter>(
        RateLimiter::Options{o.limits.device_calls_per_second, o.limits.device_call_burst});
    deps.rate_limiter = rate_limiter_.get();
    service_ = std::make_unique<ParleyService>(deps);
    accounts_ = std::make_unique<AccountGrpc>(service_.get());
    conversations_ = std::make_unique<ConversationGrpc>(service_.get());
    finisher_ = std::make_unique<Finisher>();
    messaging_ = std::make_unique<MessagingGrpc>(service_.get(), &hub_, finisher_.get());
    key_directory_ = std::make_unique<KeyDirectory>(storage_.get());
    keys_ = std::make_unique<KeyGrpc>(service_.get(), key_directory_.get());
    // Every start re-evaluates stored conversations under the revision in
    // force: after a new revision, and to finish an apply that a crash
    // interrupted (the revision is stored before conversations switch).
    // Only conversations whose state changes are written. The same walk
    // loads the schedule of announced (pending) changes.
    {
      PARLEY_ASSIGN_OR_RETURN(auto res, service_->ReevaluateAll(3, /*schedule_pending=*/true));
      spdlog::info("event=policy_reevaluate revision={} conversations={} changed={}", current->revision_id,
                   res.plan.conversations(), res.changed);
    }
    Admin::Deps ad;
    ad.service = service_.get();
    ad.policy = policy_.get();
    ad.audit = audit_.get();
    ad.tokens = tokens_.get();
    ad.storage = storage_.get();
    ad.hub = &hub_;
    ad.now_ms = now_ms_;
    ad.started_at_ms = now_ms_();
    admin_ = std::make_unique<Admin>(ad);
    admin_grpc_ = std::make_unique<AdminGrpc>(admin_.get(), tokens_.get(), audit_.get(), safety_.get());

    // Before serving: nothing past retention is ever served after a restart.
    if (auto run = safety_->RunRetention(); !run.ok()) {
      spdlog::warn("event=retention error=\"{}\"", std::string(run.status().message()));
    }
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder b;
    b.AddListeningPort(o.listen, creds, &port_);
    b.RegisterService(accounts_.get());
    b.RegisterService(conversations_.get());
    b.RegisterService(messaging_.get());
    b.RegisterService(keys_.get());
    b.SetMaxReceiveMessageSize(static_cast<int>(o.limits.max_body_bytes * 16 + (1 << 20)));
    b.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, std::max(1, o.limits.max_streams_per_connection));
    ApplyKeepalive(o.keepalive, b);
    server_ = b.BuildAndStart();
    if (!server_ || port_ == 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", o.listen,
                                                 " (address in use or not available)"));
    }
    if (!o.admin_listen.empty()) {
      grpc::ServerBuilder ab;
      ab.AddListeningPort(o.admin_listen, admin_creds, &admin_port_);
      ab.RegisterService(admin_grpc_.get());
      ab.SetMaxReceiveMessageSize(4 << 20);
      admin_server_ = ab.BuildAndStart();
      if (!admin_server_ || admin_port_ == 0) {
        server_->Shutdown();
        return absl::UnavailableError(absl::StrCat("cannot listen on ", o.admin_listen,
                                                   " for the admin service (address in use or not available)"));
      }
      spdlog::info("event=admin_listen listen={}:{} tls=on", admin_hp.host, admin_port_);
    }
    retention_ = std::thread([this] { RetentionLoop(); });
    scheduler_ = std::thread([this] { SchedulerLoop(); });
    spdlog::info("event=start listen={}:{} tls={} data_dir={} sync={} batch_wal_writes={}", hp.host, port_,
                 o.insecure ? "off" : "on", o.data_dir, o.sync, o.batch_wal_writes && !o.sync);
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  int admin_port() const override { return admin_port_; }
  std::string admin_token_file() const override { return admin_token_file_; }
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
    if (messaging_) messaging_->CloseSendStreams(absl::UnavailableError("server is shutting down"));
    if (admin_server_) admin_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (retention_.joinable()) retention_.join();
    if (scheduler_.joinable()) scheduler_.join();
    if (storage_) {
      // Let the store's committer run every durability callback still
      // waiting (offers to the hub, replies), in order, while the hub and
      // the gRPC objects they use still exist: they run before this one.
      auto drained = std::make_shared<absl::Notification>();
      storage_->WhenDurable([drained](absl::Status) { drained->Notify(); });
      if (!drained->WaitForNotificationWithTimeout(absl::Seconds(10))) {
        spdlog::error("event=shutdown durability_callbacks=\"not drained within 10 s\"");
      }
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
  // Runs the retention task every retention_interval_ms until shutdown.
  void RetentionLoop() {
    const absl::Duration interval = absl::Milliseconds(std::max<int64_t>(options_.retention_interval_ms, 1000));
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&shutting_down_), interval)) return;
      }
      auto run = safety_->RunRetention();
      if (!run.ok()) spdlog::warn("event=retention error=\"{}\"", std::string(run.status().message()));
    }
  }

  // Applies announced security changes once due, until shutdown.
  void SchedulerLoop() {
    const absl::Duration interval = absl::Milliseconds(std::max<int64_t>(options_.scheduler_interval_ms, 10));
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&shutting_down_), interval)) return;
      }
      auto n = service_->RunDueChanges();
      if (!n.ok()) {
        spdlog::warn("event=scheduled_change error=\"{}\"", std::string(n.status().message()));
      } else if (*n > 0) {
        spdlog::info("event=scheduled_change applied={}", *n);
      }
      auto notices = safety_->RunDueNotices();
      if (!notices.ok()) {
        spdlog::warn("event=access_notice error=\"{}\"", std::string(notices.status().message()));
      } else if (*notices > 0) {
        spdlog::info("event=access_notice delivered={}", *notices);
      }
    }
  }

  ServerOptions options_;
  std::function<int64_t()> now_ms_;
  std::unique_ptr<storage::Storage> storage_;
  DeliveryHub hub_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<AdminTokens> tokens_;
  std::unique_ptr<PolicyEngine> policy_;
  std::unique_ptr<StatementSigner> signer_;
  std::unique_ptr<Franker> franker_;
  std::unique_ptr<PatternScanner> scanner_;
  std::unique_ptr<Safety> safety_;
  std::unique_ptr<RateLimiter> rate_limiter_;
  std::unique_ptr<ParleyService> service_;
  std::unique_ptr<Admin> admin_;
  std::unique_ptr<AdminGrpc> admin_grpc_;
  std::unique_ptr<grpc::Server> admin_server_;
  int admin_port_ = 0;
  std::string admin_token_file_;
  std::thread scheduler_;
  std::unique_ptr<AccountGrpc> accounts_;
  std::unique_ptr<ConversationGrpc> conversations_;
  // Declared before messaging_ and server_: destroyed after them, so every
  // reply it holds is sent before the server is gone.
  std::unique_ptr<Finisher> finisher_;
  std::unique_ptr<MessagingGrpc> messaging_;
  std::unique_ptr<KeyDirectory> key_directory_;
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
