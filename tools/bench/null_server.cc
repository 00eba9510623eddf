// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/null_server.h"

#include <grpcpp/grpcpp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <iterator>
#include <map>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/receive_wire.h"
#include "core/tls.h"
#include "parley/v1/parley.grpc.pb.h"

namespace parley::bench {
namespace {

namespace v1 = ::parley::v1;

class NullReceive;

struct Mailbox {
  std::string account_id;
  absl::Mutex mu;
  // Unacked entries: serialized v1::Message each (shared by the members of
  // one plaintext Send), written as parleyd writes them (core/receive_wire.h).
  std::map<uint64_t, std::shared_ptr<const std::string>> entries
      ABSL_GUARDED_BY(mu);
  uint64_t next_delivery_id ABSL_GUARDED_BY(mu) = 1;
  std::shared_ptr<NullReceive> stream ABSL_GUARDED_BY(mu);
};

struct Account {
  std::string account_id;
  std::string username;
  std::shared_ptr<Mailbox> mailbox;
};

struct Conv {
  std::vector<std::shared_ptr<Account>> members;
  std::atomic<uint64_t> seq{0};
};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One Receive stream; the same shape as parleyd's ReceiveReactor: decisions
// under mu_, gRPC operations started after it is released, one write in
// flight. Owned by itself (self_) until OnDone.
class NullReceive final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                          public std::enable_shared_from_this<NullReceive> {
 public:
  NullReceive(std::shared_ptr<Mailbox> mb, size_t max_batch)
      : mb_(std::move(mb)), max_batch_(std::max<size_t>(1, max_batch)) {}

  void Start() {
    std::shared_ptr<NullReceive> old;
    {
      absl::MutexLock lock(&mu_);
      self_ = shared_from_this();
    }
    {
      absl::MutexLock lock(&mb_->mu);
      backlog_end_ = mb_->next_delivery_id - 1;
      old = std::move(mb_->stream);
      mb_->stream = shared_from_this();
    }
    if (old)
      old->Close(grpc::Status(grpc::StatusCode::ABORTED,
                              "replaced by a newer Receive stream"));
    Pump();
  }

  void Notify() { Pump(); }

  void Close(const grpc::Status& s) {
    {
      absl::MutexLock lock(&mu_);
      if (!finish_status_.has_value()) finish_status_ = s;
    }
    Pump();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !finish_status_.has_value()) {
        finish_status_ =
            grpc::Status(grpc::StatusCode::CANCELLED, "stream broken");
      }
    }
    Pump();
  }

  void OnCancel() override {
    Close(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&mb_->mu);
      if (mb_->stream.get() == this) mb_->stream.reset();
    }
    std::shared_ptr<NullReceive> self;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      self = std::move(self_);
    }
  }

 private:
  void Pump() {
    bool write = false, finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_ || done_) return;
      if (finish_status_.has_value()) {
        finished_ = finish = true;
        status = *finish_status_;
      } else {
        absl::MutexLock mlock(&mb_->mu);
        auto it = mb_->entries.upper_bound(cursor_);
        if (it != mb_->entries.end()) {
          // As parleyd: whatever is waiting, up to max_batch_ envelopes and
          // 1 MB, in one response; a lone envelope on its own.
          auto next = std::next(it);
          if (max_batch_ == 1 || next == mb_->entries.end()) {
            SetCurrent(
                core::wire::ResponseWithEnvelope({it->first, it->second}));
            cursor_ = it->first;
          } else {
            std::vector<core::wire::Entry> batch;
            size_t bytes = 0;
            for (; it != mb_->entries.end() && batch.size() < max_batch_;
                 ++it) {
              core::wire::Entry e{it->first, it->second};
              bytes += core::wire::EnvelopeSize(e);
              if (!batch.empty() && bytes > (1u << 20)) break;
              batch.push_back(std::move(e));
              cursor_ = it->first;
            }
            SetCurrent(core::wire::ResponseWithBatch(batch));
          }
          write = true;
        } else if (!drained_sent_) {
          drained_sent_ = true;
          v1::ReceiveResponse marker;
          marker.mutable_backlog_drained()->set_last_delivery_id(
              std::max(cursor_, backlog_end_));
          SetCurrent(marker.SerializeAsString());
          write = true;
        }
        writing_ = write;
      }
    }
    if (write) StartWrite(&current_);
    if (finish) Finish(status);
  }

  void SetCurrent(const std::string& bytes) {
    grpc::Slice slice(bytes);
    current_ = grpc::ByteBuffer(&slice, 1);
  }

  const std::shared_ptr<Mailbox> mb_;
  const size_t max_batch_;
  absl::Mutex mu_;
  std::shared_ptr<NullReceive> self_ ABSL_GUARDED_BY(mu_);
  // A serialized v1::ReceiveResponse; touched only while writing_ is false.
  grpc::ByteBuffer current_;
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  uint64_t cursor_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t backlog_end_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool drained_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

