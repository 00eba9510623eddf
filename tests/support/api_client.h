// Test helper: raw gRPC stubs for one device, with its bearer token.
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TESTS_SUPPORT_API_CLIENT_H_
#define PARLEY_TESTS_SUPPORT_API_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <deque>
#include <memory>
#include <string>

#include "parley/v1/parley.grpc.pb.h"

namespace parley::testing {

// A channel to a test server; TLS when ca_pem is non-empty.
inline std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, const std::string& ca_pem) {
  if (ca_pem.empty()) return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = ca_pem;
  return grpc::CreateChannel(target, grpc::SslCredentials(o));
}

struct Device {
  std::string account_id;
  std::string username;
  uint32_t device_id = 0;
  std::string token;
};

class ApiClient {
 public:
  explicit ApiClient(std::shared_ptr<grpc::Channel> ch)
      : ch_(ch),
        accounts(v1::AccountService::NewStub(ch)),
        conversations(v1::ConversationService::NewStub(ch)),
        messaging(v1::MessagingService::NewStub(ch)),
        keys(v1::KeyService::NewStub(ch)) {}

  // A context carrying `token` (may be empty or garbage for negative tests).
  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token, int deadline_s = 10) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(deadline_s));
    return ctx;
  }
  std::unique_ptr<grpc::ClientContext> Ctx(const Device& d) { return Ctx(d.token); }

  grpc::Status Register(const std::string& username, Device* out, v1::AccountAttributes attrs = {}) {
    v1::CreateAccountRequest req;
    req.set_username(username);
    *req.mutable_attributes() = attrs;
    v1::CreateAccountResponse resp;
    auto ctx = Ctx("");
    grpc::Status s = accounts->CreateAccount(ctx.get(), req, &resp);
    if (s.ok()) {
      out->account_id = resp.account().account_id();
      out->username = resp.account().username();
      out->device_id = resp.device().device_id();
      out->token = resp.device_token();
    }
    return s;
  }

  grpc::Status Link(const Device& existing, Device* out) {
    v1::CreateDeviceLinkResponse code;
    auto c1 = Ctx(existing);
    grpc::Status s = accounts->CreateDeviceLink(c1.get(), {}, &code);
    if (!s.ok()) return s;
    v1::LinkDeviceRequest req;
    req.set_link_code(code.link_code());
    v1::LinkDeviceResponse resp;
    auto c2 = Ctx("");
    s = accounts->LinkDevice(c2.get(), req, &resp);
    if (s.ok()) {
      out->account_id = resp.account().account_id();
      out->username = resp.account().username();
      out->device_id = resp.device().device_id();
      out->token = resp.device_token();
    }
    return s;
  }

  grpc::Status Direct(const Device& d, const std::string& peer, v1::Conversation* out) {
    v1::CreateDirectRequest req;
    req.set_peer_username(peer);
    v1::CreateDirectResponse resp;
    auto ctx = Ctx(d);
    grpc::Status s = conversations->CreateDirect(ctx.get(), req, &resp);
    if (out != nullptr) *out = resp.conversation();
    return s;
  }

  grpc::Status SendText(const Device& d, const std::string& conv, const std::string& client_id,
                        const std::string& text, v1::SendResponse* out = nullptr) {
    v1::SendRequest req;
    req.set_conversation_id(conv);
    req.set_client_message_id(client_id);
    req.mutable_body()->mutable_plain()->set_content(text);
    v1::SendResponse resp;
    auto ctx = Ctx(d);
    grpc::Status s = messaging->Send(ctx.get(), req, &resp);
    if (out != nullptr) *out = resp;
    return s;
  }

  std::shared_ptr<grpc::Channel> ch_;
  std::unique_ptr<v1::AccountService::Stub> accounts;
  std::unique_ptr<v1::ConversationService::Stub> conversations;
  std::unique_ptr<v1::MessagingService::Stub> messaging;
  std::unique_ptr<v1::KeyService::Stub> keys;
};

// An open Receive stream. Read() returns false when the stream ends.
// `max_batch`: ReceiveRequest.max_batch (0: one envelope per response).
class Stream {
 public:
  Stream(ApiClient& c, const Device& d, int deadline_s = 30, uint32_t max_batch = 0)
      : ctx_(ApiClient::Ctx(d.token, deadline_s)) {
    v1::ReceiveRequest req;
    req.set_max_batch(max_batch);
    reader_ = c.messaging->Receive(ctx_.get(), req);
  }
  ~Stream() {
    ctx_->TryCancel();
    v1::ReceiveResponse r;
    while (reader_->Read(&r)) {
    }
    if (!finished_) reader_->Finish().ok();
  }
  bool Read(v1::ReceiveResponse* r) { return reader_->Read(r); }
  // Reads the next envelope, skipping the backlog marker (and taking the
  // envelopes of a batch one by one).
  bool NextEnvelope(v1::Envelope* e) {
    if (!pending_.empty()) {
      *e = std::move(pending_.front());
      pending_.pop_front();
      return true;
    }
    v1::ReceiveResponse r;
    while (reader_->Read(&r)) {
      if (r.has_envelope()) {
        *e = r.envelope();
        return true;
      }
      if (r.has_batch() && r.batch().envelopes_size() > 0) {
        pending_.assign(r.batch().envelopes().begin(), r.batch().envelopes().end());
        *e = std::move(pending_.front());
        pending_.pop_front();
        return true;
      }
    }
    return false;
  }
  grpc::Status Finish() {
    finished_ = true;
    return reader_->Finish();
  }
  grpc::ClientContext* ctx() { return ctx_.get(); }

 private:
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReader<v1::ReceiveResponse>> reader_;
  std::deque<v1::Envelope> pending_;  // rest of the last batch
  bool finished_ = false;
};

}  // namespace parley::testing

#endif  // PARLEY_TESTS_SUPPORT_API_CLIENT_H_
