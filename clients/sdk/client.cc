// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/sdk/client.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include <openssl/crypto.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api/parley/franking/franking.h"
#include "clients/sdk/e2ee_format.h"
#include "clients/sdk/parse.h"
#include "grpcpp/grpcpp.h"
#include "parley/v1/parley.grpc.pb.h"

namespace parley {
namespace internal {
namespace {

absl::Status FromGrpc(absl::string_view rpc, const std::string& server,
                      const grpc::Status& s) {
  const auto code = static_cast<absl::StatusCode>(s.error_code());
  std::string msg = s.error_message();
  if (msg.empty()) msg = absl::StatusCodeToString(code);
  if (code == absl::StatusCode::kUnavailable ||
      code == absl::StatusCode::kDeadlineExceeded) {
    return absl::Status(code,
                        absl::StrCat(rpc, " (server ", server, "): ", msg));
  }
  return absl::Status(code, absl::StrCat(rpc, ": ", msg));
}

bool IsTransient(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded;
}

absl::Duration Jitter(absl::Duration d) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> dist(0.8, 1.2);
  return d * dist(rng);
}

absl::Status ValidateClientMessageId(absl::string_view id) {
  if (id.empty() || id.size() > 64) {
    return absl::InvalidArgumentError(
        "client_message_id must be 1 to 64 printable ASCII characters");
  }
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "client_message_id must be 1 to 64 printable ASCII characters");
    }
  }
  return absl::OkStatus();
}

void Cleanse(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

std::shared_ptr<FrankingStore> DefaultFrankingStore(
    const Profile& profile, const ConnectOptions& options) {
  if (options.franking_store) return options.franking_store;
  if (profile.dir.empty()) return nullptr;
  return std::make_shared<FrankingStore>(absl::StrCat(profile.dir, "/franking"));
}

}  // namespace

// What an E2EE message's recipient sees if the sender's commitment does not
// match what it encrypted.
inline constexpr char kUnreportable[] =
    "unreportable: franking commitment does not match";

