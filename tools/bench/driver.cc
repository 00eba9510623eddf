// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/driver.h"

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "api/parley/latency/latency_histogram.h"
#include "clients/crypto/crypto.h"
#include "clients/sdk/key_wire.h"
#include "parley/v1/admin.grpc.pb.h"
#include "parley/v1/parley.grpc.pb.h"
#include "tools/bench/cpus.h"
#include "tools/bench/histogram.h"
#include "tools/bench/keys.h"
#include "tools/bench/proc.h"

namespace parley::bench {
namespace {

namespace v1 = ::parley::v1;

std::atomic<bool> g_stop{false};

constexpr size_t kMaxIdsPerAck = 1000;
constexpr int kRpcDeadlineS = 30;
constexpr uint64_t kMaxSendErrors = 1000;  // then the senders stop issuing

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

// Polls `done` every 2 ms until it holds, the timeout passes or a stop is
// requested. Returns done().
bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= deadline || g_stop.load()) return done();
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// Sleeps until `deadline_ns` (steady clock) or a stop request.
void SleepUntil(int64_t deadline_ns) {
  for (;;) {
    const int64_t left = deadline_ns - NowNs();
    if (left <= 0 || g_stop.load()) return;
    absl::SleepFor(absl::Nanoseconds(std::min<int64_t>(left, 50'000'000)));
  }
}

void SetAuth(grpc::ClientContext* ctx, const std::string& token,
             int deadline_s) {
  ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(deadline_s));
}

