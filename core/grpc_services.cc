// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/grpc_services.h"

#include <grpcpp/alarm.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "absl/strings/string_view.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/receive_wire.h"

namespace parley::core {
namespace {

// Entries read from storage per refill of a Receive stream's buffer. This
// bounds a stream's memory: the rest of the backlog stays on disk.
constexpr size_t kReceiveBatch = 64;
// Offers a Receive stream holds ahead of a missing id, and how long it waits
// for the missing one before reading its queue from storage (OfferOrder).
constexpr size_t kMaxHeldOffers = 256;
constexpr auto kOfferGapWait = std::chrono::milliseconds(20);

// ReceiveRequest.max_batch may be at most this (api/parley/v1/parley.proto).
constexpr uint32_t kMaxReceiveBatch = 256;

// A batch stops growing once its envelopes reach this many bytes, so one
// response stays far below a client's default 4 MB receive limit (an
// envelope is at most about 64 KB of body plus metadata).
constexpr size_t kMaxBatchBytes = 1 << 20;

absl::StatusOr<Caller> Auth(ParleyService* s, grpc::CallbackServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  absl::string_view header;
  if (it != md.end()) header = absl::string_view(it->second.data(), it->second.size());
  return s->Authenticate(header);
}

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  auto* r = ctx->DefaultReactor();
  r->Finish(ToGrpc(s));
  return r;
}

// Runs `fn(caller)` after authentication; `fn` returns StatusOr<Response>.
template <typename Resp, typename Fn>
grpc::ServerUnaryReactor* Authed(ParleyService* s, grpc::CallbackServerContext* ctx, Resp* out, Fn fn) {
  auto caller = Auth(s, ctx);
  if (!caller.ok()) return Done(ctx, caller.status());
  auto r = fn(*caller);
  if (!r.ok()) return Done(ctx, r.status());
  *out = std::move(*r);
  return Done(ctx, absl::OkStatus());
}

template <typename Resp, typename Fn>
grpc::ServerUnaryReactor* AuthedStatus(ParleyService* s, grpc::CallbackServerContext* ctx, Fn fn) {
  auto caller = Auth(s, ctx);
  if (!caller.ok()) return Done(ctx, caller.status());
  return Done(ctx, fn(*caller));
}

template <typename Resp, typename Fn>
grpc::ServerUnaryReactor* Unauthed(grpc::CallbackServerContext* ctx, Resp* out, Fn fn) {
  auto r = fn();
  if (!r.ok()) return Done(ctx, r.status());
  *out = std::move(*r);
  return Done(ctx, absl::OkStatus());
}


// One Receive stream. Owned by gRPC until OnDone and by shared_ptrs held by
// the hub and by itself (self_) until then; deleted when the last goes.
//
// Decisions are made under mu_; gRPC operations (StartWrite, Finish) are
// started after mu_ is released because their reactions may run inline.
// At most one write is in flight; Finish waits for it.
class ReceiveReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                             public Subscriber,
                             public std::enable_shared_from_this<ReceiveReactor> {
 public:
  // `max_batch`: envelopes per response, at least 1 (ReceiveRequest).
  ReceiveReactor(ParleyService* s, DeliveryHub* hub, Caller caller, size_t max_batch)
      : s_(s), hub_(hub), caller_(std::move(caller)), max_batch_(std::max<size_t>(1, max_batch)) {}

  void Start(uint64_t backlog_end) {
    {
      absl::MutexLock lock(&mu_);
      self_ = shared_from_this();
      backlog_end_ = backlog_end;
    }
    hub_->Register({caller_.account_id, caller_.device_id}, shared_from_this());
    Pump();
  }

  void Notify() override {
    {
      absl::MutexLock lock(&mu_);
      dirty_ = true;
    }
    Pump();
  }

  // A just-written entry: taken into the buffer in id order (OfferOrder:
  // the next id at once, a later one held until the ids below it arrive from
  // their own Sends, for at most kOfferGapWait) when nothing is waiting to be
  // read from storage; otherwise (a full buffer, too many held, a gap that
  // did not fill in time) the queue is read as after Notify. Storage stays
  // the source of truth.
  void Offer(uint64_t delivery_id, const std::shared_ptr<const std::string>& payload) override {
    bool arm_gap_timer = false;
    {
      absl::MutexLock lock(&mu_);
      if (delivery_id <= order_.last()) return;  // already read from storage
      bool taken = false;
      if (!first_ && !dirty_) {
        const size_t room = kReceiveBatch - std::min(kReceiveBatch, buffer_.size());
        OfferOrder::Result r = order_.Offer(delivery_id, payload, room);
        taken = !r.read_storage;
        for (OfferOrder::Entry& e : r.ready) {
          buffer_.push_back(wire::Entry{e.delivery_id, std::move(e.payload)});
        }
        if (taken && order_.has_held() && !gap_timer_armed_) {
          gap_timer_armed_ = true;
          arm_gap_timer = true;
        }
      }
      if (!taken) {
        dirty_ = true;
        order_.DropHeld();
      }
    }
    if (arm_gap_timer) ArmGapTimer();
    Pump();
  }

  void Close(const absl::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      if (!finish_status_.has_value()) finish_status_ = status;
    }
    Pump();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !finish_status_.has_value()) {
        finish_status_ = absl::CancelledError("stream broken");
      }
    }
    Pump();
  }

  void OnCancel() override { Close(absl::CancelledError("cancelled by client")); }

  // Held offers whose gap did not fill within kOfferGapWait (an entry written
  // without an offer, or its Send's thread not yet scheduled): read the
  // queue instead.
  void OnGapTimer() {
    {
      absl::MutexLock lock(&mu_);
      gap_timer_armed_ = false;
      if (!order_.has_held()) return;
      order_.DropHeld();
      dirty_ = true;
    }
    Pump();
  }

  void OnDone() override {
    hub_->Unregister({caller_.account_id, caller_.device_id}, this);
    std::shared_ptr<ReceiveReactor> self;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      self = std::move(self_);
    }
    // `self` may hold the last reference: `this` may be gone after return.
  }

 private:
  enum class Action { kNone, kWrite, kFinish };

  // A fresh alarm each time (the previous one has fired: gap_timer_armed_
  // was false). Its callback holds only a weak reference: a stream that is
  // gone cancels it by destroying it.
  void ArmGapTimer() {
    auto alarm = std::make_unique<grpc::Alarm>();
    grpc::Alarm* raw = alarm.get();
    {
      absl::MutexLock lock(&mu_);
      gap_alarm_ = std::move(alarm);
    }
    std::weak_ptr<ReceiveReactor> weak = weak_from_this();
    raw->Set(std::chrono::system_clock::now() + kOfferGapWait, [weak](bool ok) {
      std::shared_ptr<ReceiveReactor> self = weak.lock();
      if (ok && self) self->OnGapTimer();
    });
  }

  // Writes the next item if no write is in flight, refilling the buffer from
  // storage when it is empty; or finishes the stream once nothing is in
  // flight and a finish was requested.
  void Pump() {
    Action action = Action::kNone;
    absl::Status finish;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_ || done_) return;
      if (finish_status_.has_value()) {
        finished_ = true;
        finish = *finish_status_;
        action = Action::kFinish;
      } else {
        action = NextWriteLocked(&finish);
        if (action == Action::kWrite) writing_ = true;
        if (action == Action::kFinish) finished_ = true;
      }
    }
    if (action == Action::kWrite) StartWrite(&current_);
    if (action == Action::kFinish) Finish(ToGrpc(finish));
  }

  Action NextWriteLocked(absl::Status* error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (buffer_.empty() && (dirty_ || first_)) {
      dirty_ = false;
      first_ = false;
      auto batch = s_->ReadQueue(caller_, cursor_, kReceiveBatch);
      if (!batch.ok()) {
        *error = batch.status();
        return Action::kFinish;
      }
      order_.AfterRead(batch->empty() ? 0 : batch->back().delivery_id);
      for (storage::QueueEntry& e : *batch) {
        buffer_.push_back(wire::Entry{e.delivery_id, std::make_shared<const std::string>(std::move(e.payload))});
      }
      if (batch->size() == kReceiveBatch) dirty_ = true;  // more on disk
      // A short read found the end of the queue: every entry up to the
      // backlog's end (all visible when the stream opened) has been read.
      if (batch->size() < kReceiveBatch) queue_read_to_end_ = true;
    }
    if (!buffer_.empty()) {
      if (!drained_sent_ && buffer_.front().delivery_id > backlog_end_) {
        // Everything that was queued when the stream opened has been
        // written: say so before the first newer envelope (not only when
        // the buffer runs empty, which a busy conversation may never do).
        drained_sent_ = true;
        SetCurrentToMarkerLocked();
        return Action::kWrite;
      }
      // Everything already waiting goes in one response, up to max_batch_
      // envelopes and kMaxBatchBytes, and never past the backlog's end
      // while the marker is still owed.
      size_t n = 1;
      if (max_batch_ > 1) {
        size_t bytes = wire::EnvelopeSize(buffer_.front());
        while (n < buffer_.size() && n < max_batch_) {
          const wire::Entry& next = buffer_[n];
          if (!drained_sent_ && next.delivery_id > backlog_end_) break;
          bytes += wire::EnvelopeSize(next);
          if (bytes > kMaxBatchBytes) break;
          ++n;
        }
      }
      if (n == 1) {
        SetCurrentLocked(wire::ResponseWithEnvelope(buffer_.front()));
        cursor_ = buffer_.front().delivery_id;
        buffer_.pop_front();
        return Action::kWrite;
      }
      std::vector<wire::Entry> batch;
      batch.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(buffer_.front()));
        buffer_.pop_front();
      }
      cursor_ = batch.back().delivery_id;
      SetCurrentLocked(wire::ResponseWithBatch(batch));
      return Action::kWrite;
    }
    // Empty buffer: the backlog is drained once the cursor reached its end
    // or a read found the end of the queue (ids have gaps: acknowledged or
    // purged entries, ids skipped after a restart).
    if (!drained_sent_ && (cursor_ >= backlog_end_ || queue_read_to_end_)) {
      drained_sent_ = true;
      SetCurrentToMarkerLocked();
      return Action::kWrite;
    }
    return Action::kNone;
  }

  // The next response's bytes (a serialized v1::ReceiveResponse).
  void SetCurrentLocked(const std::string& bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    grpc::Slice slice(bytes);
    current_ = grpc::ByteBuffer(&slice, 1);
  }

  void SetCurrentToMarkerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::ReceiveResponse r;
    r.mutable_backlog_drained()->set_last_delivery_id(cursor_);
    SetCurrentLocked(r.SerializeAsString());
  }

  ParleyService* const s_;
  DeliveryHub* const hub_;
  const Caller caller_;
  const size_t max_batch_;
  absl::Mutex mu_;
  std::shared_ptr<ReceiveReactor> self_ ABSL_GUARDED_BY(mu_);
  // Entries to write, in delivery-id order; each message is the stored
  // payload (a serialized v1::Message), written without parsing it
  // (core/receive_wire.h).
  std::deque<wire::Entry> buffer_ ABSL_GUARDED_BY(mu_);
  // Written only while writing_ is false (under mu_), read by gRPC while a
  // write is in flight: a serialized v1::ReceiveResponse.
  grpc::ByteBuffer current_;
  std::optional<absl::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  uint64_t cursor_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t backlog_end_ ABSL_GUARDED_BY(mu_) = 0;
  // The highest delivery id read from storage or taken from Offer, and the
  // offers held until the ids below them arrive.
  OfferOrder order_ ABSL_GUARDED_BY(mu_){kMaxHeldOffers};
  // Set (with gap_timer_armed_) while offers are held; see ArmGapTimer.
  std::unique_ptr<grpc::Alarm> gap_alarm_ ABSL_GUARDED_BY(mu_);
  bool gap_timer_armed_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool first_ ABSL_GUARDED_BY(mu_) = true;
  bool drained_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool queue_read_to_end_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// Finishes a stream that could not start (bad auth).
class FailedStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit FailedStream(const absl::Status& s) { Finish(ToGrpc(s)); }
  void OnDone() override { delete this; }
};

class FailedSendStream final : public grpc::ServerBidiReactor<v1::SendStreamRequest, v1::SendStreamResponse> {
 public:
  explicit FailedSendStream(const absl::Status& s) { Finish(ToGrpc(s)); }
  void OnDone() override { delete this; }
};

// Requests a SendStream reads ahead of the responses it has written; then
// it stops reading until writes catch up (HTTP/2 flow control holds the
// client). Bounds a stream's memory.
constexpr int kMaxSendsAhead = 256;

}  // namespace

// One SendStream call: every request is authenticated with the call's
// metadata and handled by ParleyService::Send, exactly as a unary Send, and
// answered once WhenDurable reports (so with --sync after the shared fsync).
// One read and one write in flight at a time; responses wait in out_.
// Decisions under mu_; gRPC operations are started after it is released.
// Owned by itself (self_) until OnDone, and by the pending WhenDurable
// callbacks (which do nothing once the call is done).
class SendStreamReactor final : public grpc::ServerBidiReactor<v1::SendStreamRequest, v1::SendStreamResponse>,
                                public std::enable_shared_from_this<SendStreamReactor> {
 public:
  SendStreamReactor(ParleyService* s, MessagingGrpc* owner, std::string authorization)
      : s_(s), owner_(owner), authorization_(std::move(authorization)) {}

  void Start() {
    {
      absl::MutexLock lock(&mu_);
      self_ = shared_from_this();
      reading_ = true;
    }
    StartRead(&req_);
  }

  void Close(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (!finish_status_.has_value()) finish_status_ = status;
    }
    Pump();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed (or the call is over)
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        half_closed_ = true;
      }
      Pump();
      return;
    }
    Handle();
    bool read_more = false;
    {
      absl::MutexLock lock(&mu_);
      read_more = !finish_status_.has_value() && unanswered_ < kMaxSendsAhead;
      reading_ = read_more;
    }
    if (read_more) StartRead(&req_);
  }

  void OnWriteDone(bool ok) override {
    bool read_more = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      --unanswered_;
      if (!ok && !finish_status_.has_value()) finish_status_ = absl::CancelledError("stream broken");
      if (!reading_ && !half_closed_ && !finish_status_.has_value() && unanswered_ < kMaxSendsAhead) {
        reading_ = read_more = true;
      }
    }
    if (read_more) StartRead(&req_);
    Pump();
  }

  void OnCancel() override { Close(absl::CancelledError("cancelled by client")); }

  void OnDone() override {
    owner_->ForgetSendStream(this);
    std::shared_ptr<SendStreamReactor> self;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      self = std::move(self_);
    }
  }

 private:
  // Runs on the thread of OnReadDone; the next read starts after it.
  void Handle() {
    const auto started = std::chrono::steady_clock::now();  // for the Send latency
    v1::SendStreamResponse resp;
    resp.set_request_id(req_.request_id());
    {
      absl::MutexLock lock(&mu_);
      ++unanswered_;
    }
    absl::StatusOr<v1::SendResponse> r = [&]() -> absl::StatusOr<v1::SendResponse> {
      auto caller = s_->Authenticate(authorization_);
      if (!caller.ok()) return caller.status();
      return s_->Send(*caller, req_.send());
    }();
    if (r.ok()) {
      *resp.mutable_sent() = std::move(*r);
    } else {
      *resp.mutable_error() = ToRpcStatus(r.status());
    }
    // Errors go the same way, so responses keep the requests' order.
    std::shared_ptr<SendStreamReactor> self = shared_from_this();
    s_->storage().WhenDurable([self, started, resp = std::move(resp)](absl::Status st) mutable {
      if (st.ok() && resp.has_sent()) {
        self->s_->RecordSendLatency(absl::FromChrono(std::chrono::steady_clock::now() - started));
      }
      if (!st.ok() && resp.has_sent()) *resp.mutable_error() = ToRpcStatus(st);
      self->Answer(std::move(resp));
    });
  }

  void Answer(v1::SendStreamResponse resp) {
    {
      absl::MutexLock lock(&mu_);
      if (done_) return;
      out_.push_back(std::move(resp));
    }
    Pump();
  }

  void Pump() {
    bool write = false, finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_ || done_) return;
      if (finish_status_.has_value()) {
        finished_ = finish = true;
        status = ToGrpc(*finish_status_);
      } else if (!out_.empty()) {
        current_ = std::move(out_.front());
        out_.pop_front();
        writing_ = write = true;
      } else if (half_closed_ && unanswered_ == 0) {
        finished_ = finish = true;
        status = grpc::Status::OK;
      }
    }
    if (write) StartWrite(&current_);
    if (finish) Finish(status);
  }

  ParleyService* const s_;
  MessagingGrpc* const owner_;
  const std::string authorization_;
  // Touched only by the read in flight and OnReadDone (one at a time).
  v1::SendStreamRequest req_;
  absl::Mutex mu_;
  std::shared_ptr<SendStreamReactor> self_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::SendStreamResponse> out_ ABSL_GUARDED_BY(mu_);
  // Written only while writing_ is false (under mu_), read by gRPC while a
  // write is in flight.
  v1::SendStreamResponse current_;
  std::optional<absl::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  int unanswered_ ABSL_GUARDED_BY(mu_) = 0;  // read, response not yet written
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool half_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