// Connection state shared by a Client and its ReceiveStreams. It is also
// the E2eeHost of the Client's E2eeEngine.
class Core final : public E2eeHost {
 public:
  Core(Profile profile, ConnectOptions options,
       std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)),
        channel_(std::move(channel)),
        accounts_(v1::AccountService::NewStub(channel_)),
        conversations_(v1::ConversationService::NewStub(channel_)),
        messaging_(v1::MessagingService::NewStub(channel_)),
        keys_(v1::KeyService::NewStub(channel_)),
        franking_store_(DefaultFrankingStore(profile, options_)),
        profile_(std::move(profile)) {}

  // ------------------------------------------------------------ E2eeHost
  std::string account_id() const override {
    absl::MutexLock l(&mu_);
    return profile_.account_id;
  }
  uint32_t device_id() const override {
    absl::MutexLock l(&mu_);
    return profile_.device_id;
  }
  absl::Status UploadKeys(const v1::UploadKeysRequest& req) override {
    return Unary<v1::UploadKeysResponse>(
               "UploadKeys", true,
               [&](grpc::ClientContext* c, v1::UploadKeysResponse* r) {
                 return keys_->UploadKeys(c, req, r);
               })
        .status();
  }
  absl::StatusOr<uint32_t> PreKeyCount() override {
    auto resp = Unary<v1::GetPreKeyCountResponse>(
        "GetPreKeyCount", true,
        [&](grpc::ClientContext* c, v1::GetPreKeyCountResponse* r) {
          return keys_->GetPreKeyCount(c, v1::GetPreKeyCountRequest(), r);
        });
    if (!resp.ok()) return resp.status();
    return resp->count();
  }
  absl::StatusOr<std::vector<v1::PreKeyBundle>> FetchBundles(
      const std::string& account_id) override {
    v1::FetchBundlesRequest req;
    req.set_account_id(account_id);
    auto resp = Unary<v1::FetchBundlesResponse>(
        "FetchBundles", true,
        [&](grpc::ClientContext* c, v1::FetchBundlesResponse* r) {
          return keys_->FetchBundles(c, req, r);
        });
    // FAILED_PRECONDITION: no (other) device of the account has keys.
    if (absl::IsFailedPrecondition(resp.status())) {
      return std::vector<v1::PreKeyBundle>();
    }
    if (!resp.ok()) return resp.status();
    return std::vector<v1::PreKeyBundle>(resp->bundles().begin(),
                                         resp->bundles().end());
  }

  // MaintainKeys once per Client before the first E2EE send (best effort:
  // a failure is retried next time).
  void MaintainKeysOnce() {
    const std::shared_ptr<E2eeEngine>& engine = options_.e2ee;
    if (!engine || keys_maintained_.load()) return;
    if (engine->MaintainKeys(*this, /*force=*/false).ok()) {
      keys_maintained_ = true;
    }
  }

  const ConnectOptions& options() const { return options_; }
  const std::shared_ptr<FrankingStore>& franking_store() const {
    return franking_store_;
  }
  v1::AccountService::Stub* accounts() { return accounts_.get(); }
  v1::ConversationService::Stub* conversations() {
    return conversations_.get();
  }
  v1::MessagingService::Stub* messaging() { return messaging_.get(); }
  grpc::Channel* channel() { return channel_.get(); }

  Profile profile() const {
    absl::MutexLock l(&mu_);
    return profile_;
  }

  // Adds the bearer token to `ctx`; FailedPrecondition when unregistered.
  absl::Status Authorize(grpc::ClientContext* ctx) const {
    std::string header;
    {
      absl::MutexLock l(&mu_);
      if (profile_.device_token.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "profile ", profile_.dir.empty() ? "(in memory)" : profile_.dir,
            " is not registered: register an account or link a device "
            "first"));
      }
      header = absl::StrCat("Bearer ", profile_.device_token);
    }
    ctx->AddMetadata("authorization", header);
    return absl::OkStatus();
  }

  // One unary RPC. `call(stub-bound ctx, resp)` performs it.
  template <typename Resp, typename Call>
  absl::StatusOr<Resp> Unary(absl::string_view name, bool auth, Call call,
                             absl::Duration deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoNanoseconds(deadline));
    if (auth) {
      if (absl::Status s = Authorize(&ctx); !s.ok()) return s;
    }
    Resp resp;
    grpc::Status s = call(&ctx, &resp);
    if (!s.ok()) return FromGrpc(name, options_.server, s);
    return resp;
  }
  template <typename Resp, typename Call>
  absl::StatusOr<Resp> Unary(absl::string_view name, bool auth, Call call) {
    return Unary<Resp>(name, auth, std::move(call), options_.deadline);
  }

  absl::Status GrpcError(absl::string_view name, const grpc::Status& s) const {
    return FromGrpc(name, options_.server, s);
  }

  absl::StatusOr<uint32_t> Ack(const std::vector<uint64_t>& ids,
                               absl::Duration deadline) {
    v1::AckRequest req;
    for (uint64_t id : ids) req.add_delivery_ids(id);
    auto resp = Unary<v1::AckResponse>(
        "Ack", true,
        [&](grpc::ClientContext* c, v1::AckResponse* r) {
          return messaging_->Ack(c, req, r);
        },
        deadline);
    if (!resp.ok()) return resp.status();
    return resp->removed();
  }

  // Credentials after CreateAccount / LinkDevice.
  absl::Status SaveCredentials(const v1::Account& account,
                               const v1::Device& device,
                               const std::string& token,
                               const std::string& signing_key,
                               const std::string& key_id) {
    absl::MutexLock l(&mu_);
    // Pin the server's statement key (none from an older server: no
    // pinning). A malformed key is not pinned either.
    if (signing_key.size() == 32) {
      profile_.server_signing_key = signing_key;
      profile_.server_key_id =
          key_id.empty() ? statement::KeyId(signing_key) : key_id;
    }
    profile_.server = options_.server;
    profile_.ca_file = options_.ca_file;
    profile_.insecure = options_.insecure;
    profile_.account_id = account.account_id();
    profile_.username = account.username();
    profile_.device_id = device.device_id();
    profile_.device_token = token;
    if (profile_.dir.empty()) return absl::OkStatus();
    absl::Status s = profile_.Save();
    if (!s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("device created but its credentials could "
                                 "not be saved: ",
                                 s.message()));
    }
    return absl::OkStatus();
  }

  // ------------------------------------------------ security bookkeeping

  // Creates the StatementVerifier when the profile pins a key and the app
  // gave no verifier of its own. Idempotent.
  absl::Status InitStatementVerifier() {
    if (options_.verifier) return absl::OkStatus();
    std::string key;
    std::string dir;
    bool refuse = false;
    {
      absl::MutexLock l(&mu_);
      if (statement_verifier_ || profile_.server_signing_key.empty()) {
        return absl::OkStatus();
      }
      key = profile_.server_signing_key;
      dir = profile_.dir;
      refuse = profile_.refuse_downgrade;
    }
    StatementVerifierOptions vo;
    vo.refuse_downgrade = refuse;
    auto v = StatementVerifier::Create(std::move(key), std::move(dir),
                                       std::move(vo));
    if (!v.ok()) {
      return absl::Status(
          v.status().code(),
          absl::StrCat("downgrade protection: ", v.status().message()));
    }
    absl::MutexLock l(&mu_);
    if (!statement_verifier_) statement_verifier_ = *std::move(v);
    return absl::OkStatus();
  }

  std::shared_ptr<StatementVerifier> statement_verifier() const {
    absl::MutexLock l(&mu_);
    return statement_verifier_;
  }

  absl::Status ObserveConversation(absl::string_view rpc,
                                   const v1::Conversation& c) {
    absl::Status s = ObserveState(c.conversation_id(), c.security());
    if (s.ok()) return s;
    return absl::Status(s.code(), absl::StrCat(rpc, ": ", s.message()));
  }

  // Verifies `state` (with the StatementVerifier, if any) and updates the
  // view. PERMISSION_DENIED (naming the conversation) when it is
  // unverifiable: the view is left alone. Replays are ignored (OK).
  absl::Status ObserveState(const std::string& conversation_id,
                            const v1::SecurityState& state) {
    if (std::shared_ptr<StatementVerifier> sv = statement_verifier()) {
      absl::Status s = sv->Observe(conversation_id, state);
      if (absl::IsPermissionDenied(s)) {
        return absl::PermissionDeniedError(absl::StrCat(
            "the server sent an unverifiable security state for ",
            conversation_id, "; ignored (", s.message(), ")"));
      }
      if (absl::IsFailedPrecondition(s)) {
        // A replay / history: not used for the view (a verified E2EE one
        // still counts as E2EE evidence, done by the verifier).
        if (state.mode() == v1::SECURITY_MODE_E2EE) {
          MarkSeenE2ee(conversation_id);
        }
        return absl::OkStatus();
      }
      // OK, or INTERNAL (not persisted, remembered in memory): go on.
    }
    if (state.mode() == v1::SECURITY_MODE_E2EE) MarkSeenE2ee(conversation_id);
    absl::MutexLock l(&mu_);
    auto it = states_.find(conversation_id);
    if (it == states_.end() || state.epoch() >= it->second.epoch()) {
      states_[conversation_id] = state;
    }
    return absl::OkStatus();
  }

  // Called for each received message before the app sees it. Returns a
  // warning (empty: none) when a security state in it was unverifiable.
  std::string ObserveMessage(const v1::Message& m) {
    if (m.has_ciphertext()) {
      MarkSeenE2ee(m.conversation_id());
      if (std::shared_ptr<StatementVerifier> sv = statement_verifier()) {
        (void)sv->NoteE2eeEvidence(m.conversation_id(), m.security_epoch());
      }
    }
    std::string warning;
    if (m.has_security_change()) {
      const v1::SecurityChange& sc = m.security_change();
      if (std::shared_ptr<StatementVerifier> sv = statement_verifier()) {
        // History: an authentic old state is usually older than what is
        // remembered (FAILED_PRECONDITION, fine); a forged one is reported.
        // An unsigned old state (absent, or from an older server) is only
        // E2EE evidence, never used for the view.
        absl::Status s;
        if (!sc.old_state().signature().empty()) {
          s = sv->Observe(m.conversation_id(), sc.old_state());
        } else if (sc.old_state().mode() == v1::SECURITY_MODE_E2EE) {
          s = sv->NoteE2eeEvidence(m.conversation_id(),
                                   sc.old_state().epoch());
        }
        if (absl::IsPermissionDenied(s)) {
          warning = absl::StrCat(
              "the server sent an unverifiable security state for ",
              m.conversation_id(), "; ignored (old state: ", s.message(),
              ")");
        } else if (sc.old_state().mode() == v1::SECURITY_MODE_E2EE) {
          MarkSeenE2ee(m.conversation_id());
        }
      } else if (sc.old_state().mode() == v1::SECURITY_MODE_E2EE) {
        MarkSeenE2ee(m.conversation_id());
      }
      absl::Status s = ObserveState(m.conversation_id(), sc.new_state());
      if (!s.ok()) warning = std::string(s.message());
    }
    return warning;
  }

  std::optional<v1::SecurityState> CachedState(const std::string& id) const {
    absl::MutexLock l(&mu_);
    auto it = states_.find(id);
    if (it == states_.end()) return std::nullopt;
    return it->second;
  }

  bool SeenE2ee(const std::string& conversation_id) const {
    std::string path;
    {
      absl::MutexLock l(&mu_);
      if (seen_e2ee_.contains(conversation_id)) return true;
      if (profile_.dir.empty()) return false;
      path = SeenPath(conversation_id);
    }
    return ::access(path.c_str(), F_OK) == 0;
  }

  // Sticky: remembered in memory and, best effort, in the profile.
  void MarkSeenE2ee(const std::string& conversation_id) {
    std::string dir;
    std::string path;
    {
      absl::MutexLock l(&mu_);
      if (!seen_e2ee_.insert(conversation_id).second) return;
      if (profile_.dir.empty()) return;
      dir = absl::StrCat(profile_.dir, "/e2ee-seen");
      path = SeenPath(conversation_id);
    }
    if (!MakePrivateDirs(dir).ok()) return;
    const int fd =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }

 private:
  std::string SeenPath(const std::string& conversation_id) const {
    return absl::StrCat(profile_.dir, "/e2ee-seen/",
                        HexEncode(conversation_id));
  }

  const ConnectOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::AccountService::Stub> accounts_;
  const std::unique_ptr<v1::ConversationService::Stub> conversations_;
  const std::unique_ptr<v1::MessagingService::Stub> messaging_;
  const std::unique_ptr<v1::KeyService::Stub> keys_;
  std::atomic<bool> keys_maintained_{false};
  const std::shared_ptr<FrankingStore> franking_store_;

  mutable absl::Mutex mu_;
  Profile profile_;
  std::map<std::string, v1::SecurityState> states_;
  std::set<std::string> seen_e2ee_;
  std::shared_ptr<StatementVerifier> statement_verifier_;
};