// Runs fn(0..n-1) on `threads` threads; the first error stops the rest.
absl::Status ParallelFor(size_t n, int threads,
                         const std::function<absl::Status(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  absl::Mutex mu;
  absl::Status first;
  std::vector<std::thread> pool;
  const size_t count = std::min<size_t>(static_cast<size_t>(threads), n);
  for (size_t t = 0; t < count; ++t) {
    pool.emplace_back([&] {
      while (!failed.load() && !g_stop.load()) {
        const size_t i = next++;
        if (i >= n) return;
        absl::Status s = fn(i);
        if (!s.ok()) {
          absl::MutexLock lock(&mu);
          if (first.ok()) first = s;
          failed = true;
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  if (first.ok() && g_stop.load()) return absl::CancelledError("interrupted");
  return first;
}

struct Device {
  std::string username;
  std::string account_id;
  uint32_t device_id = 0;
  uint32_t registration_id = 0;
  std::string token;
  size_t channel = 0;
  bool idle = false;  // on the idle connections
  // --mode e2ee-signal: the device's Signal state (load devices only).
  std::shared_ptr<crypto::DeviceCrypto> crypto;
};

crypto::Address AddressOf(const Device& d) {
  return crypto::Address{d.account_id, static_cast<int32_t>(d.device_id)};
}

// One HTTP/2 connection (its own subchannel) and its stubs.
struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::AccountService::Stub> accounts;
  std::unique_ptr<v1::ConversationService::Stub> conversations;
  std::unique_ptr<v1::MessagingService::Stub> messaging;
  std::unique_ptr<v1::KeyService::Stub> keys;
};

absl::StatusOr<std::unique_ptr<Connection>> Connect(const Endpoint& ep,
                                                    int index,
                                                    absl::Duration timeout) {
  grpc::SslCredentialsOptions so;
  so.pem_root_certs = ep.ca_pem;
  grpc::ChannelArguments args;
  // A local subchannel pool and a distinct argument: a connection of its own.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("parley.bench.connection", index);
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  auto c = std::make_unique<Connection>();
  c->channel =
      grpc::CreateCustomChannel(ep.target, grpc::SslCredentials(so), args);
  if (!c->channel->WaitForConnected(
          absl::ToChronoTime(absl::Now() + timeout))) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", ep.target,
                                               " (TLS) within ",
                                               absl::FormatDuration(timeout)));
  }
  c->accounts = v1::AccountService::NewStub(c->channel);
  c->conversations = v1::ConversationService::NewStub(c->channel);
  c->messaging = v1::MessagingService::NewStub(c->channel);
  c->keys = v1::KeyService::NewStub(c->channel);
  return c;
}

// Counters shared by every sender and receiver of one run.
struct Stats {
  std::atomic<int64_t> window_start{INT64_MAX};
  std::atomic<int64_t> window_end{INT64_MAX};
  std::atomic<uint64_t> delivered{0}, delivered_window{0}, duplicates{0};
  std::atomic<uint64_t> acked{0}, ack_calls{0}, ack_errors{0},
      decrypt_errors{0};
  std::atomic<uint64_t> stream_envelopes{0}, stream_responses{0};
  std::atomic<uint64_t> accepted{0}, accepted_window{0}, send_errors{0},
      skipped{0};
  std::atomic<int64_t> inflight{0};
  LatencyHistogram e2e;  // Send call -> envelope received, ns
  // Open loop: scheduled send time -> envelope received, ns (e2e plus the
  // generator's issue lag).
  LatencyHistogram e2e_scheduled;
  LatencyHistogram rpc;        // Send call -> SendResponse, ns
  LatencyHistogram issue_lag;  // open loop: scheduled -> Send call, ns
  bool series = false;  // --series-ms: receivers keep every latency sample
  absl::Mutex mu;
  std::string first_error ABSL_GUARDED_BY(mu);

  bool InWindow(int64_t t) const {
    return t >= window_start.load() && t <= window_end.load();
  }
  void Error(const std::string& e) {
    absl::MutexLock lock(&mu);
    if (first_error.empty()) first_error = e;
  }
};

// A device's Receive stream (ReceiveRequest.max_batch = --receive-batch):
// counts bench envelopes (first delivery only; repeats are duplicates),
// records Send->deliver latency, and acks every envelope in batches as the
// SDK does (see the constructor).
class Receiver final : public grpc::ClientReadReactor<v1::ReceiveResponse> {
 public:
  // Acks as the SDK's ReceiveStream does (ReceiveOptions::ack_batch and
  // ack_flush_interval): once `ack_batch` ids are pending, or when the oldest
  // pending id has waited `ack_flush_ms` (FlushAcksIfDue, called by the run's
  // ack timer); one Ack in flight per device.
  Receiver(v1::MessagingService::Stub* stub, const Device& d, Stats* st,
           int max_batch, int ack_batch, int ack_flush_ms)
      : stub_(stub),
        device_(d),
        st_(st),
        ack_batch_(static_cast<size_t>(std::max(1, ack_batch))),
        ack_flush_ns_(int64_t{ack_flush_ms} * 1'000'000) {
    req_.set_max_batch(static_cast<uint32_t>(max_batch));
  }

  // Sends the pending ids if the oldest has waited long enough (or `now`
  // is INT64_MAX: at once) and no Ack is in flight.
  void FlushAcksIfDue(int64_t now) {
    std::vector<uint64_t> batch;
    {
      absl::MutexLock lock(&ack_mu_);
      if (ack_inflight_ || pending_.empty()) return;
      if (now != INT64_MAX && now - oldest_pending_ns_ < ack_flush_ns_) return;
      ack_inflight_ = true;
      TakeBatchLocked(&batch);
    }
    SendAck(std::move(batch));
  }

  void Open() {
    ctx_.AddMetadata("authorization", "Bearer " + device_.token);
    stub_->async()->Receive(&ctx_, &req_, this);
    StartRead(&resp_);
    StartCall();
  }
  void Cancel() { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    Handle();
    StartRead(&resp_);
  }
  void OnDone(const grpc::Status& s) override {
    absl::MutexLock lock(&mu_);
    status_ = s;
    done_ = true;
  }

  bool drained() const { return drained_.load(); }
  uint64_t received() const { return received_.load(); }
  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  grpc::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  // --series-ms: appends the (Send call time, latency) samples of this
  // stream's in-window deliveries so far to `out`.
  void CopySamples(std::vector<std::pair<int64_t, int64_t>>* out) {
    absl::MutexLock lock(&samples_mu_);
    out->insert(out->end(), samples_.begin(), samples_.end());
  }
  bool acks_idle() {
    absl::MutexLock lock(&ack_mu_);
    return !ack_inflight_ && pending_.empty();
  }

 private:
  struct AckCall {
    grpc::ClientContext ctx;
    v1::AckRequest req;
    v1::AckResponse resp;
  };

  // Reads run one at a time per stream: no lock needed for seen_.
  void Handle() {
    if (resp_.has_backlog_drained()) {
      drained_ = true;
      return;
    }
    if (resp_.has_envelope()) {
      ++st_->stream_responses;
      ++st_->stream_envelopes;
      HandleEnvelope(resp_.envelope());
      QueueAcks({resp_.envelope().delivery_id()});
    } else if (resp_.has_batch()) {
      ++st_->stream_responses;
      st_->stream_envelopes += resp_.batch().envelopes_size();
      std::vector<uint64_t> ids;
      ids.reserve(resp_.batch().envelopes_size());
      for (const v1::Envelope& e : resp_.batch().envelopes()) {
        HandleEnvelope(e);
        ids.push_back(e.delivery_id());
      }
      QueueAcks(ids);
    }
  }

  void HandleEnvelope(const v1::Envelope& envelope) {
    const v1::Message& m = envelope.message();
    const std::string* payload = nullptr;
    if (m.has_plain()) payload = &m.plain().content();
    if (m.has_ciphertext()) payload = &m.ciphertext().ciphertext();
    std::string plaintext;
    if (m.has_ciphertext() && device_.crypto != nullptr) {
      // Real Signal mode: decrypt as the receiving client does; the
      // latency then includes the receiver's decryption.
      const crypto::Address from{m.sender_account_id(),
                                 static_cast<int32_t>(m.sender_device_id())};
      absl::StatusOr<std::string> pt;
      if (m.ciphertext().type() == 4) {  // sender key (groups)
        pt = device_.crypto->GroupDecrypt(m.conversation_id(), from,
                                          m.ciphertext().ciphertext());
      } else {
        crypto::Ciphertext ct;
        ct.type = static_cast<crypto::MessageType>(m.ciphertext().type());
        ct.bytes = m.ciphertext().ciphertext();
        pt = device_.crypto->Decrypt(from, ct);
      }
      if (pt.ok()) {
        plaintext = std::move(*pt);
        payload = &plaintext;
      } else {
        payload = nullptr;
        ++st_->decrypt_errors;
        st_->Error(absl::StrCat("Decrypt: ", pt.status().ToString()));
      }
    }
    std::optional<PayloadHeader> h;
    if (payload != nullptr) h = ParsePayload(*payload);
    if (h.has_value()) {
      const uint64_t seq = h->seq;
      const int64_t now = NowNs();
      if (seq >= seen_.size())
        seen_.resize(std::max<size_t>(seq + 1, seen_.size() * 2), false);
      if (seen_[seq]) {
        ++st_->duplicates;
      } else {
        seen_[seq] = true;
        ++received_;
        ++st_->delivered;
        if (st_->InWindow(now)) ++st_->delivered_window;
        if (st_->InWindow(h->send_ns)) {
          st_->e2e.Record(now - h->send_ns);
          st_->e2e_scheduled.Record(now - h->send_ns + h->issue_lag_us * 1000);
          if (st_->series) {
            absl::MutexLock lock(&samples_mu_);
            samples_.emplace_back(h->send_ns, now - h->send_ns);
          }
        }
      }
    }
  }

  void QueueAcks(const std::vector<uint64_t>& ids) {
    std::vector<uint64_t> batch;
    {
      absl::MutexLock lock(&ack_mu_);
      if (pending_.empty()) oldest_pending_ns_ = NowNs();
      pending_.insert(pending_.end(), ids.begin(), ids.end());
      if (ack_inflight_ || pending_.size() < ack_batch_) return;
      ack_inflight_ = true;
      TakeBatchLocked(&batch);
    }
    SendAck(std::move(batch));
  }

  void TakeBatchLocked(std::vector<uint64_t>* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ack_mu_) {
    if (pending_.size() <= kMaxIdsPerAck) {
      batch->swap(pending_);
    } else {
      batch->assign(pending_.begin(), pending_.begin() + kMaxIdsPerAck);
      pending_.erase(pending_.begin(), pending_.begin() + kMaxIdsPerAck);
      oldest_pending_ns_ = NowNs();
    }
  }

  void SendAck(std::vector<uint64_t> ids) {
    auto* call = new AckCall();
    ++st_->ack_calls;
    SetAuth(&call->ctx, device_.token, kRpcDeadlineS);
    for (uint64_t id : ids) call->req.add_delivery_ids(id);
    stub_->async()->Ack(
        &call->ctx, &call->req, &call->resp, [this, call](grpc::Status s) {
          if (s.ok()) {
            st_->acked += static_cast<uint64_t>(call->req.delivery_ids_size());
          } else {
            ++st_->ack_errors;
            st_->Error(absl::StrCat("Ack: ", s.error_message()));
          }
          delete call;
          std::vector<uint64_t> next;
          {
            absl::MutexLock lock(&ack_mu_);
            if (pending_.empty() ||
                (pending_.size() < ack_batch_ &&
                 NowNs() - oldest_pending_ns_ < ack_flush_ns_)) {
              ack_inflight_ = false;  // the rest waits for the batch or timer
              return;
            }
            TakeBatchLocked(&next);
          }
          SendAck(std::move(next));
        });
  }

  v1::MessagingService::Stub* const stub_;
  const Device device_;
  Stats* const st_;
  grpc::ClientContext ctx_;
  v1::ReceiveRequest req_;
  v1::ReceiveResponse resp_;
  std::vector<bool> seen_;
  absl::Mutex samples_mu_;
  std::vector<std::pair<int64_t, int64_t>> samples_
      ABSL_GUARDED_BY(samples_mu_);
  std::atomic<bool> drained_{false};
  std::atomic<uint64_t> received_{0};
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  absl::Mutex ack_mu_;
  std::vector<uint64_t> pending_ ABSL_GUARDED_BY(ack_mu_);
  bool ack_inflight_ ABSL_GUARDED_BY(ack_mu_) = false;
  int64_t oldest_pending_ns_ ABSL_GUARDED_BY(ack_mu_) = 0;
  const size_t ack_batch_;
  const int64_t ack_flush_ns_;
};

// A sender's SendStream (--send-stream): requests are queued and written
// one at a time; every response goes to `on_response`. When the call ends
// (OnDone) `on_end` gets its status; requests still unanswered then are the
// owner's to fail.
class SendStreamClient final
    : public grpc::ClientBidiReactor<v1::SendStreamRequest,
                                     v1::SendStreamResponse> {
 public:
  SendStreamClient(
      std::function<void(const v1::SendStreamResponse&)> on_response,
      std::function<void(const grpc::Status&)> on_end)
      : on_response_(std::move(on_response)), on_end_(std::move(on_end)) {}

  void Open(v1::MessagingService::Stub* stub, const std::string& token,
            int deadline_s) {
    SetAuth(&ctx_, token, deadline_s);
    stub->async()->SendStream(&ctx_, this);
    StartRead(&resp_);
    StartCall();
  }
  // False once the call is over (the request was not sent).
  bool Write(v1::SendStreamRequest req) {
    {
      absl::MutexLock lock(&mu_);
      if (done_ || closing_) return false;
      if (writing_) {
        queue_.push_back(std::move(req));
        return true;
      }
      writing_ = true;
      current_ = std::move(req);
    }
    StartWrite(&current_);
    return true;
  }
  // Half-closes once the queue is written; then waits (bounded) for the
  // server to finish, cancelling the call if it does not.
  void Close(absl::Duration timeout) {
    bool done_now = false;
    {
      absl::MutexLock lock(&mu_);
      if (done_) return;
      closing_ = true;
      if (!writing_ && !writes_done_) writes_done_ = done_now = true;
    }
    if (done_now) StartWritesDone();
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&done_), timeout)) {
      ctx_.TryCancel();
      mu_.Await(absl::Condition(&done_));
    }
  }

  void OnWriteDone(bool ok) override {
    bool next = false, writes_done = false;
    {
      absl::MutexLock lock(&mu_);
      if (ok && !queue_.empty()) {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        next = true;
      } else {
        writing_ = false;
        queue_.clear();  // a broken call: OnDone fails what is unanswered
        if (closing_ && !writes_done_) writes_done_ = writes_done = true;
      }
    }
    if (next) StartWrite(&current_);
    if (writes_done) StartWritesDone();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    on_response_(resp_);
    StartRead(&resp_);
  }
  void OnDone(const grpc::Status& s) override {
    on_end_(s);
    absl::MutexLock lock(&mu_);
    done_ = true;
  }

 private:
  const std::function<void(const v1::SendStreamResponse&)> on_response_;
  const std::function<void(const grpc::Status&)> on_end_;
  grpc::ClientContext ctx_;
  v1::SendStreamResponse resp_;
  v1::SendStreamRequest current_;  // touched only while writing_
  absl::Mutex mu_;
  std::deque<v1::SendStreamRequest> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// One sending device and its conversation. Closed loop: `window` Sends in