v1::RpcStatus ToRpcStatus(const absl::Status& s) {
  v1::RpcStatus rich;
  rich.set_code(static_cast<int>(s.code()));
  rich.set_message(std::string(s.message()));
  // Structured details: absl payloads keyed by type URL.
  s.ForEachPayload([&](absl::string_view type_url, const absl::Cord& payload) {
    auto* any = rich.add_details();
    any->set_type_url(std::string(type_url));
    any->set_value(std::string(payload));
  });
  return rich;
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // Structured details travel as a google.rpc.Status-compatible RpcStatus
  // in grpc-status-details-bin.
  v1::RpcStatus rich = ToRpcStatus(s);
  if (rich.details_size() == 0) {
    return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
  }
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()),
                      rich.SerializeAsString());
}

// ---------------------------------------------------------------- accounts

grpc::ServerUnaryReactor* AccountGrpc::CreateAccount(grpc::CallbackServerContext* ctx,
                                                     const v1::CreateAccountRequest* req,
                                                     v1::CreateAccountResponse* resp) {
  return Unauthed(ctx, resp, [&] { return s_->CreateAccount(*req); });
}
grpc::ServerUnaryReactor* AccountGrpc::GetAccount(grpc::CallbackServerContext* ctx,
                                                  const v1::GetAccountRequest* req,
                                                  v1::GetAccountResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->GetAccount(c, *req); });
}
grpc::ServerUnaryReactor* AccountGrpc::CreateDeviceLink(grpc::CallbackServerContext* ctx,
                                                        const v1::CreateDeviceLinkRequest*,
                                                        v1::CreateDeviceLinkResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->CreateDeviceLink(c); });
}
grpc::ServerUnaryReactor* AccountGrpc::LinkDevice(grpc::CallbackServerContext* ctx,
                                                  const v1::LinkDeviceRequest* req,
                                                  v1::LinkDeviceResponse* resp) {
  return Unauthed(ctx, resp, [&] { return s_->LinkDevice(*req); });
}
grpc::ServerUnaryReactor* AccountGrpc::ListDevices(grpc::CallbackServerContext* ctx,
                                                   const v1::ListDevicesRequest*,
                                                   v1::ListDevicesResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->ListDevices(c); });
}
grpc::ServerUnaryReactor* AccountGrpc::RemoveDevice(grpc::CallbackServerContext* ctx,
                                                    const v1::RemoveDeviceRequest* req,
                                                    v1::RemoveDeviceResponse*) {
  return AuthedStatus<v1::RemoveDeviceResponse>(
      s_, ctx, [&](const Caller& c) { return s_->RemoveDevice(c, *req); });
}