// ------------------------------------------------------------ streaming

class StreamState {
 public:
  StreamState(std::shared_ptr<Core> core, ReceiveOptions options)
      : core_(std::move(core)), options_(std::move(options)) {
    if (options_.queue_capacity == 0) options_.queue_capacity = 1;
    if (options_.ack_batch == 0) options_.ack_batch = 1;
  }

  v1::ReceiveRequest ReceiveRequestFor() const {
    v1::ReceiveRequest req;
    req.set_max_batch(options_.max_batch);
    return req;
  }

  void Start() {
    reader_ = std::thread([this] { ReaderLoop(); });
    acker_ = std::thread([this] { AckLoop(); });
  }

  absl::StatusOr<std::optional<Event>> Next(absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    if (options_.auto_ack && outstanding_) {
      pending_acks_.push_back(*outstanding_);
      outstanding_.reset();
    }
    auto ready = [this] {
      return cancelled_ || !queue_.empty() || terminal_.has_value();
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (cancelled_) {
      return absl::CancelledError("Receive: stream cancelled");
    }
    if (!queue_.empty()) {
      Event ev = std::move(queue_.front());
      queue_.pop_front();
      if (options_.auto_ack && ev.delivery_id != 0) {
        outstanding_ = ev.delivery_id;
      }
      return std::optional<Event>(std::move(ev));
    }
    if (terminal_) return *terminal_;
    return std::optional<Event>();
  }

  void Ack(uint64_t delivery_id) {
    absl::MutexLock l(&mu_);
    pending_acks_.push_back(delivery_id);
  }

  void Cancel() {
    std::shared_ptr<grpc::ClientContext> ctx;
    {
      absl::MutexLock l(&mu_);
      cancelled_ = true;
      ctx = ctx_;
    }
    if (ctx) ctx->TryCancel();
  }

  void Close() {
    {
      absl::MutexLock l(&mu_);
      if (closed_) return;
      closed_ = true;
      if (options_.auto_ack && outstanding_) {
        pending_acks_.push_back(*outstanding_);
        outstanding_.reset();
      }
    }
    Cancel();
    if (reader_.joinable()) reader_.join();
    {
      absl::MutexLock l(&mu_);
      closing_ = true;
    }
    if (acker_.joinable()) acker_.join();
  }

 private:
  void Finish(absl::Status status) {
    absl::MutexLock l(&mu_);
    if (!terminal_) terminal_ = std::move(status);
  }

  // Waits for queue space and appends. False when cancelled.
  bool Enqueue(Event ev) {
    absl::MutexLock l(&mu_);
    auto space = [this] {
      return cancelled_ || queue_.size() < options_.queue_capacity;
    };
    mu_.Await(absl::Condition(&space));
    if (cancelled_) return false;
    queue_.push_back(std::move(ev));
    return true;
  }

  // Message franking: recomputes the commitment from the decrypted
  // `content` and the message's metadata, compares it with the one the
  // server delivered (constant time), marks `ev` and keeps what a report
  // needs in the franking store (best effort: a store failure only makes
  // the message unreportable from this device).
  void CheckFranking(Event& ev, const E2eeContent& content) {
    const v1::Message& m = ev.message;
    franking::CommitInput in;
    in.conversation_id = m.conversation_id();
    in.sender_account_id = m.sender_account_id();
    in.sender_device_id = m.sender_device_id();
    in.client_message_id = m.client_message_id();
    in.sent_at_ms = content.sent_at_ms;
    in.content_type = content.committed_content_type;
    in.content = content.content;
    bool ok = false;
    if (content.franking_key.size() == franking::kKeyBytes &&
        m.franking_commitment().size() == franking::kCommitmentBytes) {
      absl::StatusOr<std::string> c =
          franking::Commit(content.franking_key, in);
      ok = c.ok() && franking::Equal(*c, m.franking_commitment());
    }
    ev.reportable = ok;
    if (!ok) ev.unreportable = kUnreportable;
    const std::shared_ptr<FrankingStore>& store = core_->franking_store();
    if (!store || m.seq() == 0) return;
    FrankingRecord r;
    r.conversation_id = m.conversation_id();
    r.seq = m.seq();
    r.content_type = content.committed_content_type;
    r.content = content.content;
    r.franking_key = content.franking_key;
    r.sent_at_ms = content.sent_at_ms;
    r.sender_account_id = m.sender_account_id();
    r.sender_device_id = m.sender_device_id();
    r.client_message_id = m.client_message_id();
    r.server_time_ms = m.server_time_ms();
    r.commitment = m.franking_commitment();
    r.stamp = m.franking_stamp();
    r.commitment_ok = ok;
    (void)store->Put(r);
    r.Wipe();
  }

  // False when the stream was cancelled.
  bool Handle(const v1::ReceiveResponse& resp) {
    if (resp.has_backlog_drained()) {
      Event ev;
      ev.kind = Event::Kind::kBacklogDrained;
      ev.last_delivery_id = resp.backlog_drained().last_delivery_id();
      return Enqueue(std::move(ev));
    }
    if (resp.has_batch()) {
      for (const v1::Envelope& env : resp.batch().envelopes()) {
        if (!HandleEnvelope(env)) return false;
      }
      return true;
    }
    if (!resp.has_envelope()) return true;  // unknown item: skip
    return HandleEnvelope(resp.envelope());
  }

  // False when the stream was cancelled.
  bool HandleEnvelope(const v1::Envelope& env) {
    const uint64_t id = env.delivery_id();
    // Redelivery after a reconnect: already handed out in this session.
    if (id != 0 && id <= last_enqueued_) return true;
    Event ev;
    ev.delivery_id = id;
    ev.message = env.message();
    if (std::string w = core_->ObserveMessage(ev.message); !w.empty()) {
      ev.unverifiable_state = true;
      ev.security_warning = std::move(w);
    }
    switch (ev.message.payload_case()) {
      case v1::Message::kPlain:
        ev.kind = Event::Kind::kMessage;
        ev.text = PlainText(ev.message);
        break;
      case v1::Message::kCiphertext: {
        ev.kind = Event::Kind::kMessage;
        const std::shared_ptr<E2eeEngine>& engine = core_->options().e2ee;
        if (!engine) {
          ev.decrypt_error =
              "this client has no end-to-end encryption engine";
          break;
        }
        absl::StatusOr<E2eeContent> content =
            engine->Decrypt(*core_, ev.message);
        // Identity changes come before the message that revealed them.
        for (IdentityChangeNotice& n : engine->TakeIdentityChanges()) {
          Event notice;
          notice.kind = Event::Kind::kIdentityChange;
          notice.message.set_conversation_id(ev.message.conversation_id());
          notice.identity_change = std::move(n);
          if (!Enqueue(std::move(notice))) return false;
        }
        if (absl::IsAlreadyExists(content.status())) {
          // A replay the ratchet already consumed: nothing to show. Acked
          // here (whatever auto_ack says) so it is not delivered again.
          if (id != 0) {
            absl::MutexLock l(&mu_);
            pending_acks_.push_back(id);
            last_enqueued_ = id;
          }
          return true;
        }
        if (content.ok()) CheckFranking(ev, *content);
        if (!content.ok()) {
          ev.decrypt_error = std::string(content.status().message());
        } else if (content->content_type.empty() ||
                   absl::StartsWith(content->content_type, "text/plain")) {
          ev.text = std::move(content->content);
        } else {
          ev.decrypt_error = absl::StrCat("unsupported content type ",
                                          content->content_type);
        }
        if (content.ok()) {
          Cleanse(content->content);
          Cleanse(content->franking_key);
        }
        break;
      }
      case v1::Message::kAccessNotice:
        ev.kind = Event::Kind::kAccessNotice;
        break;
      case v1::Message::kModerationNotice:
        ev.kind = Event::Kind::kModerationNotice;
        break;
      case v1::Message::kSecurityChange:
        ev.kind = Event::Kind::kSecurityChange;
        break;
      case v1::Message::kMembershipChange:
        ev.kind = Event::Kind::kMembershipChange;
        break;
      default:
        ev.kind = Event::Kind::kUnknown;
        break;
    }
    ev.protection = ProtectionOf(ev.message);
    if (!Enqueue(std::move(ev))) return false;
    if (id != 0) last_enqueued_ = id;  // reader thread only
    return true;
  }

  void ReaderLoop() {
    // Publish / replenish this device's keys (best effort) so that others
    // can start sessions with it.
    if (const std::shared_ptr<E2eeEngine>& engine = core_->options().e2ee) {
      (void)engine->MaintainKeys(*core_, /*force=*/false);
    }
    int failures = 0;
    absl::Duration backoff = options_.initial_backoff;
    for (;;) {
      auto ctx = std::make_shared<grpc::ClientContext>();
      if (absl::Status s = core_->Authorize(ctx.get()); !s.ok()) {
        Finish(s);
        return;
      }
      {
        absl::MutexLock l(&mu_);
        if (cancelled_) {
          terminal_ = absl::CancelledError("Receive: stream cancelled");
          return;
        }
        ctx_ = ctx;
      }
      std::unique_ptr<grpc::ClientReader<v1::ReceiveResponse>> reader =
          core_->messaging()->Receive(ctx.get(), ReceiveRequestFor());
      v1::ReceiveResponse resp;
      bool delivered = false;
      while (reader->Read(&resp)) {
        if (!delivered) {
          delivered = true;
          failures = 0;
          backoff = options_.initial_backoff;
        }
        if (!Handle(resp)) {
          ctx->TryCancel();
          break;
        }
      }
      const grpc::Status st = reader->Finish();
      {
        absl::MutexLock l(&mu_);
        ctx_.reset();
        if (cancelled_) {
          if (!terminal_) {
            terminal_ = absl::CancelledError("Receive: stream cancelled");
          }
          return;
        }
      }
      absl::Status status =
          st.ok() ? absl::UnavailableError(absl::StrCat(
                        "Receive (server ", core_->options().server,
                        "): stream ended by the server"))
                  : core_->GrpcError("Receive", st);
      // UNAVAILABLE: connection lost / server restarting. CANCELLED that we
      // did not ask for: the server cancelled the call (e.g. while shutting
      // down). Both resume from the backlog. ABORTED (another Receive for
      // this device took over) and auth errors are final.
      const bool retryable =
          status.code() == absl::StatusCode::kUnavailable ||
          status.code() == absl::StatusCode::kCancelled;
      if (!retryable || ++failures > options_.max_reconnect_attempts) {
        if (retryable && options_.max_reconnect_attempts > 0) {
          status = absl::UnavailableError(absl::StrCat(
              status.message(), " (gave up after ",
              options_.max_reconnect_attempts, " reconnect attempts)"));
        }
        Finish(status);
        return;
      }
      const absl::Duration delay =
          Jitter(std::min(backoff, options_.max_backoff));
      backoff = std::min(backoff * 2, options_.max_backoff);
      if (options_.on_reconnect) options_.on_reconnect(status, failures, delay);
      if (!WaitBeforeReconnect(delay)) {
        Finish(absl::CancelledError("Receive: stream cancelled"));
        return;
      }
    }
  }

  // Waits up to `delay`, but returns as soon as the channel is READY again
  // (and at least the initial backoff has passed), so that a restarted
  // server is picked up at once. While the channel is in TRANSIENT_FAILURE
  // gRPC fails new calls immediately, so retrying blindly would burn the
  // attempts. False when cancelled. Cancellation is noticed within 100 ms.
  bool WaitBeforeReconnect(absl::Duration delay) {
    grpc::Channel* channel = core_->channel();
    const absl::Time start = absl::Now();
    const absl::Time latest = start + delay;
    const absl::Time earliest =
        start + std::min(delay, options_.initial_backoff);
    for (;;) {
      {
        absl::MutexLock l(&mu_);
        if (cancelled_) return false;
      }
      const absl::Time now = absl::Now();
      if (now >= latest) return true;
      const grpc_connectivity_state st =
          channel->GetState(/*try_to_connect=*/true);
      if (st == GRPC_CHANNEL_READY && now >= earliest) return true;
      absl::Time until = std::min(latest, now + absl::Milliseconds(100));
      if (st == GRPC_CHANNEL_READY) until = std::min(until, earliest);
      channel->WaitForStateChange(st, absl::ToChronoTime(until));
    }
  }

  void AckLoop() {
    constexpr size_t kMaxIdsPerAck = 1000;
    for (;;) {
      std::vector<uint64_t> batch;
      bool final = false;
      {
        absl::MutexLock l(&mu_);
        auto work = [this] { return closing_ || !pending_acks_.empty(); };
        mu_.Await(absl::Condition(&work));
        if (!closing_ && pending_acks_.size() < options_.ack_batch) {
          auto full = [this] {
            return closing_ || pending_acks_.size() >= options_.ack_batch;
          };
          mu_.AwaitWithTimeout(absl::Condition(&full),
                               options_.ack_flush_interval);
        }
        final = closing_;
        if (pending_acks_.size() <= kMaxIdsPerAck || final) {
          batch.swap(pending_acks_);
        } else {
          batch.assign(pending_acks_.begin(),
                       pending_acks_.begin() + kMaxIdsPerAck);
          pending_acks_.erase(pending_acks_.begin(),
                              pending_acks_.begin() + kMaxIdsPerAck);
        }
      }
      for (size_t i = 0; i < batch.size(); i += kMaxIdsPerAck) {
        std::vector<uint64_t> part(
            batch.begin() + i,
            batch.begin() + std::min(batch.size(), i + kMaxIdsPerAck));
        auto st = core_->Ack(part, final ? options_.close_timeout
                                         : core_->options().deadline);
        if (!st.ok() && !final && IsTransient(st.status())) {
          // Keep them for the next round (the server would also redeliver
          // them; this session drops the duplicates).
          absl::MutexLock l(&mu_);
          pending_acks_.insert(pending_acks_.begin(), part.begin(),
                               part.end());
          mu_.AwaitWithTimeout(absl::Condition(&closing_),
                               options_.ack_flush_interval);
          break;
        }
      }
      if (final) return;
    }
  }

  const std::shared_ptr<Core> core_;
  ReceiveOptions options_;
  std::thread reader_;
  std::thread acker_;

  absl::Mutex mu_;
  std::deque<Event> queue_;
  std::optional<absl::Status> terminal_;
  bool cancelled_ = false;
  bool closing_ = false;
  bool closed_ = false;
  std::shared_ptr<grpc::ClientContext> ctx_;
  std::vector<uint64_t> pending_acks_;
  std::optional<uint64_t> outstanding_;
  uint64_t last_enqueued_ = 0;  // reader thread only
};

}  // namespace internal