// flight, each completion issues the next. Open loop: the pacer calls
// Issue() with the scheduled time (latency counts from the schedule, so a
// late server cannot hide queueing: no coordinated omission).
class Sender {
 public:
  // `peers`: --mode e2ee-signal only, the recipient device of each of the
  // template's ciphertexts, in order. Each message is encrypted with the
  // sender's device_.crypto as the SDK does: to every one of them over the
  // pairwise session (direct conversations), or once with the sender key
  // of the conversation, the same type-4 ciphertext for every device
  // (`sender_keys`, groups).
  Sender(uint32_t index, v1::MessagingService::Stub* stub, Device d,
         v1::SendRequest tmpl, std::vector<crypto::Address> peers,
         bool sender_keys, Stats* st)
      : index_(index),
        stub_(stub),
        device_(std::move(d)),
        template_(std::move(tmpl)),
        peers_(std::move(peers)),
        sender_keys_(sender_keys),
        st_(st) {}

  ~Sender() {
    if (stream_) stream_->Close(absl::Seconds(10));
  }

  // --send-stream: every Send of this sender goes over one SendStream call
  // (kept open for `deadline_s`) instead of a unary call each.
  void OpenStream(int deadline_s) {
    stream_ = std::make_unique<SendStreamClient>(
        [this](const v1::SendStreamResponse& r) { OnStreamResponse(r); },
        [this](const grpc::Status& s) { OnStreamEnd(s); });
    stream_->Open(stub_, device_.token, deadline_s);
  }

  void StartClosed(int window) {
    for (int i = 0; i < window; ++i) Issue(0, true);
  }
  // Issues one Send unless stopped or the quota is used up; false then.
  bool Issue(int64_t scheduled_ns, bool chain) {
    if (stop_.load()) return false;
    const uint64_t seq = next_seq_++;
    if (quota_ > 0 && seq >= quota_) return false;
    auto* call = new SendCall();
    call->req = template_;
    // Latency is measured from this Send call. In open loop the call may come
    // after its scheduled time (the pacer waited for a CPU, or issued the
    // Sends due before this one): that issue lag is the generator's own and
    // is carried in the payload, so the receiver also records
    // scheduled->deliver, and it is summarized on its own.
    call->start_ns = NowNs();
    PayloadHeader ph;
    ph.sender = index_;
    ph.seq = seq;
    ph.send_ns = call->start_ns;
    if (scheduled_ns > 0) {
      const int64_t lag_ns =
          std::max<int64_t>(0, call->start_ns - scheduled_ns);
      ph.issue_lag_us = lag_ns / 1000;
      if (st_->InWindow(call->start_ns)) st_->issue_lag.Record(lag_ns);
    }
    char header[kPayloadHeaderBytes];
    std::string h = MakePayload(ph, kPayloadHeaderBytes);
    std::memcpy(header, h.data(), sizeof(header));
    v1::Body* body = call->req.mutable_body();
    if (body->has_plain()) {
      std::memcpy(body->mutable_plain()->mutable_content()->data(), header,
                  sizeof(header));
    } else {
      for (auto& ct : *body->mutable_encrypted()->mutable_ciphertexts()) {
        std::memcpy(ct.mutable_ciphertext()->data(), header, sizeof(header));
      }
    }
    // The rest of each payload differs per message (so bytes on disk are not
    // flattered by compression of repeated filler): printable ASCII in plain
    // bodies (UTF-8 text), arbitrary bytes in ciphertexts.
    uint64_t x = (static_cast<uint64_t>(index_) << 40) ^
                 (seq * 0x9E3779B97F4A7C15ULL) ^ 0x5DEECE66DULL;
    auto fill = [&x](std::string* p, bool printable) {
      static constexpr char kAlphabet[] =
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
      for (size_t i = kPayloadHeaderBytes; i < p->size(); ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (*p)[i] = printable ? kAlphabet[x & 63] : static_cast<char>(x & 0xFF);
      }
    };
    if (body->has_plain()) {
      fill(body->mutable_plain()->mutable_content(), true);
    } else if (!peers_.empty()) {
      // Real Signal mode: the template's first ciphertext is the plaintext
      // (header + filler, --size bytes); encrypt it for every device.
      auto* cts = body->mutable_encrypted()->mutable_ciphertexts();
      std::string plaintext = (*cts)[0].ciphertext();
      fill(&plaintext, false);
      if (absl::Status e = Encrypt(call->req.conversation_id(), plaintext, cts);
          !e.ok()) {
        st_->Error(e.ToString());
        ++st_->send_errors;
        stop_ = true;
        delete call;
        return false;
      }
    } else {
      for (auto& ct : *body->mutable_encrypted()->mutable_ciphertexts()) {
        fill(ct.mutable_ciphertext(), false);
      }
    }
    // Ordered per sender, as the SDK's time-ordered ids are
    // (NewClientMessageId), so the server's idempotency records of one
    // device follow each other as they do for real clients.
    call->req.set_client_message_id(
        absl::StrCat("pb", index_, "-", absl::Dec(seq, absl::kZeroPad12)));
    ++inflight_;
    ++st_->inflight;
    if (stream_) {
      call->chain = chain;
      v1::SendStreamRequest sr;
      sr.set_request_id(seq);
      *sr.mutable_send() = std::move(call->req);
      {
        absl::MutexLock lock(&pending_mu_);
        pending_[seq] = call;
      }
      if (!stream_->Write(std::move(sr))) {
        {
          absl::MutexLock lock(&pending_mu_);
          pending_.erase(seq);
        }
        Done(call,
             grpc::Status(grpc::StatusCode::UNAVAILABLE, "SendStream ended"),
             false);
      }
      return true;
    }
    SetAuth(&call->ctx, device_.token, kRpcDeadlineS);
    stub_->async()->Send(
        &call->ctx, &call->req, &call->resp,
        [this, call, chain](grpc::Status s) { Done(call, s, chain); });
    return true;
  }
  void Stop() { stop_ = true; }
  void set_quota(uint64_t n) { quota_ = n; }
  int64_t inflight() const { return inflight_.load(); }
  uint64_t accepted() const { return accepted_.load(); }
  uint64_t quota() const { return quota_; }

 private:
  struct SendCall {
    grpc::ClientContext ctx;
    v1::SendRequest req;
    v1::SendResponse resp;
    int64_t start_ns = 0;
    bool chain = false;  // --send-stream: Done's `chain`
  };