class FailedReceive final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit FailedReceive(const grpc::Status& s) { Finish(s); }
  void OnDone() override { delete this; }
};

// In-memory directory of accounts and conversations.
class State {
 public:
  std::shared_ptr<Account> Auth(grpc::CallbackServerContext* ctx,
                                grpc::Status* err) {
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    constexpr absl::string_view kBearer = "Bearer ";
    if (it == md.end() || it->second.size() <= kBearer.size() ||
        absl::string_view(it->second.data(), kBearer.size()) != kBearer) {
      *err = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing bearer token");
      return nullptr;
    }
    std::string token(it->second.data() + kBearer.size(),
                      it->second.size() - kBearer.size());
    absl::ReaderMutexLock lock(&mu_);
    auto t = by_token_.find(token);
    if (t == by_token_.end()) {
      *err = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "unknown device token");
      return nullptr;
    }
    return t->second;
  }

  grpc::Status CreateAccount(const std::string& username,
                             v1::CreateAccountResponse* resp) {
    if (username.empty())
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "username");
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
      return grpc::Status(grpc::StatusCode::INTERNAL, "rand");
    std::string token = absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(raw), sizeof(raw)));
    auto a = std::make_shared<Account>();
    a->username = username;
    a->mailbox = std::make_shared<Mailbox>();
    {
      absl::MutexLock lock(&mu_);
      if (by_name_.contains(username)) {
        return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "username taken");
      }
      a->account_id = absl::StrCat("acc", ++next_id_);
      a->mailbox->account_id = a->account_id;
      by_name_[username] = a;
      by_id_[a->account_id] = a;
      by_token_[token] = a;
    }
    resp->mutable_account()->set_account_id(a->account_id);
    resp->mutable_account()->set_username(username);
    resp->mutable_device()->set_device_id(1);
    resp->set_device_token(token);
    return grpc::Status::OK;
  }

  grpc::Status CreateConversation(const std::shared_ptr<Account>& caller,
                                  const std::vector<std::string>& usernames,
                                  bool direct, v1::Conversation* out) {
    auto c = std::make_shared<Conv>();
    c->members.push_back(caller);
    std::string id;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& u : usernames) {
        auto it = by_name_.find(u);
        if (it == by_name_.end())
          return grpc::Status(grpc::StatusCode::NOT_FOUND, u);
        if (it->second != caller) c->members.push_back(it->second);
      }
      id = absl::StrCat("conv", ++next_id_);
      convs_[id] = c;
    }
    out->set_conversation_id(id);
    out->set_kind(direct ? v1::CONVERSATION_KIND_DIRECT
                         : v1::CONVERSATION_KIND_GROUP);
    out->set_created_at_ms(NowMs());
    for (const auto& m : c->members) {
      auto* mm = out->add_members();
      mm->set_account_id(m->account_id);
      mm->set_username(m->username);
    }
    return grpc::Status::OK;
  }

  std::shared_ptr<Conv> FindConv(const std::string& id) {
    absl::ReaderMutexLock lock(&mu_);
    auto it = convs_.find(id);
    return it == convs_.end() ? nullptr : it->second;
  }

  void CloseAll() {
    std::vector<std::shared_ptr<NullReceive>> streams;
    {
      absl::ReaderMutexLock lock(&mu_);
      for (auto& [id, a] : by_id_) {
        absl::MutexLock mlock(&a->mailbox->mu);
        if (a->mailbox->stream) streams.push_back(a->mailbox->stream);
      }
    }
    for (auto& s : streams)
      s->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
  }

 private:
  absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::shared_ptr<Account>> by_token_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Account>> by_name_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Account>> by_id_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Conv>> convs_
      ABSL_GUARDED_BY(mu_);
};

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx,
                                const grpc::Status& s) {
  auto* r = ctx->DefaultReactor();
  r->Finish(s);
  return r;
}

class AccountSvc final : public v1::AccountService::CallbackService {
 public:
  explicit AccountSvc(State* st) : st_(st) {}
  grpc::ServerUnaryReactor* CreateAccount(
      grpc::CallbackServerContext* ctx, const v1::CreateAccountRequest* req,
      v1::CreateAccountResponse* resp) override {
    return Reply(ctx, st_->CreateAccount(req->username(), resp));
  }