// ---------------------------------------------------------------- free

namespace {
constexpr int64_t kMaxKeepaliveMs = std::numeric_limits<int>::max();
}  // namespace

absl::Status ValidateConnectOptions(const ConnectOptions& o) {
  if (o.server.empty()) {
    return absl::InvalidArgumentError("no server address (host:port) given");
  }
  if (o.insecure) {
    if (!IsLoopbackTarget(o.server)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "refusing plaintext (insecure) connection to non-loopback server ",
          o.server, ": use TLS with a CA file"));
    }
  } else if (o.ca_file.empty()) {
    return absl::InvalidArgumentError(
        "a CA certificate file (PEM) is required for TLS; parleyd writes it "
        "to <data_dir>/tls/ca.pem (or use insecure mode for a loopback "
        "server)");
  }
  if (o.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("deadline must be positive");
  }
  if (o.send_max_attempts < 1) {
    return absl::InvalidArgumentError("send_max_attempts must be at least 1");
  }
  // gRPC takes the keepalive times as int milliseconds.
  const absl::Duration max_ms = absl::Milliseconds(kMaxKeepaliveMs);
  if (o.keepalive_time < absl::ZeroDuration() || o.keepalive_time > max_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "keepalive_time ", absl::FormatDuration(o.keepalive_time),
        " is out of range [0, ", absl::FormatDuration(max_ms), "]"));
  }
  if (o.keepalive_time > absl::ZeroDuration() &&
      (o.keepalive_timeout < absl::Milliseconds(1) ||
       o.keepalive_timeout > max_ms)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "keepalive_timeout ", absl::FormatDuration(o.keepalive_timeout),
        " is out of range [1ms, ", absl::FormatDuration(max_ms), "]"));
  }
  return absl::OkStatus();
}