  void OnStreamResponse(const v1::SendStreamResponse& r) {
    SendCall* call = nullptr;
    {
      absl::MutexLock lock(&pending_mu_);
      auto it = pending_.find(r.request_id());
      if (it == pending_.end()) return;  // not ours: ignored
      call = it->second;
      pending_.erase(it);
    }
    grpc::Status s = grpc::Status::OK;
    if (r.has_error()) {
      s = grpc::Status(static_cast<grpc::StatusCode>(r.error().code()),
                       r.error().message());
    } else if (!r.has_sent()) {
      s = grpc::Status(grpc::StatusCode::INTERNAL, "empty SendStreamResponse");
    }
    Done(call, s, call->chain);
  }
  // The call is over: whatever is unanswered failed with it.
  void OnStreamEnd(const grpc::Status& s) {
    std::map<uint64_t, SendCall*> left;
    {
      absl::MutexLock lock(&pending_mu_);
      left.swap(pending_);
    }
    const grpc::Status err =
        s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "SendStream ended with requests unanswered")
               : s;
    for (auto& [id, call] : left) Done(call, err, false);
  }

  void Done(SendCall* call, const grpc::Status& s, bool chain) {
    const int64_t now = NowNs();
    if (s.ok()) {
      ++accepted_;
      ++st_->accepted;
      if (st_->InWindow(now)) ++st_->accepted_window;
      if (st_->InWindow(call->start_ns)) st_->rpc.Record(now - call->start_ns);
    } else {
      if (++st_->send_errors >= kMaxSendErrors) stop_ = true;
      st_->Error(absl::StrCat("Send: ", static_cast<int>(s.error_code()), " ",
                              s.error_message()));
    }
    delete call;
    if (chain && !g_stop.load()) Issue(0, true);
    --st_->inflight;
    --inflight_;
  }

  const uint32_t index_;
  v1::MessagingService::Stub* const stub_;
  const Device device_;
  const v1::SendRequest template_;
  // --mode e2ee-signal: fills every ciphertext of `cts` (one per peers_)
  // with `plaintext` encrypted for that device.
  absl::Status Encrypt(
      const std::string& conversation_id, const std::string& plaintext,
      google::protobuf::RepeatedPtrField<v1::DeviceCiphertext>* cts) {
    if (sender_keys_) {
      absl::StatusOr<std::string> c =
          device_.crypto->GroupEncrypt(conversation_id, plaintext);
      if (!c.ok()) return c.status();
      for (auto& ct : *cts) {
        ct.set_type(4);
        ct.set_ciphertext(*c);
      }
      return absl::OkStatus();
    }
    for (int k = 0; k < cts->size(); ++k) {
      absl::StatusOr<crypto::Ciphertext> c =
          device_.crypto->Encrypt(peers_[static_cast<size_t>(k)], plaintext);
      if (!c.ok()) return c.status();
      (*cts)[k].set_type(static_cast<uint32_t>(c->type));
      (*cts)[k].set_ciphertext(std::move(c->bytes));
    }
    return absl::OkStatus();
  }

  const std::vector<crypto::Address> peers_;
  const bool sender_keys_;
  Stats* const st_;
  // --send-stream: the call, and the Sends awaiting their response by
  // request id.
  std::unique_ptr<SendStreamClient> stream_;
  absl::Mutex pending_mu_;
  std::map<uint64_t, SendCall*> pending_ ABSL_GUARDED_BY(pending_mu_);
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> next_seq_{0};
  uint64_t quota_ = 0;  // 0: unlimited; set before starting
  std::atomic<int64_t> inflight_{0};
  std::atomic<uint64_t> accepted_{0};
};

struct LoadPair {
  size_t sender;                   // index into devices_
  std::vector<size_t> recipients;  // indices into devices_
  std::string conversation_id;
};

class Run {
 public:
  Run(const Options& o, const Endpoint& ep) : o_(o), ep_(ep) {}

  absl::StatusOr<RunResult> Go() {
    r_.server = ep_.name;
    r_.scenario = ScenarioName(o_.scenario);
    r_.mode = ModeName(o_.mode);
    r_.size = o_.size;
    r_.window = o_.window;
    r_.rate = o_.rate;
    r_.duration_s = o_.duration_s;
    r_.warmup_s = o_.warmup_s;
    r_.server_pid = ep_.pid;
    r_.bench_cpus = FormatCpuList(o_.bench_cpus);
    r_.loadavg_before = LoadAverage();
    // The command line refuses --series-ms for the other scenarios
    // (args.cc); a direct caller's is ignored there.
    st_.series = o_.series_ms > 0 && (o_.scenario == Scenario::kPairs ||
                                      o_.scenario == Scenario::kGroup);
    if (absl::Status s = Setup(); !s.ok()) return s;
    // The time-based half of the receivers' ack batching.
    std::atomic<bool> stop_timer{false};
    std::thread ack_timer([&] {
      while (!stop_timer.load()) {
        absl::SleepFor(absl::Milliseconds(20));
        const int64_t now = NowNs();
        absl::MutexLock lock(&receivers_mu_);
        for (auto& r : receivers_) {
          if (r) r->FlushAcksIfDue(now);
        }
      }
    });
    absl::Status s;
    switch (o_.scenario) {
      case Scenario::kPairs:
      case Scenario::kGroup:
        s = RunLoad();
        break;
      case Scenario::kDrain:
        s = RunDrain();
        break;
      case Scenario::kIdle:
        s = RunIdle();
        break;
    }
    stop_timer = true;
    ack_timer.join();
    Teardown();
    if (!s.ok()) return s;
    r_.loadavg_after = LoadAverage();
    if (g_stop.load()) r_.notes.push_back("interrupted: figures are partial");
    return r_;
  }

 private:
  void Progress(const std::string& line) {
    if (!o_.quiet)
      std::cerr << "parley-bench [" << ep_.name << "] " << line << std::endl;
  }

  // ------------------------------------------------------------------ setup

  absl::Status Setup() {
    const absl::Time t0 = absl::Now();
    const absl::Duration timeout = absl::Seconds(o_.timeout_s);
    for (int i = 0; i < o_.connections; ++i) {
      auto c = Connect(ep_, i, timeout);
      if (!c.ok()) return c.status();
      load_conns_.push_back(std::move(*c));
    }
    std::mt19937_64 rng(std::random_device{}());
    std::string prefix = "pb";
    for (int i = 0; i < 6; ++i)
      prefix.push_back(static_cast<char>('a' + rng() % 26));

    const bool group = o_.scenario == Scenario::kGroup;
    const int senders = group ? o_.groups : o_.pairs;
    for (int s = 0; s < senders; ++s) {
      LoadPair p;
      p.sender = AddDevice(group ? absl::StrCat(prefix, "g", s, "m0")
                                 : absl::StrCat(prefix, "s", s));
      const int recipients = group ? o_.group_size - 1 : 1;
      for (int k = 0; k < recipients; ++k) {
        p.recipients.push_back(
            AddDevice(group ? absl::StrCat(prefix, "g", s, "m", k + 1)
                            : absl::StrCat(prefix, "r", s)));
      }
      pairs_.push_back(std::move(p));
    }
    const size_t load_devices = devices_.size();
    if (o_.scenario == Scenario::kIdle) {
      for (int i = 0; i < o_.idle_connections; ++i) {
        auto c = Connect(ep_, o_.connections + i, timeout);
        if (!c.ok()) return c.status();
        idle_conns_.push_back(std::move(*c));
      }
      for (int i = 0; i < o_.idle_streams; ++i) {
        idle_devices_.push_back(AddDevice(absl::StrCat(prefix, "i", i)));
        devices_.back().channel = static_cast<size_t>(i) % idle_conns_.size();
        devices_.back().idle = true;
      }
    }
    r_.senders = senders;
    r_.devices_per_send = group ? o_.group_size - 1 : 1;
    Progress(absl::StrCat("setup: ", devices_.size(), " accounts (",
                          load_devices, " load, ", idle_devices_.size(),
                          " idle) on ", ep_.target));

    // Accounts.
    if (absl::Status s = ParallelFor(devices_.size(), o_.setup_concurrency,
                                     [&](size_t i) { return Register(i); });
        !s.ok()) {
      return s;
    }
    // Keys (E2EE): every load device publishes keys, so the server expects a
    // ciphertext for each recipient device.
    if (o_.mode == Mode::kE2eeSignal) {
      if (absl::Status s = MakeSignalDevices(load_devices); !s.ok()) return s;
    } else if (o_.mode == Mode::kE2eePreencrypted) {
      auto tmpl = MakeKeyUploadTemplate();
      if (!tmpl.ok()) return tmpl.status();
      if (absl::Status s =
              ParallelFor(load_devices, o_.setup_concurrency,
                          [&](size_t i) { return UploadKeys(i, *tmpl); });
          !s.ok()) {
        return s;
      }
    }
    // Conversations.
    if (absl::Status s =
            ParallelFor(pairs_.size(), o_.setup_concurrency,
                        [&](size_t i) { return CreateConversation(i); });
        !s.ok()) {
      return s;
    }
    if (o_.mode == Mode::kE2eeSignal) {
      if (absl::Status s =
              ParallelFor(pairs_.size(), o_.setup_concurrency,
                          [&](size_t i) { return MakeSessions(pairs_[i]); });
          !s.ok()) {
        return s;
      }
    }
    for (size_t i = 0; i < pairs_.size(); ++i) {
      const Device& d = devices_[pairs_[i].sender];
      std::vector<crypto::Address> peers;
      if (o_.mode == Mode::kE2eeSignal) {
        for (size_t k : pairs_[i].recipients) {
          peers.push_back(AddressOf(devices_[k]));
        }
      }
      senders_.push_back(std::make_unique<Sender>(
          static_cast<uint32_t>(i), Conn(d)->messaging.get(), d,
          Template(pairs_[i]), std::move(peers),
          o_.scenario == Scenario::kGroup, &st_));
      if (o_.send_stream) {
        senders_.back()->OpenStream(static_cast<int>(
            o_.warmup_s + o_.duration_s + 3 * o_.timeout_s + 60));
      }
    }
    r_.setup_s = absl::ToDoubleSeconds(absl::Now() - t0);
    Progress(
        absl::StrCat("setup done in ", absl::FormatDuration(absl::Now() - t0)));
    return absl::OkStatus();
  }