 private:
  State* st_;
};

class ConversationSvc final : public v1::ConversationService::CallbackService {
 public:
  explicit ConversationSvc(State* st) : st_(st) {}
  grpc::ServerUnaryReactor* CreateDirect(
      grpc::CallbackServerContext* ctx, const v1::CreateDirectRequest* req,
      v1::CreateDirectResponse* resp) override {
    grpc::Status err;
    auto caller = st_->Auth(ctx, &err);
    if (!caller) return Reply(ctx, err);
    resp->set_created(true);
    return Reply(ctx,
                 st_->CreateConversation(caller, {req->peer_username()}, true,
                                         resp->mutable_conversation()));
  }
  grpc::ServerUnaryReactor* CreateGroup(
      grpc::CallbackServerContext* ctx, const v1::CreateGroupRequest* req,
      v1::CreateGroupResponse* resp) override {
    grpc::Status err;
    auto caller = st_->Auth(ctx, &err);
    if (!caller) return Reply(ctx, err);
    std::vector<std::string> names(req->member_usernames().begin(),
                                   req->member_usernames().end());
    return Reply(ctx, st_->CreateConversation(caller, names, false,
                                              resp->mutable_conversation()));
  }

 private:
  State* st_;
};

class KeySvc final : public v1::KeyService::CallbackService {
 public:
  explicit KeySvc(State* st) : st_(st) {}
  // Kept in memory unchecked; one device (id 1) per account.
  grpc::ServerUnaryReactor* UploadKeys(grpc::CallbackServerContext* ctx,
                                       const v1::UploadKeysRequest* req,
                                       v1::UploadKeysResponse*) override {
    grpc::Status err;
    auto caller = st_->Auth(ctx, &err);
    if (!caller) return Reply(ctx, err);
    absl::MutexLock lock(&mu_);
    v1::UploadKeysRequest& k = keys_[caller->account_id];
    const auto one_time = std::move(*k.mutable_one_time_pre_keys());
    k = *req;
    for (const auto& p : one_time) *k.add_one_time_pre_keys() = p;
    return Reply(ctx, grpc::Status::OK);
  }
  // One bundle, consuming a one-time pre-key when there is one.
  grpc::ServerUnaryReactor* FetchBundles(grpc::CallbackServerContext* ctx,
                                         const v1::FetchBundlesRequest* req,
                                         v1::FetchBundlesResponse* resp) override {
    grpc::Status err;
    if (!st_->Auth(ctx, &err)) return Reply(ctx, err);
    absl::MutexLock lock(&mu_);
    auto it = keys_.find(req->account_id());
    if (it == keys_.end()) {
      return Reply(ctx, grpc::Status(grpc::StatusCode::NOT_FOUND, "no keys"));
    }
    v1::UploadKeysRequest& k = it->second;
    v1::PreKeyBundle* b = resp->add_bundles();
    b->set_device_id(1);
    b->set_registration_id(k.registration_id());
    b->set_identity_key(k.identity_key());
    *b->mutable_signed_pre_key() = k.signed_pre_key();
    if (k.one_time_pre_keys_size() > 0) {
      *b->mutable_one_time_pre_key() = k.one_time_pre_keys(0);
      k.mutable_one_time_pre_keys()->erase(k.mutable_one_time_pre_keys()->begin());
    }
    return Reply(ctx, grpc::Status::OK);
  }

 private:
  State* st_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, v1::UploadKeysRequest> keys_ ABSL_GUARDED_BY(mu_);
};

// Delivers to every member device's mailbox (and wakes its stream).
void Deliver(const std::shared_ptr<Account>& to,
             std::shared_ptr<const std::string> message) {
  std::shared_ptr<NullReceive> stream;
  {
    absl::MutexLock lock(&to->mailbox->mu);
    const uint64_t id = to->mailbox->next_delivery_id++;
    to->mailbox->entries.emplace(id, std::move(message));
    stream = to->mailbox->stream;
  }
  if (stream) stream->Notify();
}