std::string NewClientMessageId() {
  unsigned char buf[16];
  const uint64_t now_ms =
      static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  for (int i = 0; i < 6; ++i) {
    buf[i] = static_cast<unsigned char>(now_ms >> (8 * (5 - i)));
  }
  size_t got = 6;
  while (got < sizeof buf) {
    ssize_t n = ::getrandom(buf + got, sizeof buf - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += static_cast<size_t>(n);
  }
  if (got < sizeof buf) {
    std::random_device rd;
    for (size_t i = 6; i < sizeof buf; ++i) {
      buf[i] = static_cast<unsigned char>(rd());
    }
  }
  return HexEncode(absl::string_view(reinterpret_cast<char*>(buf), sizeof buf));
}

// -------------------------------------------------------- ReceiveStream

ReceiveStream::ReceiveStream(std::shared_ptr<internal::StreamState> state)
    : state_(std::move(state)) {}
ReceiveStream::~ReceiveStream() { Close(); }
absl::StatusOr<std::optional<Event>> ReceiveStream::Next(
    absl::Duration timeout) {
  return state_->Next(timeout);
}
void ReceiveStream::Ack(uint64_t delivery_id) { state_->Ack(delivery_id); }
void ReceiveStream::Cancel() { state_->Cancel(); }
void ReceiveStream::Close() { state_->Close(); }

// --------------------------------------------------------------- Client

absl::StatusOr<std::unique_ptr<Client>> Client::Create(Profile profile,
                                                       ConnectOptions options) {
  if (absl::Status s = ValidateConnectOptions(options); !s.ok()) return s;
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    std::ifstream in(options.ca_file, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat("cannot read CA file ", options.ca_file));
    }
    std::stringstream pem;
    pem << in.rdbuf();
    if (pem.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CA file ", options.ca_file, " contains no PEM certificate"));
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "parley-sdk/0.1");
  // gRPC's own reconnect backoff grows to 120 s by default, and calls fail
  // fast meanwhile; keep it short so a restarted server is found quickly.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  if (options.keepalive_time > absl::ZeroDuration()) {
    const int time_ms =
        static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, time_ms);
    args.SetInt(
        GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
        static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
    // An idle Receive stream sends no data frames: without these, gRPC
    // stops pinging after 2 pings, or waits 5 minutes between them.
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, time_ms);
  }
  auto channel = grpc::CreateCustomChannel(options.server, creds, args);
  auto core = std::make_shared<internal::Core>(std::move(profile),
                                               std::move(options), channel);
  if (absl::Status s = core->InitStatementVerifier(); !s.ok()) return s;
  return std::unique_ptr<Client>(new Client(std::move(core)));
}

Client::Client(std::shared_ptr<internal::Core> core) : core_(std::move(core)) {}
Client::~Client() = default;

Profile Client::profile() const { return core_->profile(); }
const ConnectOptions& Client::options() const { return core_->options(); }

absl::StatusOr<Registration> Client::Register(
    const std::string& username, const std::string& display_name,
    const v1::AccountAttributes& attributes, const std::string& device_name) {
  if (absl::Status s = ValidateUsername(username); !s.ok()) return s;
  const Profile p = core_->profile();
  if (p.registered()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "profile ", p.dir, " is already registered as ", p.username));
  }
  // Fail before creating an account whose token could not be stored.
  if (!p.dir.empty()) {
    if (absl::Status s = MakePrivateDirs(p.dir); !s.ok()) return s;
  }
  v1::CreateAccountRequest req;
  req.set_username(username);
  req.set_display_name(display_name);
  *req.mutable_attributes() = attributes;
  req.set_device_name(device_name);
  auto resp = core_->Unary<v1::CreateAccountResponse>(
      "CreateAccount", false,
      [&](grpc::ClientContext* c, v1::CreateAccountResponse* r) {
        return core_->accounts()->CreateAccount(c, req, r);
      });
  if (!resp.ok()) return resp.status();
  return AdoptDevice("CreateAccount", resp->account(), resp->device(),
                     resp->device_token(), resp->server_signing_key(),
                     resp->server_key_id());
}

absl::StatusOr<Registration> Client::AdoptDevice(
    const char* rpc, const v1::Account& account, const v1::Device& device,
    const std::string& device_token, const std::string& server_signing_key,
    const std::string& server_key_id) {
  if (device_token.empty()) {
    return absl::InternalError(absl::StrCat(rpc, ": server returned no token"));
  }
  if (absl::Status s = core_->SaveCredentials(
          account, device, device_token, server_signing_key, server_key_id);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = core_->InitStatementVerifier(); !s.ok()) return s;
  Registration reg{account, device, absl::OkStatus()};
  if (core_->options().e2ee) reg.keys_status = MaintainE2eeKeys(true);
  return reg;
}

absl::StatusOr<Registration> Client::LinkDevice(const std::string& link_code,
                                                const std::string& device_name) {
  if (link_code.empty()) return absl::InvalidArgumentError("empty link code");
  const Profile p = core_->profile();
  if (p.registered()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "profile ", p.dir, " already holds a device of ", p.username));
  }
  if (!p.dir.empty()) {
    if (absl::Status s = MakePrivateDirs(p.dir); !s.ok()) return s;
  }
  v1::LinkDeviceRequest req;
  req.set_link_code(link_code);
  req.set_device_name(device_name);
  auto resp = core_->Unary<v1::LinkDeviceResponse>(
      "LinkDevice", false,
      [&](grpc::ClientContext* c, v1::LinkDeviceResponse* r) {
        return core_->accounts()->LinkDevice(c, req, r);
      });
  if (!resp.ok()) return resp.status();
  return AdoptDevice("LinkDevice", resp->account(), resp->device(),
                     resp->device_token(), resp->server_signing_key(),
                     resp->server_key_id());
}