  size_t AddDevice(const std::string& username) {
    Device d;
    d.username = username;
    d.channel = devices_.size() % load_conns_.size();
    d.registration_id = RegistrationIdFor(devices_.size());
    devices_.push_back(std::move(d));
    return devices_.size() - 1;
  }

  Connection* Conn(const Device& d) {
    return d.idle ? idle_conns_[d.channel].get() : load_conns_[d.channel].get();
  }

  absl::Status Register(size_t i) {
    Device& d = devices_[i];
    v1::CreateAccountRequest req;
    req.set_username(d.username);
    req.set_device_name("bench");
    v1::CreateAccountResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(kRpcDeadlineS));
    grpc::Status s = Conn(d)->accounts->CreateAccount(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc(s, absl::StrCat("CreateAccount ", d.username));
    d.account_id = resp.account().account_id();
    d.device_id = resp.device().device_id();
    d.token = resp.device_token();
    return absl::OkStatus();
  }

  // One unary call made by device `d` (bearer token, deadline); a failure
  // names `what` and the device.
  absl::Status Authed(
      const Device& d, const std::string& what,
      const std::function<grpc::Status(grpc::ClientContext*)>& call) {
    grpc::ClientContext ctx;
    SetAuth(&ctx, d.token, kRpcDeadlineS);
    return FromGrpc(call(&ctx), absl::StrCat(what, " (", d.username, ")"));
  }

  absl::Status UploadKeys(size_t i, const v1::UploadKeysRequest& tmpl) {
    Device& d = devices_[i];
    v1::UploadKeysRequest req = tmpl;
    req.set_registration_id(d.registration_id);
    v1::UploadKeysResponse resp;
    return Authed(d, "UploadKeys", [&](grpc::ClientContext* ctx) {
      return Conn(d)->keys->UploadKeys(ctx, req, &resp);
    });
  }