// The Send of the null server: membership checked, fan-out in memory.
grpc::Status NullSend(State* st, const std::shared_ptr<Account>& caller,
                      const v1::SendRequest& request, v1::SendResponse* resp) {
  const v1::SendRequest* req = &request;
  auto conv = st->FindConv(req->conversation_id());
  if (!conv) return grpc::Status(grpc::StatusCode::NOT_FOUND, "conversation");
  bool member = false;
  for (const auto& m : conv->members) member = member || m == caller;
  if (!member)
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "member");
  const uint64_t seq = ++conv->seq;
  const int64_t now = NowMs();
  v1::Message base;
  base.set_conversation_id(req->conversation_id());
  base.set_seq(seq);
  base.set_sender_account_id(caller->account_id);
  base.set_sender_device_id(1);
  base.set_client_message_id(req->client_message_id());
  base.set_server_time_ms(now);
  base.set_security_epoch(1);
  if (req->body().has_encrypted()) {
    for (const v1::DeviceCiphertext& ct :
         req->body().encrypted().ciphertexts()) {
      std::shared_ptr<Account> to;
      for (const auto& m : conv->members) {
        if (m->account_id == ct.account_id()) to = m;
      }
      if (!to || to == caller) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            "extra device");
      }
      v1::Message m = base;
      *m.mutable_ciphertext() = ct;
      Deliver(to, std::make_shared<const std::string>(m.SerializeAsString()));
    }
  } else {
    // Serialized once for all members, as parleyd stores it once.
    v1::Message m = base;
    *m.mutable_plain() = req->body().plain();
    auto shared = std::make_shared<const std::string>(m.SerializeAsString());
    for (const auto& to : conv->members) {
      if (to != caller) Deliver(to, shared);
    }
  }
  resp->set_seq(seq);
  resp->set_server_time_ms(now);
  return grpc::Status::OK;
}

class FailedSendStream final
    : public grpc::ServerBidiReactor<v1::SendStreamRequest,
                                     v1::SendStreamResponse> {
 public:
  explicit FailedSendStream(const grpc::Status& s) { Finish(s); }
  void OnDone() override { delete this; }
};

// The shape of parleyd's SendStream: one read and one write in flight, at
// most 256 requests read ahead of the written responses, every request
// authenticated again, a refused Send answered with an error response.
class NullSendStream final
    : public grpc::ServerBidiReactor<v1::SendStreamRequest,
                                     v1::SendStreamResponse>,
      public std::enable_shared_from_this<NullSendStream> {
 public:
  NullSendStream(State* st, grpc::CallbackServerContext* ctx)
      : st_(st), ctx_(ctx) {}
  void Start() {
    {
      absl::MutexLock lock(&mu_);
      self_ = shared_from_this();
      reading_ = true;
    }
    StartRead(&req_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        half_closed_ = true;
      }
      Pump();
      return;
    }
    v1::SendStreamResponse resp;
    resp.set_request_id(req_.request_id());
    grpc::Status err;
    auto caller = st_->Auth(ctx_, &err);
    grpc::Status s =
        caller ? NullSend(st_, caller, req_.send(), resp.mutable_sent()) : err;
    if (!s.ok()) {
      resp.clear_sent();
      resp.mutable_error()->set_code(static_cast<int>(s.error_code()));
      resp.mutable_error()->set_message(s.error_message());
    }
    bool read_more = false;
    {
      absl::MutexLock lock(&mu_);
      out_.push_back(std::move(resp));
      ++unanswered_;
      read_more = !finished_ && unanswered_ < 256;
      reading_ = read_more;
    }
    Pump();
    if (read_more) StartRead(&req_);
  }
  void OnWriteDone(bool ok) override {
    bool read_more = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      --unanswered_;
      if (!ok) broken_ = true;
      if (!reading_ && !half_closed_ && !broken_ && unanswered_ < 256) {
        reading_ = read_more = true;
      }
    }
    if (read_more) StartRead(&req_);
    Pump();
  }
  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      broken_ = true;
    }
    Pump();
  }
  void OnDone() override {
    std::shared_ptr<NullSendStream> self;
    absl::MutexLock lock(&mu_);
    self = std::move(self_);
  }

 private:
  void Pump() {
    bool write = false, finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (broken_) {
        finished_ = finish = true;
        status = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      } else if (!out_.empty()) {
        current_ = std::move(out_.front());
        out_.pop_front();
        writing_ = write = true;
      } else if (half_closed_ && unanswered_ == 0) {
        finished_ = finish = true;
      }
    }
    if (write) StartWrite(&current_);
    if (finish) Finish(status);
  }

  State* const st_;
  grpc::CallbackServerContext* const ctx_;
  v1::SendStreamRequest req_;
  absl::Mutex mu_;
  std::shared_ptr<NullSendStream> self_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::SendStreamResponse> out_ ABSL_GUARDED_BY(mu_);
  v1::SendStreamResponse current_;
  int unanswered_ ABSL_GUARDED_BY(mu_) = 0;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool half_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// Receive as a raw-bytes method, as parleyd serves it.