absl::StatusOr<DeviceLink> Client::CreateDeviceLink() {
  auto resp = core_->Unary<v1::CreateDeviceLinkResponse>(
      "CreateDeviceLink", true,
      [&](grpc::ClientContext* c, v1::CreateDeviceLinkResponse* r) {
        return core_->accounts()->CreateDeviceLink(
            c, v1::CreateDeviceLinkRequest(), r);
      });
  if (!resp.ok()) return resp.status();
  return DeviceLink{resp->link_code(), resp->expires_at_ms()};
}

absl::StatusOr<std::vector<v1::Device>> Client::ListDevices() {
  auto resp = core_->Unary<v1::ListDevicesResponse>(
      "ListDevices", true,
      [&](grpc::ClientContext* c, v1::ListDevicesResponse* r) {
        return core_->accounts()->ListDevices(c, v1::ListDevicesRequest(), r);
      });
  if (!resp.ok()) return resp.status();
  return std::vector<v1::Device>(resp->devices().begin(),
                                 resp->devices().end());
}

absl::Status Client::RemoveDevice(uint32_t device_id) {
  v1::RemoveDeviceRequest req;
  req.set_device_id(device_id);
  return core_
      ->Unary<v1::RemoveDeviceResponse>(
          "RemoveDevice", true,
          [&](grpc::ClientContext* c, v1::RemoveDeviceResponse* r) {
            return core_->accounts()->RemoveDevice(c, req, r);
          })
      .status();
}

absl::StatusOr<v1::Account> Client::GetAccountByUsername(
    const std::string& username) {
  v1::GetAccountRequest req;
  req.set_username(username);
  auto resp = core_->Unary<v1::GetAccountResponse>(
      "GetAccount", true,
      [&](grpc::ClientContext* c, v1::GetAccountResponse* r) {
        return core_->accounts()->GetAccount(c, req, r);
      });
  if (!resp.ok()) return resp.status();
  return resp->account();
}

absl::StatusOr<v1::Account> Client::GetAccountById(
    const std::string& account_id) {
  v1::GetAccountRequest req;
  req.set_account_id(account_id);
  auto resp = core_->Unary<v1::GetAccountResponse>(
      "GetAccount", true,
      [&](grpc::ClientContext* c, v1::GetAccountResponse* r) {
        return core_->accounts()->GetAccount(c, req, r);
      });
  if (!resp.ok()) return resp.status();
  return resp->account();
}

absl::StatusOr<DirectConversation> Client::CreateDirect(
    const std::string& peer_username) {
  v1::CreateDirectRequest req;
  req.set_peer_username(peer_username);
  auto resp = core_->Unary<v1::CreateDirectResponse>(
      "CreateDirect", true,
      [&](grpc::ClientContext* c, v1::CreateDirectResponse* r) {
        return core_->conversations()->CreateDirect(c, req, r);
      });
  if (!resp.ok()) return resp.status();
  if (absl::Status s =
          core_->ObserveConversation("CreateDirect", resp->conversation());
      !s.ok()) {
    return s;
  }
  return DirectConversation{resp->conversation(), resp->created()};
}

absl::StatusOr<v1::Conversation> Client::CreateGroup(
    const std::string& title, const std::vector<std::string>& usernames) {
  v1::CreateGroupRequest req;
  req.set_title(title);
  for (const std::string& u : usernames) req.add_member_usernames(u);
  auto resp = core_->Unary<v1::CreateGroupResponse>(
      "CreateGroup", true,
      [&](grpc::ClientContext* c, v1::CreateGroupResponse* r) {
        return core_->conversations()->CreateGroup(c, req, r);
      });
  if (!resp.ok()) return resp.status();
  if (absl::Status s =
          core_->ObserveConversation("CreateGroup", resp->conversation());
      !s.ok()) {
    return s;
  }
  return resp->conversation();
}

absl::StatusOr<v1::Conversation> Client::GetConversation(
    const std::string& conversation_id) {
  v1::GetConversationRequest req;
  req.set_conversation_id(conversation_id);
  auto resp = core_->Unary<v1::GetConversationResponse>(
      "GetConversation", true,
      [&](grpc::ClientContext* c, v1::GetConversationResponse* r) {
        return core_->conversations()->GetConversation(c, req, r);
      });
  if (!resp.ok()) return resp.status();
  if (absl::Status s =
          core_->ObserveConversation("GetConversation", resp->conversation());
      !s.ok()) {
    return s;
  }
  return resp->conversation();
}

absl::StatusOr<std::vector<v1::Conversation>> Client::ListConversations() {
  auto resp = core_->Unary<v1::ListConversationsResponse>(
      "ListConversations", true,
      [&](grpc::ClientContext* c, v1::ListConversationsResponse* r) {
        return core_->conversations()->ListConversations(
            c, v1::ListConversationsRequest(), r);
      });
  if (!resp.ok()) return resp.status();
  absl::Status first_error;
  for (const v1::Conversation& c : resp->conversations()) {
    absl::Status s = core_->ObserveConversation("ListConversations", c);
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  if (!first_error.ok()) return first_error;
  return std::vector<v1::Conversation>(resp->conversations().begin(),
                                       resp->conversations().end());
}

absl::StatusOr<v1::Conversation> Client::AddMembers(
    const std::string& conversation_id,
    const std::vector<std::string>& usernames) {
  v1::AddMembersRequest req;
  req.set_conversation_id(conversation_id);
  for (const std::string& u : usernames) req.add_usernames(u);
  auto resp = core_->Unary<v1::AddMembersResponse>(
      "AddMembers", true,
      [&](grpc::ClientContext* c, v1::AddMembersResponse* r) {
        return core_->conversations()->AddMembers(c, req, r);
      });
  if (!resp.ok()) return resp.status();
  if (absl::Status s =
          core_->ObserveConversation("AddMembers", resp->conversation());
      !s.ok()) {
    return s;
  }
  return resp->conversation();
}

absl::Status Client::RemoveMember(const std::string& conversation_id,
                                  const std::string& account_id) {
  v1::RemoveMemberRequest req;
  req.set_conversation_id(conversation_id);
  req.set_account_id(account_id);
  return core_
      ->Unary<v1::RemoveMemberResponse>(
          "RemoveMember", true,
          [&](grpc::ClientContext* c, v1::RemoveMemberResponse* r) {
            return core_->conversations()->RemoveMember(c, req, r);
          })
      .status();
}

absl::StatusOr<SecurityChangeResult> Client::RequestSecurityChange(
    const std::string& conversation_id, v1::SecurityMode mode) {
  if (conversation_id.empty()) {
    return absl::InvalidArgumentError(
        "RequestSecurityChange: empty conversation id");
  }
  if (mode != v1::SECURITY_MODE_E2EE && mode != v1::SECURITY_MODE_OPT_IN &&
      mode != v1::SECURITY_MODE_TRANSPORT) {
    return absl::InvalidArgumentError(
        "RequestSecurityChange: requested mode must be e2ee, opt-in or "
        "transport");
  }
  v1::RequestSecurityChangeRequest req;
  req.set_conversation_id(conversation_id);
  req.set_requested_mode(mode);
  auto resp = core_->Unary<v1::RequestSecurityChangeResponse>(
      "RequestSecurityChange", true,
      [&](grpc::ClientContext* c, v1::RequestSecurityChangeResponse* r) {
        return core_->conversations()->RequestSecurityChange(c, req, r);
      });
  if (!resp.ok()) return resp.status();
  // Sticky bookkeeping: records E2EE when the state says so.
  if (absl::Status s = core_->ObserveState(conversation_id, resp->state());
      !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("RequestSecurityChange: ", s.message()));
  }
  SecurityChangeResult result;
  result.conversation_id = conversation_id;
  result.requested_mode = mode;
  result.state = resp->state();
  result.pending_consent = resp->pending_consent();
  result.consents = resp->consents();
  result.consents_required = resp->consents_required();
  const bool is_e2ee = result.state.mode() == v1::SECURITY_MODE_E2EE;
  const bool known = result.state.mode() != v1::SECURITY_MODE_UNSPECIFIED;
  result.in_effect = !result.pending_consent && known &&
                     (mode == v1::SECURITY_MODE_E2EE ? is_e2ee : !is_e2ee);
  return result;
}