// ----------------------------------------------------------- conversations

grpc::ServerUnaryReactor* ConversationGrpc::CreateDirect(grpc::CallbackServerContext* ctx,
                                                         const v1::CreateDirectRequest* req,
                                                         v1::CreateDirectResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->CreateDirect(c, *req); });
}
grpc::ServerUnaryReactor* ConversationGrpc::CreateGroup(grpc::CallbackServerContext* ctx,
                                                        const v1::CreateGroupRequest* req,
                                                        v1::CreateGroupResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->CreateGroup(c, *req); });
}
grpc::ServerUnaryReactor* ConversationGrpc::GetConversation(grpc::CallbackServerContext* ctx,
                                                            const v1::GetConversationRequest* req,
                                                            v1::GetConversationResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->GetConversation(c, *req); });
}
grpc::ServerUnaryReactor* ConversationGrpc::ListConversations(grpc::CallbackServerContext* ctx,
                                                              const v1::ListConversationsRequest*,
                                                              v1::ListConversationsResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->ListConversations(c); });
}
grpc::ServerUnaryReactor* ConversationGrpc::AddMembers(grpc::CallbackServerContext* ctx,
                                                       const v1::AddMembersRequest* req,
                                                       v1::AddMembersResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->AddMembers(c, *req); });
}
grpc::ServerUnaryReactor* ConversationGrpc::RemoveMember(grpc::CallbackServerContext* ctx,
                                                         const v1::RemoveMemberRequest* req,
                                                         v1::RemoveMemberResponse*) {
  return AuthedStatus<v1::RemoveMemberResponse>(
      s_, ctx, [&](const Caller& c) { return s_->RemoveMember(c, *req); });
}
grpc::ServerUnaryReactor* ConversationGrpc::RequestSecurityChange(
    grpc::CallbackServerContext* ctx, const v1::RequestSecurityChangeRequest* req,
    v1::RequestSecurityChangeResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->RequestSecurityChange(c, *req); });
}