class MessagingSvc final
    : public v1::MessagingService::WithRawCallbackMethod_Receive<
          v1::MessagingService::CallbackService> {
 public:
  explicit MessagingSvc(State* st) : st_(st) {}

  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* ctx,
                                 const v1::SendRequest* req,
                                 v1::SendResponse* resp) override {
    grpc::Status err;
    auto caller = st_->Auth(ctx, &err);
    if (!caller) return Reply(ctx, err);
    return Reply(ctx, NullSend(st_, caller, *req, resp));
  }

  // As parleyd: the token is checked at the start and again per request.
  grpc::ServerBidiReactor<v1::SendStreamRequest, v1::SendStreamResponse>*
  SendStream(grpc::CallbackServerContext* ctx) override {
    grpc::Status err;
    auto caller = st_->Auth(ctx, &err);
    if (!caller) return new FailedSendStream(err);
    auto r = std::make_shared<NullSendStream>(st_, ctx);
    r->Start();
    return r.get();
  }

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Receive(
      grpc::CallbackServerContext* ctx,
      const grpc::ByteBuffer* request) override {
    grpc::Status err;
    auto caller = st_->Auth(ctx, &err);
    if (!caller) return new FailedReceive(err);
    v1::ReceiveRequest req;
    grpc::ByteBuffer bytes(*request);
    if (!grpc::SerializationTraits<v1::ReceiveRequest>::Deserialize(&bytes,
                                                                    &req)
             .ok()) {
      return new FailedReceive(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "ReceiveRequest"));
    }
    if (req.max_batch() > 256) {
      return new FailedReceive(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "max_batch"));
    }
    auto r = std::make_shared<NullReceive>(caller->mailbox, req.max_batch());
    r->Start();
    return r.get();
  }

  grpc::ServerUnaryReactor* Ack(grpc::CallbackServerContext* ctx,
                                const v1::AckRequest* req,
                                v1::AckResponse* resp) override {
    grpc::Status err;
    auto caller = st_->Auth(ctx, &err);
    if (!caller) return Reply(ctx, err);
    uint32_t removed = 0;
    {
      absl::MutexLock lock(&caller->mailbox->mu);
      for (uint64_t id : req->delivery_ids())
        removed += caller->mailbox->entries.erase(id);
    }
    resp->set_removed(removed);
    return Reply(ctx, grpc::Status::OK);
  }

 private:
  State* st_;
};

class NullServerImpl final : public NullServer {
 public:
  ~NullServerImpl() override { Shutdown(); }

  absl::Status Init(const std::string& listen) {
    // A throw-away CA and server certificate, in memory only.
    auto tls = core::GenerateTls("parley-bench null server CA",
                                 "parley-null-server", {}, 7, 7);
    if (!tls.ok()) return tls.status();
    ca_pem_ = tls->ca_cert_pem;
    grpc::SslServerCredentialsOptions so;
    so.pem_key_cert_pairs.push_back({tls->key_pem, tls->cert_pem});
    grpc::ServerBuilder b;
    b.AddListeningPort(listen, grpc::SslServerCredentials(so), &port_);
    b.SetMaxReceiveMessageSize(64 << 20);
    b.RegisterService(&accounts_);
    b.RegisterService(&conversations_);
    b.RegisterService(&messaging_);
    b.RegisterService(&keys_);
    server_ = b.BuildAndStart();
    if (!server_ || port_ == 0) {
      return absl::UnavailableError(
          absl::StrCat("null server: cannot listen on ", listen));
    }
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  const std::string& ca_pem() const override { return ca_pem_; }

  void Shutdown() override {
    absl::MutexLock lock(&shutdown_mu_);
    if (!server_) return;
    state_.CloseAll();
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(5));
    server_->Wait();
    server_.reset();
    if (!stopped_.HasBeenNotified()) stopped_.Notify();
  }

  void Wait() override { stopped_.WaitForNotification(); }

 private:
  State state_;
  AccountSvc accounts_{&state_};
  ConversationSvc conversations_{&state_};
  MessagingSvc messaging_{&state_};
  KeySvc keys_{&state_};
  absl::Mutex shutdown_mu_;
  std::unique_ptr<grpc::Server> server_;
  absl::Notification stopped_;
  int port_ = 0;
  std::string ca_pem_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<NullServer>> NullServer::Start(
    const std::string& listen) {
  auto s = std::make_unique<NullServerImpl>();
  absl::Status st = s->Init(listen);
  if (!st.ok()) return st;
  return std::unique_ptr<NullServer>(std::move(s));
}

}  // namespace parley::bench