absl::StatusOr<SecurityChangeResult> Client::EnableE2ee(
    const std::string& conversation_id) {
  return RequestSecurityChange(conversation_id, v1::SECURITY_MODE_E2EE);
}

bool Client::SeenAsE2ee(const std::string& conversation_id) const {
  return core_->SeenE2ee(conversation_id);
}

std::shared_ptr<StatementVerifier> Client::statement_verifier() const {
  return core_->statement_verifier();
}

absl::Status Client::MaintainE2eeKeys(bool force) {
  const std::shared_ptr<E2eeEngine>& engine = core_->options().e2ee;
  if (!engine) {
    return absl::FailedPreconditionError(
        "this client has no end-to-end encryption engine");
  }
  if (!core_->profile().registered()) {
    grpc::ClientContext probe;
    if (absl::Status s = core_->Authorize(&probe); !s.ok()) return s;
  }
  return engine->MaintainKeys(*core_, force);
}

E2eeHost& Client::e2ee_host() { return *core_; }

absl::StatusOr<SendResult> Client::Send(
    const std::string& conversation_id, const std::string& text,
    std::optional<std::string> client_message_id) {
  if (conversation_id.empty()) {
    return absl::InvalidArgumentError("Send: empty conversation id");
  }
  std::string id = client_message_id ? *std::move(client_message_id)
                                     : NewClientMessageId();
  if (absl::Status s = internal::ValidateClientMessageId(id); !s.ok()) {
    return s;
  }

  // The protection check: never plaintext into (once) E2EE conversations.
  std::optional<v1::SecurityState> state = core_->CachedState(conversation_id);
  if (!state) {
    auto conv = GetConversation(conversation_id);
    if (!conv.ok()) return conv.status();
    // A replayed (ignored) state is not the view: prefer the cached one.
    state = core_->CachedState(conversation_id);
    if (!state) state = conv->security();
  }
  v1::SendRequest req;
  req.set_conversation_id(conversation_id);
  req.set_client_message_id(id);
  Protection protection = Protection::kTransport;
  bool downgrade_warning = false;
  const std::shared_ptr<E2eeEngine>& engine = core_->options().e2ee;
  const bool e2ee = state->mode() == v1::SECURITY_MODE_E2EE;
  E2eeContent content;
  content.content_type = "text/plain";
  std::string franking_commitment;
  // The franking key lives as long as re-encryptions may need it.
  struct KeyWiper {
    std::string* key;
    ~KeyWiper() { internal::Cleanse(*key); }
  } key_wiper{&content.franking_key};
  v1::Conversation conversation;
  // (Re)reads the conversation (members, mode) and encrypts for it.
  auto encrypt = [&]() -> absl::Status {
    auto conv = GetConversation(conversation_id);
    if (!conv.ok()) return conv.status();
    if (conv->security().mode() != v1::SECURITY_MODE_E2EE) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Send: security state of ", conversation_id,
          " changed while sending; refusing to send"));
    }
    conversation = *std::move(conv);
    auto body = engine->Encrypt(*core_, conversation, content);
    if (!body.ok()) {
      return absl::Status(body.status().code(),
                          absl::StrCat("Send: encrypting for ", conversation_id,
                                       ": ", body.status().message()));
    }
    *req.mutable_body()->mutable_encrypted() = *std::move(body);
    req.mutable_body()->mutable_encrypted()->set_franking_commitment(
        franking_commitment);
    return absl::OkStatus();
  };
  if (e2ee) {
    if (!engine) {
      return absl::UnimplementedError(
          "this conversation is end-to-end encrypted: plaintext is never "
          "sent into it, and this client cannot encrypt (it has no end-to-end "
          "encryption engine)");
    }
    core_->MaintainKeysOnce();
    content.content = text;
    // Message franking: a fresh key per message (the same for every device
    // and for re-encryptions after session repairs), and the commitment
    // beside the ciphertexts.
    absl::StatusOr<std::string> key = franking::NewKey();
    if (!key.ok()) {
      return absl::Status(key.status().code(),
                          absl::StrCat("Send: message franking: ",
                                       key.status().message()));
    }
    content.franking_key = *std::move(key);
    content.sent_at_ms = absl::ToUnixMillis(absl::Now());
    franking::CommitInput in;
    in.conversation_id = conversation_id;
    const std::string self_account = core_->account_id();
    in.sender_account_id = self_account;
    in.sender_device_id = core_->device_id();
    in.client_message_id = id;
    in.sent_at_ms = content.sent_at_ms;
    in.content_type = content.content_type;
    in.content = content.content;
    absl::StatusOr<std::string> commitment =
        franking::Commit(content.franking_key, in);
    if (!commitment.ok()) {
      internal::Cleanse(content.franking_key);
      return absl::Status(commitment.status().code(),
                          absl::StrCat("Send: message franking: ",
                                       commitment.status().message()));
    }
    franking_commitment = *std::move(commitment);
    absl::Status encrypted = encrypt();
    if (!encrypted.ok()) {
      internal::Cleanse(content.franking_key);
      return encrypted;
    }
    protection = Protection::kEndToEnd;
  } else if (std::shared_ptr<StatementVerifier> sv =
                 core_->statement_verifier()) {
    // Downgrade protection with the pinned key: plaintext only where no
    // verified E2EE statement (or E2EE evidence) exists, or after a verified
    // newer downgrade (then the app is warned).
    const bool seen = core_->SeenE2ee(conversation_id);
    absl::Status allowed =
        seen ? sv->VerifyDowngrade(conversation_id, *state)
             : sv->CheckPlaintextAllowed(conversation_id, *state);
    if (!allowed.ok()) {
      return absl::Status(
          allowed.code(),
          absl::StrCat("Send: refusing to send plaintext into ",
                       conversation_id, ": ", allowed.message()));
    }
    std::optional<RememberedSecurity> rem = sv->Remembered(conversation_id);
    downgrade_warning = seen || (rem && rem->e2ee_threshold() > 0);
    v1::PlainBody* plain = req.mutable_body()->mutable_plain();
    plain->set_content_type("text/plain");
    plain->set_content(text);
  } else {
    if (core_->SeenE2ee(conversation_id)) {
      downgrade_warning = true;
      const std::shared_ptr<SecurityVerifier>& verifier =
          core_->options().verifier;
      absl::Status verified =
          verifier ? verifier->VerifyDowngrade(conversation_id, *state)
                   : absl::FailedPreconditionError(absl::StrCat(
                         "conversation ", conversation_id,
                         " was end-to-end encrypted on this device; the "
                         "server now reports ",
                         SecurityModeName(state->mode()),
                         " (server-readable), and this client cannot verify "
                         "that change yet: refusing to send plaintext"));
      if (!verified.ok()) return verified;
    }
    v1::PlainBody* plain = req.mutable_body()->mutable_plain();
    plain->set_content_type("text/plain");
    plain->set_content(text);
  }

  const ConnectOptions& o = core_->options();
  // One Send with the bounded retries of transient failures. `details`
  // receives the error's structured details (grpc-status-details-bin).
  auto send_with_retries = [&](int* attempts, std::string* details)
      -> absl::StatusOr<v1::SendResponse> {
    absl::Duration backoff = o.send_initial_backoff;
    absl::Status last;
    for (int attempt = 1; attempt <= o.send_max_attempts; ++attempt) {
      *attempts = attempt;
      details->clear();
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoNanoseconds(o.deadline));
      if (absl::Status s = core_->Authorize(&ctx); !s.ok()) return s;
      v1::SendResponse resp;
      const grpc::Status st = core_->messaging()->Send(&ctx, req, &resp);
      if (st.ok()) return resp;
      last = core_->GrpcError("Send", st);
      *details = st.error_details();
      if (!internal::IsTransient(last) || attempt == o.send_max_attempts) {
        break;
      }
      absl::SleepFor(internal::Jitter(backoff));
      backoff = std::min(backoff * 2, o.send_max_backoff);
    }
    if (internal::IsTransient(last) && o.send_max_attempts > 1) {
      return absl::Status(
          last.code(),
          absl::StrCat(last.message(), " (after ", o.send_max_attempts,
                       " attempts; client_message_id ", id, ")"));
    }
    return last;
  };

  int repairs = 0;
  for (;;) {
    int attempts = 1;
    std::string details;
    absl::StatusOr<v1::SendResponse> resp =
        send_with_retries(&attempts, &details);
    if (resp.ok()) {
      SendResult result;
      result.conversation_id = conversation_id;
      result.client_message_id = id;
      result.seq = resp->seq();
      result.server_time_ms = resp->server_time_ms();
      result.duplicate = resp->duplicate();
      result.attempts = attempts;
      result.protection = protection;
      result.session_repairs = repairs;
      result.downgrade_warning = downgrade_warning;
      if (e2ee) {
        engine->Sent(conversation, req.body().encrypted());
        result.identity_changes = engine->TakeIdentityChanges();
      }
      return result;
    }
    if (!e2ee || !absl::IsFailedPrecondition(resp.status())) {
      return resp.status();
    }
    std::optional<v1::DeviceMismatch> mismatch = ParseDeviceMismatch(details);
    if (!mismatch) return resp.status();
    if (repairs >= o.max_session_repairs) {
      return absl::FailedPreconditionError(absl::StrCat(
          resp.status().message(), " (still mismatched after ", repairs,
          " session repairs; client_message_id ", id, ")"));
    }
    ++repairs;
    if (absl::Status s = engine->RepairSessions(*core_, *mismatch); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("Send: repairing sessions for ",
                                       conversation_id, ": ", s.message()));
    }
    // Same client_message_id, fresh ciphertexts for the current members.
    if (absl::Status s = encrypt(); !s.ok()) return s;
  }
}