// --------------------------------------------------------------- messaging

grpc::ServerUnaryReactor* MessagingGrpc::Send(grpc::CallbackServerContext* ctx, const v1::SendRequest* req,
                                              v1::SendResponse* resp) {
  const auto started = std::chrono::steady_clock::now();  // for the Send latency
  auto caller = Auth(s_, ctx);
  if (!caller.ok()) return Done(ctx, caller.status());
  auto r = s_->Send(*caller, *req);
  if (!r.ok()) return Done(ctx, r.status());
  *resp = std::move(*r);
  // Answer once the message (or, for a retry, the original) is durable,
  // without holding a thread: by default the store's committer writes the
  // waiting Sends' log records once (batch_wal_writes; with --sync, one
  // shared fsync) and its thread answers, after the message was offered to
  // the recipients' streams (ParleyService::OfferWhenDurable). When it is
  // durable already (WhenDurable calls back inline) the finisher's thread
  // answers, so this gRPC thread goes back to taking requests (finisher.h;
  // BENCHMARKS.md, seventh and eleventh rounds).
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const std::thread::id handler = std::this_thread::get_id();
  Finisher* finisher = finisher_;
  ParleyService* service = s_;
  s_->storage().WhenDurable([reactor, handler, finisher, service, started](absl::Status st) {
    if (st.ok()) service->RecordSendLatency(absl::FromChrono(std::chrono::steady_clock::now() - started));
    if (std::this_thread::get_id() != handler) {
      reactor->Finish(ToGrpc(st));
      return;
    }
    finisher->Post([reactor, st = std::move(st)] { reactor->Finish(ToGrpc(st)); });
  });
  return reactor;
}