  // --mode e2ee-signal: a Signal profile per load device (in a temporary
  // directory, removed with the run), with one-time pre-keys published
  // through UploadKeys like the SDK does.
  absl::Status MakeSignalDevices(size_t load_devices) {
    char tmpl[] = "/tmp/parley_bench_signal_XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      return absl::InternalError("mkdtemp for the Signal profiles failed");
    }
    signal_dir_.path = tmpl;
    return ParallelFor(load_devices, o_.setup_concurrency, [&](size_t i) {
      Device& d = devices_[i];
      auto c = crypto::DeviceCrypto::Open(
          absl::StrCat(signal_dir_.path, "/", i));
      if (!c.ok()) return c.status();
      auto up = (*c)->GeneratePreKeys(4);
      if (!up.ok()) return up.status();
      d.registration_id = (*c)->registration_id();
      d.crypto = std::move(*c);
      for (const v1::UploadKeysRequest& req : UploadRequests(*up, 100)) {
        v1::UploadKeysResponse resp;
        if (absl::Status s = Authed(d, "UploadKeys",
                                    [&](grpc::ClientContext* ctx) {
                                      return Conn(d)->keys->UploadKeys(
                                          ctx, req, &resp);
                                    });
            !s.ok()) {
          return s;
        }
      }
      return absl::OkStatus();
    });
  }

  // --mode e2ee-signal: the sender fetches each recipient device's bundle
  // from the server's key directory and runs X3DH; then one message each
  // way (handed over in process, not through the server) completes the
  // handshake, so the measured messages are ordinary SignalMessages (type
  // 2), as in a conversation where both sides have written. In a group
  // every member also gets the sender's sender key.
  absl::Status MakeSessions(const LoadPair& p) {
    const Device& s = devices_[p.sender];
    for (size_t k : p.recipients) {
      const Device& r = devices_[k];
      v1::FetchBundlesRequest req;
      req.set_account_id(r.account_id);
      v1::FetchBundlesResponse resp;
      if (absl::Status st = Authed(s, absl::StrCat("FetchBundles ", r.username),
                                   [&](grpc::ClientContext* ctx) {
                                     return Conn(s)->keys->FetchBundles(
                                         ctx, req, &resp);
                                   });
          !st.ok()) {
        return st;
      }
      const v1::PreKeyBundle* bundle = nullptr;
      for (const auto& b : resp.bundles()) {
        if (b.device_id() == r.device_id) bundle = &b;
      }
      if (bundle == nullptr) {
        return absl::NotFoundError(absl::StrCat(
            "FetchBundles ", r.username, ": no bundle for device ",
            r.device_id));
      }
      const crypto::Address to_r = AddressOf(r), to_s = AddressOf(s);
      absl::Status st = s.crypto->ProcessBundle(to_r, BundleFromProto(*bundle));
      absl::StatusOr<crypto::Ciphertext> hello =
          st.ok() ? s.crypto->Encrypt(to_r, "parley-bench: hello")
                  : absl::StatusOr<crypto::Ciphertext>(st);
      absl::StatusOr<std::string> got =
          hello.ok() ? r.crypto->Decrypt(to_s, *hello)
                     : absl::StatusOr<std::string>(hello.status());
      absl::StatusOr<crypto::Ciphertext> reply =
          got.ok() ? r.crypto->Encrypt(to_s, "parley-bench: hello back")
                   : absl::StatusOr<crypto::Ciphertext>(got.status());
      absl::StatusOr<std::string> back =
          reply.ok() ? s.crypto->Decrypt(to_r, *reply)
                     : absl::StatusOr<std::string>(reply.status());
      if (!back.ok()) {
        return absl::Status(
            back.status().code(),
            absl::StrCat("Signal session ", s.username, " -> ", r.username,
                         ": ", back.status().message()));
      }
    }
    if (o_.scenario == Scenario::kGroup) {
      // The sender key of the group; the SDK sends the distribution message
      // inside a pairwise-encrypted envelope, the bench hands it over here.
      absl::StatusOr<std::string> dist =
          s.crypto->CreateSenderKeyDistribution(p.conversation_id);
      if (!dist.ok()) return dist.status();
      for (size_t k : p.recipients) {
        if (absl::Status st = devices_[k].crypto->ProcessSenderKeyDistribution(
                p.conversation_id, AddressOf(s), *dist);
            !st.ok()) {
          return st;
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status CreateConversation(size_t i) {
    LoadPair& p = pairs_[i];
    const Device& s = devices_[p.sender];
    grpc::ClientContext ctx;
    SetAuth(&ctx, s.token, kRpcDeadlineS);
    v1::Conversation conv;
    if (o_.scenario == Scenario::kGroup) {
      v1::CreateGroupRequest req;
      req.set_title(absl::StrCat("bench group ", i));
      for (size_t k : p.recipients)
        req.add_member_usernames(devices_[k].username);
      v1::CreateGroupResponse resp;
      grpc::Status st = Conn(s)->conversations->CreateGroup(&ctx, req, &resp);
      if (!st.ok()) return FromGrpc(st, "CreateGroup");
      conv = resp.conversation();
    } else {
      v1::CreateDirectRequest req;
      req.set_peer_username(devices_[p.recipients[0]].username);
      v1::CreateDirectResponse resp;
      grpc::Status st = Conn(s)->conversations->CreateDirect(&ctx, req, &resp);
      if (!st.ok()) return FromGrpc(st, "CreateDirect");
      conv = resp.conversation();
    }
    p.conversation_id = conv.conversation_id();
    const v1::SecurityMode m = conv.security().mode();
    const bool want_e2ee = o_.mode != Mode::kTransport;
    if (m != v1::SECURITY_MODE_UNSPECIFIED &&
        (m == v1::SECURITY_MODE_E2EE) != want_e2ee) {
      return absl::FailedPreconditionError(absl::StrCat(
          "conversation ", p.conversation_id, " is ", v1::SecurityMode_Name(m),
          " but --mode is ", ModeName(o_.mode),
          want_e2ee
              ? " (spawned parleyd runs with --policy preset:signal in this "
                "mode; a "
                "--target needs an E2EE-by-default policy)"
              : " (use a policy whose conversations are server-readable)"));
    }
    return absl::OkStatus();
  }

  v1::SendRequest Template(const LoadPair& p) {
    v1::SendRequest req;
    req.set_conversation_id(p.conversation_id);
    const std::string payload = MakePayload(PayloadHeader{}, o_.size);
    if (o_.mode == Mode::kTransport) {
      req.mutable_body()->mutable_plain()->set_content(payload);
    } else {
      for (size_t k : p.recipients) {
        const Device& d = devices_[k];
        auto* ct = req.mutable_body()->mutable_encrypted()->add_ciphertexts();
        ct->set_account_id(d.account_id);
        ct->set_device_id(d.device_id);
        ct->set_registration_id(d.registration_id);
        ct->set_type(2);  // SignalMessage: opaque to the server
        ct->set_ciphertext(payload);
      }
    }
    return req;
  }

  // --------------------------------------------------------------- streams

  absl::Status OpenReceivers(const std::vector<size_t>& devices,
                             std::vector<std::unique_ptr<Receiver>>* out,
                             size_t batch) {
    const absl::Duration timeout = absl::Seconds(o_.timeout_s);
    for (size_t start = 0; start < devices.size(); start += batch) {
      const size_t end = std::min(devices.size(), start + batch);
      for (size_t i = start; i < end; ++i) {
        const Device& d = devices_[devices[i]];
        absl::MutexLock lock(&receivers_mu_);
        out->push_back(std::make_unique<Receiver>(
            Conn(d)->messaging.get(), d, &st_, o_.receive_batch, o_.ack_batch,
            o_.ack_flush_ms));
        out->back()->Open();
      }
      auto all_up = [&] {
        for (size_t i = start; i < end; ++i) {
          Receiver* r = (*out)[i].get();
          if (!r->drained() && !r->done()) return false;
        }
        return true;
      };
      if (!WaitFor(all_up, timeout)) {
        return absl::DeadlineExceededError(
            absl::StrCat("Receive streams not up within ",
                         absl::FormatDuration(timeout), " (", end, " opened)"));
      }
      for (size_t i = start; i < end; ++i) {
        Receiver* r = (*out)[i].get();
        if (r->done()) return FromGrpc(r->status(), "Receive");
      }
    }
    return absl::OkStatus();
  }

  // Cancels the streams and waits (bounded) for them to end; streams that do
  // not end are leaked rather than freed under gRPC.
  void CloseReceivers(std::vector<std::unique_ptr<Receiver>>* rs) {
    WaitFor(
        [&] {
          for (auto& r : *rs) {
            r->FlushAcksIfDue(INT64_MAX);  // what is pending goes now
            if (!r->acks_idle()) return false;
          }
          return true;
        },
        absl::Seconds(10));
    for (auto& r : *rs) r->Cancel();
    const bool all_done = WaitFor(
        [&] {
          for (auto& r : *rs) {
            if (!r->done() || !r->acks_idle()) return false;
          }
          return true;
        },
        absl::Seconds(o_.timeout_s));
    if (!all_done) {
      r_.notes.push_back("some Receive streams did not end in time (leaked)");
      absl::MutexLock lock(&receivers_mu_);
      for (auto& r : *rs) {
        if (!r->done() || !r->acks_idle()) r.release();
      }
    }
    absl::MutexLock lock(&receivers_mu_);
    rs->clear();
  }

  std::vector<size_t> AllRecipients() const {
    std::vector<size_t> out;
    for (const LoadPair& p : pairs_)
      out.insert(out.end(), p.recipients.begin(), p.recipients.end());
    return out;
  }

  uint64_t ExpectedDeliveries() const {
    uint64_t n = 0;
    for (size_t i = 0; i < pairs_.size(); ++i) {
      n += senders_[i]->accepted() * pairs_[i].recipients.size();
    }
    return n;
  }

  // ----------------------------------------------------------- measurement

  struct Snapshot {
    int64_t t_ns = 0;
    double server_cpu = -1;
    int64_t server_faults = -1;
    int64_t server_switches = -1;
    double bench_cpu = -1;
    int64_t group_commits = -1;  // GetServerStats, when it answered
    int64_t sends_stored = -1;
    std::optional<v1::LatencyHistogram> send_latency;
  };
  // The server's counters from its admin service (Endpoint::admin_target);
  // a failure is noted once and the figures stay unmeasured.
  void ReadServerStats(Snapshot* s) {
    if (ep_.admin_target.empty() || stats_failed_) return;
    if (admin_ == nullptr) {
      grpc::SslCredentialsOptions so;
      so.pem_root_certs = ep_.ca_pem;
      admin_ = v1::AdminService::NewStub(
          grpc::CreateChannel(ep_.admin_target, grpc::SslCredentials(so)));
    }
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + ep_.admin_token);
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::GetServerStatsResponse resp;
    grpc::Status st = admin_->GetServerStats(&ctx, {}, &resp);
    if (!st.ok()) {
      stats_failed_ = true;
      r_.notes.push_back(
          absl::StrCat("server stats not read (GetServerStats: ",
                       absl::StatusCodeToString(
                           static_cast<absl::StatusCode>(st.error_code())),
                       " ", st.error_message(), ")"));
      return;
    }
    s->group_commits = static_cast<int64_t>(resp.group_commits());
    s->sends_stored = static_cast<int64_t>(resp.sends_stored());
    s->send_latency = resp.send_latency();
  }
  // The clock and the processes' counters, read together (reads of /proc,
  // microseconds). A window's bounds are these snapshots' times. The
  // server's counters over its admin service (ReadServerStats) are read after
  // the window's bound has moved: that RPC waits its turn on a busy server
  // (seconds when the closed loop keeps thousands of Sends in flight), and
  // read first it shifted the window's start (BENCHMARKS.md, twentieth
  // round). So the window's deliveries, its length and the CPU read from /proc
  // cover the same interval; the server's own counters (group commits, Send
  // latency) cover the interval between the two RPCs.
  Snapshot TakeLocal() {
    Snapshot s;
    s.t_ns = NowNs();
    if (ep_.pid > 0) {
      auto c = ReadProcessCounters(ep_.pid);
      if (c.ok()) {
        s.server_cpu = c->cpu_s;
        s.server_faults = c->minor_faults;
        s.server_switches = c->context_switches;
      }
    }
    auto b = ProcessCpuSeconds(0);
    if (b.ok()) s.bench_cpu = *b;
    return s;
  }
  void ReadServerMemory() {
    if (ep_.pid <= 0) return;
    auto m = ReadProcessMemory(ep_.pid);
    if (!m.ok()) return;
    r_.server_peak_rss_kb = m->vm_hwm_kb;
    r_.server_rss_kb = m->vm_rss_kb;
    r_.server_threads = m->threads;
  }
  void Account(const Snapshot& a, const Snapshot& b, uint64_t deliveries,
               uint64_t sends) {
    r_.window_s = static_cast<double>(b.t_ns - a.t_ns) / 1e9;
    if (a.server_cpu >= 0 && b.server_cpu >= 0) {
      r_.server_cpu_s = b.server_cpu - a.server_cpu;
      if (deliveries > 0) {
        r_.server_cpu_s_per_1k_deliveries =
            r_.server_cpu_s * 1000.0 / static_cast<double>(deliveries);
      }
      if (sends > 0)
        r_.server_cpu_s_per_1k_sends =
            r_.server_cpu_s * 1000.0 / static_cast<double>(sends);
    }
    if (deliveries > 0 && a.server_faults >= 0 && b.server_faults >= 0) {
      r_.server_minor_faults_per_1k_deliveries =
          static_cast<double>(b.server_faults - a.server_faults) * 1000.0 /
          static_cast<double>(deliveries);
    }
    if (deliveries > 0 && a.server_switches >= 0 && b.server_switches >= 0) {
      r_.server_context_switches_per_delivery =
          static_cast<double>(b.server_switches - a.server_switches) /
          static_cast<double>(deliveries);
    }
    if (a.bench_cpu >= 0 && b.bench_cpu >= 0)
      r_.bench_cpu_s = b.bench_cpu - a.bench_cpu;
    if (a.group_commits >= 0 && b.group_commits >= 0) {
      r_.server_group_commits = b.group_commits - a.group_commits;
      r_.server_sends_stored = b.sends_stored - a.sends_stored;
      if (r_.server_group_commits > 0) {
        r_.server_sends_per_group_commit =
            static_cast<double>(r_.server_sends_stored) /
            static_cast<double>(r_.server_group_commits);
      }
    }
    if (a.send_latency.has_value() && b.send_latency.has_value()) {
      absl::StatusOr<latency::LatencySummary> l =
          latency::Summarize(*b.send_latency, &*a.send_latency);
      if (l.ok()) {
        r_.server_send_latency_count = static_cast<int64_t>(l->count);
        r_.server_send_latency_p50_ms = l->p50_ms;
        r_.server_send_latency_p99_ms = l->p99_ms;
        r_.server_send_latency_p999_ms = l->p999_ms;
      } else {
        r_.notes.push_back(absl::StrCat("server Send latency not read: ",
                                        l.status().message()));
      }
    }
  }

  // Runs the senders for warm-up + duration against open recipient streams.
  absl::Status LoadPhase() {
    std::thread pacer;
    const int64_t begin = NowNs();
    const int64_t window_start =
        begin + static_cast<int64_t>(o_.warmup_s * 1e9);
    const int64_t window_end =
        window_start + static_cast<int64_t>(o_.duration_s * 1e9);
    if (o_.rate > 0) {
      pacer = std::thread([this, window_end] {
        const int64_t start = NowNs();
        const double interval_ns = 1e9 / o_.rate;
        uint64_t issued = 0;
        size_t rr = 0;
        while (!g_stop.load()) {
          const int64_t now = NowNs();
          if (now >= window_end) break;
          while (start + static_cast<int64_t>(static_cast<double>(issued) *
                                              interval_ns) <=
                 now) {
            const int64_t sched =
                start +
                static_cast<int64_t>(static_cast<double>(issued) * interval_ns);
            ++issued;
            if (st_.inflight.load() >= o_.max_inflight) {
              ++st_.skipped;
              continue;
            }
            senders_[rr++ % senders_.size()]->Issue(sched, false);
          }
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      });
    } else {
      for (auto& s : senders_) s->StartClosed(o_.window);
    }
    Progress(absl::StrCat("load: ",
                          o_.rate > 0
                              ? absl::StrCat("open loop ", o_.rate, "/s")
                              : absl::StrCat("closed loop, window ", o_.window),
                          ", ", senders_.size(), " senders, warm-up ",
                          o_.warmup_s, " s, measuring ", o_.duration_s, " s"));
    SleepUntil(window_start);
    Snapshot a = TakeLocal();
    st_.window_end = INT64_MAX;
    st_.window_start = a.t_ns;
    ReadServerStats(&a);
    SleepUntil(window_end);
    Snapshot b = TakeLocal();
    st_.window_end = b.t_ns;
    ReadServerStats(&b);
    ReadServerMemory();
    for (auto& s : senders_) s->Stop();
    if (pacer.joinable()) pacer.join();
    Account(a, b, st_.delivered_window.load(), st_.accepted_window.load());
    return Settle();
  }

  // After the load: waits (bounded) for in-flight Sends, outstanding
  // deliveries and Acks, then fills the counters.
  absl::Status Settle() {
    const absl::Duration timeout = absl::Seconds(o_.timeout_s);
    if (!WaitFor([&] { return st_.inflight.load() == 0; }, timeout)) {
      r_.notes.push_back("Sends still in flight at the end");
    }
    const bool all = WaitFor(
        [&] { return st_.delivered.load() >= ExpectedDeliveries(); }, timeout);
    if (!all) {
      r_.notes.push_back(
          absl::StrCat("not every accepted message was delivered within ",
                       o_.timeout_s, " s"));
    }
    FillCounters();
    return absl::OkStatus();
  }

  void FillCounters() {
    r_.sends_accepted = st_.accepted.load();
    r_.sends_window = st_.accepted_window.load();
    r_.send_errors = st_.send_errors.load();
    r_.sends_skipped = st_.skipped.load();
    r_.deliveries_window = st_.delivered_window.load();
    r_.deliveries_total = st_.delivered.load();
    r_.deliveries_expected = ExpectedDeliveries();
    r_.duplicates = st_.duplicates.load();
    r_.acked = st_.acked.load();
    r_.ack_errors = st_.ack_errors.load();
    r_.ack_calls = st_.ack_calls.load();
    r_.stream_envelopes = st_.stream_envelopes.load();
    r_.stream_responses = st_.stream_responses.load();
    r_.decrypt_errors = st_.decrypt_errors.load();
    if (r_.window_s > 0) {
      r_.delivered_per_s =
          static_cast<double>(r_.deliveries_window) / r_.window_s;
      r_.sends_per_s = static_cast<double>(r_.sends_window) / r_.window_s;
    }
    r_.latency = Summarize(st_.e2e);
    r_.send_rpc = Summarize(st_.rpc);
    if (o_.rate > 0) {
      r_.latency_from_schedule = Summarize(st_.e2e_scheduled);
      r_.issue_lag = Summarize(st_.issue_lag);
    }
    const int64_t start = st_.window_start.load(), end = st_.window_end.load();
    if (st_.series && start < end && end != INT64_MAX) {
      std::vector<std::pair<int64_t, int64_t>> samples;
      {
        absl::MutexLock lock(&receivers_mu_);
        for (auto& r : receivers_) r->CopySamples(&samples);
      }
      r_.series_ms = o_.series_ms;
      r_.series =
          BuildSeries(std::move(samples), start, end - start, o_.series_ms);
    }
    absl::MutexLock lock(&st_.mu);
    r_.first_error = st_.first_error;
  }

  // ------------------------------------------------------------- scenarios

  absl::Status RunLoad() {
    absl::Status s = OpenReceivers(AllRecipients(), &receivers_, 1000);
    if (s.ok()) s = LoadPhase();
    CloseReceivers(&receivers_);
    return s;
  }

  absl::Status RunDrain() {
    const absl::Duration timeout = absl::Seconds(o_.timeout_s);
    // Fill the queues of the offline recipients.
    const uint64_t per_sender =
        (static_cast<uint64_t>(o_.drain_messages) + senders_.size() - 1) /
        senders_.size();
    for (auto& s : senders_) s->set_quota(per_sender);
    r_.drain_messages = per_sender * senders_.size();
    Progress(absl::StrCat("drain: queueing ", r_.drain_messages,
                          " messages for ", AllRecipients().size(),
                          " offline device(s)"));
    const int64_t f0 = NowNs();
    st_.window_start = f0;
    st_.window_end = INT64_MAX;
    for (auto& s : senders_) s->StartClosed(o_.window);
    const bool filled = WaitFor(
        [&] {
          uint64_t n = st_.accepted.load();
          return st_.inflight.load() == 0 &&
                 (n >= r_.drain_messages || st_.send_errors.load() > 0);
        },
        timeout);
    const Snapshot fb = TakeLocal();
    st_.window_end = fb.t_ns;
    if (!filled || st_.accepted.load() < r_.drain_messages) {
      FillCounters();
      return absl::DeadlineExceededError(absl::StrCat(
          "drain: only ", st_.accepted.load(), " of ", r_.drain_messages,
          " messages accepted (", r_.first_error, ")"));
    }
    r_.fill_per_s = static_cast<double>(st_.accepted.load()) /
                    (static_cast<double>(fb.t_ns - f0) / 1e9);
    // Reconnect and drain.
    const uint64_t expected = ExpectedDeliveries();
    // Latency is only recorded for Sends inside the window: none here.
    Snapshot a = TakeLocal();
    st_.window_end = INT64_MAX;
    st_.window_start = a.t_ns;
    ReadServerStats(&a);
    st_.e2e.Reset();
    st_.e2e_scheduled.Reset();
    Progress(absl::StrCat("drain: reconnecting ", AllRecipients().size(),
                          " device(s)"));
    absl::Status s = OpenReceivers(AllRecipients(), &receivers_, 1000);
    if (s.ok()) {
      const bool drained =
          WaitFor([&] { return st_.delivered.load() >= expected; }, timeout);
      Snapshot b = TakeLocal();
      st_.window_end = b.t_ns;
      ReadServerStats(&b);
      ReadServerMemory();
      Account(a, b, st_.delivered.load(), expected);
      r_.drain_s = r_.window_s;
      if (r_.drain_s > 0)
        r_.drain_per_s = static_cast<double>(st_.delivered.load()) / r_.drain_s;
      if (!drained)
        r_.notes.push_back("drain did not complete within the timeout");
    }
    FillCounters();
    r_.latency = LatencySummary();
    CloseReceivers(&receivers_);
    return s;
  }

  absl::Status RunIdle() {
    auto mem0 = ep_.pid > 0 ? ReadProcessMemory(ep_.pid)
                            : absl::StatusOr<ProcessMemory>();
    if (ep_.pid > 0 && mem0.ok()) {
      r_.rss_before_idle_kb = mem0->vm_rss_kb;
      r_.threads_before_idle = mem0->threads;
    }
    r_.idle_streams = static_cast<int>(idle_devices_.size());
    r_.idle_connections = static_cast<int>(idle_conns_.size());
    Progress(absl::StrCat("idle: opening ", idle_devices_.size(),
                          " Receive streams on ", idle_conns_.size(),
                          " connections"));
    const absl::Time t0 = absl::Now();
    absl::Status s = OpenReceivers(idle_devices_, &idle_receivers_, 500);
    r_.idle_open_s = absl::ToDoubleSeconds(absl::Now() - t0);
    if (s.ok()) {
      absl::SleepFor(absl::Seconds(1));
      if (ep_.pid > 0) {
        auto mem1 = ReadProcessMemory(ep_.pid);
        if (mem1.ok()) {
          r_.rss_idle_kb = mem1->vm_rss_kb;
          r_.threads_idle = mem1->threads;
        }
      }
      Progress(absl::StrCat("idle: ", idle_receivers_.size(),
                            " streams open in ",
                            absl::FormatDuration(absl::Now() - t0),
                            "; running the load beside them"));
      s = RunLoad();
    }
    CloseReceivers(&idle_receivers_);
    return s;
  }

  void Teardown() {
    for (auto& s : senders_) {
      if (s) s->Stop();
    }
    WaitFor([&] { return st_.inflight.load() == 0; },
            absl::Seconds(o_.timeout_s));
    for (auto& s : senders_) {
      if (s && s->inflight() != 0) s.release();
    }
  }

  // Removes the Signal profiles' directory when the run ends (declared
  // first: destroyed after every sender, receiver and device).
  struct TempDir {
    std::string path;
    ~TempDir() {
      std::error_code ec;
      if (!path.empty()) std::filesystem::remove_all(path, ec);
    }
  };

  TempDir signal_dir_;
  const Options& o_;
  const Endpoint& ep_;
  std::unique_ptr<v1::AdminService::Stub> admin_;  // main thread only
  bool stats_failed_ = false;
  RunResult r_;
  Stats st_;
  std::vector<std::unique_ptr<Connection>> load_conns_, idle_conns_;
  std::vector<Device> devices_;
  std::vector<LoadPair> pairs_;
  std::vector<size_t> idle_devices_;
  std::vector<std::unique_ptr<Sender>> senders_;
  // Guards the vectors (not the receivers) against the ack timer.
  absl::Mutex receivers_mu_;
  std::vector<std::unique_ptr<Receiver>> receivers_, idle_receivers_;
};

}  // namespace

std::string MakePayload(const PayloadHeader& h, int size) {
  // ASCII only: a PlainBody's content must be valid UTF-8.
  const uint64_t lag = static_cast<uint64_t>(
      std::clamp<int64_t>(h.issue_lag_us, 0, int64_t{0xFFFFFFFF}));
  std::string p = absl::StrFormat("PB2:%08x%012x%016x%08x", h.sender,
                                  h.seq & 0xFFFFFFFFFFFFULL,
                                  static_cast<uint64_t>(h.send_ns), lag);
  p.resize(static_cast<size_t>(std::max(size, kPayloadHeaderBytes)), 'x');
  return p;
}

std::optional<PayloadHeader> ParsePayload(const std::string& payload) {
  if (payload.size() < static_cast<size_t>(kPayloadHeaderBytes) ||
      payload.compare(0, 4, "PB2:") != 0) {
    return std::nullopt;
  }
  auto hex = [&](size_t pos, size_t len, uint64_t* out) {
    uint64_t v = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      const char c = payload[i];
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else {
        return false;
      }
      v = v << 4 | static_cast<uint64_t>(d);
    }
    *out = v;
    return true;
  };
  uint64_t s = 0, q = 0, t = 0, l = 0;
  if (!hex(4, 8, &s) || !hex(12, 12, &q) || !hex(24, 16, &t) ||
      !hex(40, 8, &l)) {
    return std::nullopt;
  }
  PayloadHeader h;
  h.sender = static_cast<uint32_t>(s);
  h.seq = q;
  h.send_ns = static_cast<int64_t>(t);
  h.issue_lag_us = static_cast<int64_t>(l);
  return h;
}

absl::StatusOr<RunResult> RunScenario(const Options& o, const Endpoint& ep) {
  Run run(o, ep);
  return run.Go();
}

void RequestStop() { g_stop.store(true); }
bool StopRequested() { return g_stop.load(); }

}  // namespace parley::bench