std::shared_ptr<FrankingStore> Client::franking_store() const {
  return core_->franking_store();
}

absl::StatusOr<ReportResult> Client::ReportMessage(
    const std::string& conversation_id, uint64_t seq, v1::ReportReason reason,
    const std::string& comment) {
  if (conversation_id.empty()) {
    return absl::InvalidArgumentError("ReportMessage: empty conversation id");
  }
  if (seq == 0) {
    return absl::InvalidArgumentError("ReportMessage: seq must be >= 1");
  }
  if (reason == v1::REPORT_REASON_UNSPECIFIED ||
      !v1::ReportReason_IsValid(reason)) {
    return absl::InvalidArgumentError("ReportMessage: a reason is required");
  }
  if (comment.size() > 1000) {
    return absl::InvalidArgumentError(
        "ReportMessage: the comment is longer than 1000 characters");
  }
  v1::ReportMessageRequest req;
  req.set_conversation_id(conversation_id);
  req.set_seq(seq);
  req.set_reason(reason);
  req.set_comment(comment);
  ReportResult result;
  if (const std::shared_ptr<FrankingStore>& store = core_->franking_store()) {
    absl::StatusOr<FrankingRecord> r = store->Get(conversation_id, seq);
    if (r.ok()) {
      if (!r->commitment_ok) {
        r->Wipe();
        return absl::FailedPreconditionError(absl::StrCat(
            "ReportMessage: message #", seq, " of ", conversation_id,
            " is ", internal::kUnreportable,
            " (the sender's commitment did not match what it encrypted)"));
      }
      *req.mutable_reveal() = r->ToReveal();
      r->Wipe();
      result.revealed = true;
    }
  }
  auto resp = core_->Unary<v1::ReportMessageResponse>(
      "ReportMessage", true,
      [&](grpc::ClientContext* c, v1::ReportMessageResponse* out) {
        return core_->messaging()->ReportMessage(c, req, out);
      });
  if (req.has_reveal()) {
    internal::Cleanse(*req.mutable_reveal()->mutable_content());
    internal::Cleanse(*req.mutable_reveal()->mutable_franking_key());
  }
  if (!resp.ok()) return resp.status();
  result.report_id = resp->report_id();
  result.franking_verified = resp->franking_verified();
  return result;
}

absl::StatusOr<uint32_t> Client::Ack(const std::vector<uint64_t>& ids) {
  return core_->Ack(ids, core_->options().deadline);
}

absl::StatusOr<HistoryPage> Client::GetHistory(
    const std::string& conversation_id, uint64_t before_seq, uint32_t limit) {
  v1::GetHistoryRequest req;
  req.set_conversation_id(conversation_id);
  req.set_before_seq(before_seq);
  req.set_limit(limit);
  auto resp = core_->Unary<v1::GetHistoryResponse>(
      "GetHistory", true,
      [&](grpc::ClientContext* c, v1::GetHistoryResponse* r) {
        return core_->messaging()->GetHistory(c, req, r);
      });
  if (!resp.ok()) return resp.status();
  HistoryPage page;
  page.messages.assign(resp->messages().begin(), resp->messages().end());
  page.more = resp->more();
  for (const v1::Message& m : page.messages) (void)core_->ObserveMessage(m);
  return page;
}

absl::StatusOr<std::unique_ptr<ReceiveStream>> Client::Receive(
    ReceiveOptions options) {
  if (options.max_batch > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReceiveOptions.max_batch: ", options.max_batch,
                     " is above the server's limit of 256"));
  }
  if (!core_->profile().registered()) {
    grpc::ClientContext probe;
    if (absl::Status s = core_->Authorize(&probe); !s.ok()) return s;
  }
  auto state =
      std::make_shared<internal::StreamState>(core_, std::move(options));
  state->Start();
  return std::unique_ptr<ReceiveStream>(new ReceiveStream(std::move(state)));
}

absl::Status Client::Listen(
    ReceiveOptions options,
    const std::function<absl::Status(const Event&)>& handler,
    std::stop_token stop) {
  const bool auto_ack = options.auto_ack;
  options.auto_ack = false;  // acked here, after the handler succeeded
  auto stream = Receive(std::move(options));
  if (!stream.ok()) return stream.status();
  std::stop_callback on_stop(stop, [s = stream->get()] { s->Cancel(); });
  while (!stop.stop_requested()) {
    auto ev = (*stream)->Next(absl::Milliseconds(200));
    if (!ev.ok()) {
      if (stop.stop_requested()) break;
      return ev.status();
    }
    if (!ev->has_value()) continue;
    if (absl::Status s = handler(**ev); !s.ok()) return s;
    if (auto_ack && (*ev)->delivery_id != 0) {
      (*stream)->Ack((*ev)->delivery_id);
    }
  }
  return absl::OkStatus();
}

}  // namespace parley