grpc::ServerBidiReactor<v1::SendStreamRequest, v1::SendStreamResponse>* MessagingGrpc::SendStream(
    grpc::CallbackServerContext* ctx) {
  // Checked once here so a bad token fails the call at once; again for
  // every request (revocation, suspension and rate limits apply per Send).
  auto caller = Auth(s_, ctx);
  if (!caller.ok()) return new FailedSendStream(caller.status());
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  std::string authorization = it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
  auto reactor = std::make_shared<SendStreamReactor>(s_, this, std::move(authorization));
  {
    absl::MutexLock lock(&send_streams_mu_);
    if (send_streams_closed_) {
      return new FailedSendStream(absl::UnavailableError("server is shutting down"));
    }
    send_streams_[reactor.get()] = reactor;
  }
  reactor->Start();
  return reactor.get();
}

void MessagingGrpc::CloseSendStreams(const absl::Status& status) {
  std::vector<std::shared_ptr<SendStreamReactor>> open;
  {
    absl::MutexLock lock(&send_streams_mu_);
    send_streams_closed_ = true;
    for (auto& [ptr, weak] : send_streams_) {
      if (auto r = weak.lock()) open.push_back(std::move(r));
    }
  }
  for (auto& r : open) r->Close(status);
}

void MessagingGrpc::ForgetSendStream(SendStreamReactor* r) {
  absl::MutexLock lock(&send_streams_mu_);
  send_streams_.erase(r);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* MessagingGrpc::Receive(grpc::CallbackServerContext* ctx,
                                                                   const grpc::ByteBuffer* request) {
  auto caller = Auth(s_, ctx);
  if (!caller.ok()) return new FailedStream(caller.status());
  v1::ReceiveRequest req;
  grpc::ByteBuffer bytes(*request);  // Deserialize consumes its buffer
  // gRPC keeps a raw request until the call ends, and its slices can pin
  // part of the connection's read buffer: release them now (10,000 open
  // streams: 6.7 MB). The object is gRPC's but not const; it only destroys
  // it at the end of the call, and an empty ByteBuffer destroys nothing.
  const_cast<grpc::ByteBuffer*>(request)->Clear();
  if (!grpc::SerializationTraits<v1::ReceiveRequest>::Deserialize(&bytes, &req).ok()) {
    return new FailedStream(absl::InvalidArgumentError("ReceiveRequest: not a valid parley.v1.ReceiveRequest"));
  }
  if (req.max_batch() > kMaxReceiveBatch) {
    return new FailedStream(absl::InvalidArgumentError(
        absl::StrCat("ReceiveRequest.max_batch: ", req.max_batch(), " is above the limit of ", kMaxReceiveBatch)));
  }
  auto backlog_end = s_->LastDeliveryId(*caller);
  if (!backlog_end.ok()) return new FailedStream(backlog_end.status());
  s_->Touch(*caller);
  auto reactor = std::make_shared<ReceiveReactor>(s_, hub_, *caller, req.max_batch());
  reactor->Start(*backlog_end);
  return reactor.get();
}

grpc::ServerUnaryReactor* MessagingGrpc::Ack(grpc::CallbackServerContext* ctx, const v1::AckRequest* req,
                                             v1::AckResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->Ack(c, *req); });
}
grpc::ServerUnaryReactor* MessagingGrpc::GetHistory(grpc::CallbackServerContext* ctx,
                                                    const v1::GetHistoryRequest* req,
                                                    v1::GetHistoryResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->GetHistory(c, *req); });
}
grpc::ServerUnaryReactor* MessagingGrpc::ReportMessage(grpc::CallbackServerContext* ctx,
                                                       const v1::ReportMessageRequest* req,
                                                       v1::ReportMessageResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return s_->ReportMessage(c, *req); });
}

// -------------------------------------------------------------------- keys

grpc::ServerUnaryReactor* KeyGrpc::UploadKeys(grpc::CallbackServerContext* ctx, const v1::UploadKeysRequest* req,
                                              v1::UploadKeysResponse*) {
  return AuthedStatus<v1::UploadKeysResponse>(
      s_, ctx, [&](const Caller& c) { return keys_->Upload(c.account_id, c.device_id, *req); });
}
grpc::ServerUnaryReactor* KeyGrpc::GetPreKeyCount(grpc::CallbackServerContext* ctx,
                                                  const v1::GetPreKeyCountRequest*,
                                                  v1::GetPreKeyCountResponse* resp) {
  return Authed(s_, ctx, resp, [&](const Caller& c) { return keys_->Count(c.account_id, c.device_id); });
}
grpc::ServerUnaryReactor* KeyGrpc::FetchBundles(grpc::CallbackServerContext* ctx,
                                                const v1::FetchBundlesRequest* req,
                                                v1::FetchBundlesResponse* resp) {
  return Authed(s_, ctx, resp,
                [&](const Caller& c) { return keys_->Fetch(c.account_id, c.device_id, *req); });
}

}  // namespace parley::core
