// Downgrade protection end to end: parley::Client against an in-process
// TAMPERING fake server whose security states are signed (or not) with keys
// the test controls (core::StatementSigner).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "clients/sdk/client.h"
#include "clients/sdk/profile.h"
#include "clients/sdk/statement_verifier.h"
#include "core/statement.h"
#include "gtest/gtest.h"
#include "grpcpp/grpcpp.h"
#include "parley/v1/parley.grpc.pb.h"

namespace parley {
namespace {

using v1::SECURITY_MODE_E2EE;
using v1::SECURITY_MODE_TRANSPORT;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/downgrade_test.XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct ServerState {
  absl::Mutex mu;
  std::map<std::string, v1::SecurityState> states;  // served as current
  std::deque<v1::Envelope> to_deliver;
  std::vector<v1::SendRequest> sends;
  std::string signing_key;  // returned by CreateAccount
};

class Accounts final : public v1::AccountService::Service {
 public:
  explicit Accounts(ServerState* s) : s_(s) {}
  grpc::Status CreateAccount(grpc::ServerContext*,
                             const v1::CreateAccountRequest* req,
                             v1::CreateAccountResponse* resp) override {
    resp->mutable_account()->set_account_id("a_" + req->username());
    resp->mutable_account()->set_username(req->username());
    resp->mutable_device()->set_device_id(1);
    resp->set_device_token("tok");
    absl::MutexLock l(&s_->mu);
    resp->set_server_signing_key(s_->signing_key);
    resp->set_server_key_id(statement::KeyId(s_->signing_key));
    return grpc::Status::OK;
  }

 private:
  ServerState* s_;
};

class Conversations final : public v1::ConversationService::Service {
 public:
  explicit Conversations(ServerState* s) : s_(s) {}
  grpc::Status GetConversation(grpc::ServerContext*,
                               const v1::GetConversationRequest* req,
                               v1::GetConversationResponse* resp) override {
    absl::MutexLock l(&s_->mu);
    auto it = s_->states.find(req->conversation_id());
    if (it == s_->states.end()) {
      return {grpc::StatusCode::NOT_FOUND, "not found"};
    }
    v1::Conversation* c = resp->mutable_conversation();
    c->set_conversation_id(req->conversation_id());
    c->set_kind(v1::CONVERSATION_KIND_DIRECT);
    *c->mutable_security() = it->second;
    return grpc::Status::OK;
  }

 private:
  ServerState* s_;
};

class Messaging final : public v1::MessagingService::Service {
 public:
  explicit Messaging(ServerState* s) : s_(s) {}
  grpc::Status Send(grpc::ServerContext*, const v1::SendRequest* req,
                    v1::SendResponse* resp) override {
    absl::MutexLock l(&s_->mu);
    s_->sends.push_back(*req);
    resp->set_seq(s_->sends.size());
    return grpc::Status::OK;
  }
  grpc::Status Ack(grpc::ServerContext*, const v1::AckRequest* req,
                   v1::AckResponse* resp) override {
    resp->set_removed(req->delivery_ids_size());
    return grpc::Status::OK;
  }
  grpc::Status Receive(grpc::ServerContext* ctx, const v1::ReceiveRequest*,
                       grpc::ServerWriter<v1::ReceiveResponse>* w) override {
    while (!ctx->IsCancelled()) {
      std::optional<v1::Envelope> env;
      {
        absl::MutexLock l(&s_->mu);
        if (!s_->to_deliver.empty()) {
          env = s_->to_deliver.front();
          s_->to_deliver.pop_front();
        }
      }
      if (env) {
        v1::ReceiveResponse r;
        *r.mutable_envelope() = *env;
        w->Write(r);
      } else {
        absl::SleepFor(absl::Milliseconds(5));
      }
    }
    return grpc::Status::CANCELLED;
  }

 private:
  ServerState* s_;
};

class DowngradeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto signer = core::StatementSigner::LoadOrCreate(
        absl::StrCat(tmp_.path(), "/server/statement.key"));
    ASSERT_TRUE(signer.ok()) << signer.status();
    signer_ = *std::move(signer);
    auto other = core::StatementSigner::LoadOrCreate(
        absl::StrCat(tmp_.path(), "/other/statement.key"));
    ASSERT_TRUE(other.ok()) << other.status();
    other_ = *std::move(other);
    state_.signing_key = signer_->public_key();

    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port_);
    b.RegisterService(&accounts_);
    b.RegisterService(&conversations_);
    b.RegisterService(&messaging_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    dir_ = absl::StrCat(tmp_.path(), "/profile");
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(1));
  }

  v1::SecurityState State(const std::string& conv, uint64_t epoch,
                          v1::SecurityMode mode,
                          const core::StatementSigner* signer) const {
    v1::SecurityState s;
    s.set_mode(mode);
    s.set_epoch(epoch);
    s.set_policy_revision("rev-1");
    s.set_rule_id(mode == SECURITY_MODE_E2EE ? "e2ee" : "transport");
    s.set_effective_at_ms(1700000000000 + static_cast<int64_t>(epoch));
    s.set_e2ee_ever_enabled(mode == SECURITY_MODE_E2EE || epoch > 1);
    if (signer != nullptr) {
      EXPECT_TRUE(signer->Sign(conv, &s).ok());
    }
    return s;
  }
  void Serve(const std::string& conv, const v1::SecurityState& s) {
    absl::MutexLock l(&state_.mu);
    state_.states[conv] = s;
  }
  void Deliver(uint64_t id, const std::string& conv,
               const v1::SecurityState& old_state,
               const v1::SecurityState& new_state) {
    v1::Envelope e;
    e.set_delivery_id(id);
    e.mutable_message()->set_conversation_id(conv);
    e.mutable_message()->set_seq(id);
    *e.mutable_message()->mutable_security_change()->mutable_old_state() =
        old_state;
    *e.mutable_message()->mutable_security_change()->mutable_new_state() =
        new_state;
    absl::MutexLock l(&state_.mu);
    state_.to_deliver.push_back(std::move(e));
  }
  size_t Sends() {
    absl::MutexLock l(&state_.mu);
    return state_.sends.size();
  }

  // Registers through the fake server (pins its key) and returns a Client.
  std::unique_ptr<Client> RegisteredClient() {
    ConnectOptions o;
    o.server = absl::StrCat("127.0.0.1:", port_);
    o.insecure = true;
    o.deadline = absl::Seconds(5);
    Profile p;
    p.dir = dir_;
    auto c = Client::Create(p, o);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    auto reg = (*c)->Register("alice", "Alice", {}, "laptop");
    EXPECT_TRUE(reg.ok()) << reg.status();
    return *std::move(c);
  }
  // A new Client over the saved profile (optionally refuse_downgrade).
  std::unique_ptr<Client> Reopen(bool refuse_downgrade = false) {
    auto p = Profile::Load(dir_);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    if (refuse_downgrade) {
      p->refuse_downgrade = true;
      EXPECT_TRUE(p->Save().ok());
    }
    ConnectOptions o;
    o.server = absl::StrCat("127.0.0.1:", port_);
    o.insecure = true;
    o.deadline = absl::Seconds(5);
    auto c = Client::Create(*p, o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }
  // Waits for the next event of `stream`.
  std::optional<Event> NextEvent(ReceiveStream& stream) {
    auto ev = stream.Next(absl::Seconds(5));
    EXPECT_TRUE(ev.ok()) << ev.status();
    if (!ev.ok() || !ev->has_value()) return std::nullopt;
    return **ev;
  }

  TempDir tmp_;
  std::unique_ptr<core::StatementSigner> signer_;
  std::unique_ptr<core::StatementSigner> other_;
  ServerState state_;
  Accounts accounts_{&state_};
  Conversations conversations_{&state_};
  Messaging messaging_{&state_};
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string dir_;
};

TEST_F(DowngradeTest, RegisterPinsTheServerKey) {
  auto client = RegisteredClient();
  ASSERT_NE(client, nullptr);
  auto p = Profile::Load(dir_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->server_signing_key, signer_->public_key());
  EXPECT_EQ(p->server_key_id, signer_->key_id());
  struct stat st;
  ASSERT_EQ(::stat(p->credentials_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  ASSERT_NE(client->statement_verifier(), nullptr);
  EXPECT_NE(Reopen()->statement_verifier(), nullptr);
}

TEST_F(DowngradeTest, TamperedTransportStateIsRefused) {
  auto client = RegisteredClient();
  ASSERT_NE(client, nullptr);
  const v1::SecurityState e2ee = State("c_1", 2, SECURITY_MODE_E2EE,
                                       signer_.get());
  Serve("c_1", e2ee);
  ASSERT_TRUE(client->GetConversation("c_1").ok());
  EXPECT_TRUE(client->SeenAsE2ee("c_1"));

  // Three ways to tamper: old signature kept, unsigned, another key.
  v1::SecurityState kept = State("c_1", 3, SECURITY_MODE_TRANSPORT, nullptr);
  kept.set_signed_statement(e2ee.signed_statement());
  kept.set_signature(e2ee.signature());
  const std::vector<v1::SecurityState> forged = {
      kept, State("c_1", 3, SECURITY_MODE_TRANSPORT, nullptr),
      State("c_1", 3, SECURITY_MODE_TRANSPORT, other_.get())};
  for (const v1::SecurityState& f : forged) {
    Serve("c_1", f);
    auto conv = client->GetConversation("c_1");
    ASSERT_FALSE(conv.ok());
    EXPECT_EQ(conv.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_TRUE(absl::StrContains(conv.status().message(), "c_1"))
        << conv.status();
    EXPECT_FALSE(client->Send("c_1", "secret").ok());
    // A fresh client (no cached view) refuses too.
    auto fresh = Reopen();
    ASSERT_NE(fresh, nullptr);
    EXPECT_FALSE(fresh->Send("c_1", "secret").ok());
  }
  EXPECT_EQ(Sends(), 0u);

  // Pushed on the stream: flagged, and the view stays E2EE.
  auto stream = client->Receive();
  ASSERT_TRUE(stream.ok()) << stream.status();
  Deliver(1, "c_1", e2ee, State("c_1", 3, SECURITY_MODE_TRANSPORT,
                                other_.get()));
  std::optional<Event> ev = NextEvent(**stream);
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->kind, Event::Kind::kSecurityChange);
  EXPECT_TRUE(ev->unverifiable_state);
  EXPECT_TRUE(absl::StrContains(ev->security_warning, "c_1"));
  EXPECT_FALSE(client->Send("c_1", "secret").ok());
  EXPECT_EQ(Sends(), 0u);
}

TEST_F(DowngradeTest, VerifiedDowngradeSendsWithWarning) {
  auto client = RegisteredClient();
  ASSERT_NE(client, nullptr);
  const v1::SecurityState e2ee = State("c_1", 2, SECURITY_MODE_E2EE,
                                       signer_.get());
  Serve("c_1", e2ee);
  ASSERT_TRUE(client->GetConversation("c_1").ok());

  const v1::SecurityState down = State("c_1", 3, SECURITY_MODE_TRANSPORT,
                                       signer_.get());
  Serve("c_1", down);
  auto stream = client->Receive();
  ASSERT_TRUE(stream.ok()) << stream.status();
  Deliver(1, "c_1", e2ee, down);
  std::optional<Event> ev = NextEvent(**stream);
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->kind, Event::Kind::kSecurityChange);
  EXPECT_FALSE(ev->unverifiable_state) << ev->security_warning;

  auto sent = client->Send("c_1", "hello");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_TRUE(sent->downgrade_warning);
  EXPECT_EQ(sent->protection, Protection::kTransport);
  EXPECT_EQ(Sends(), 1u);

  // A conversation never E2EE: no warning.
  Serve("c_2", State("c_2", 1, SECURITY_MODE_TRANSPORT, signer_.get()));
  auto plain = client->Send("c_2", "hi");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->downgrade_warning);

  // refuse_downgrade: the same verified downgrade is refused.
  stream->reset();
  client.reset();
  auto strict = Reopen(/*refuse_downgrade=*/true);
  ASSERT_NE(strict, nullptr);
  auto refused = strict->Send("c_1", "hello");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();
  EXPECT_EQ(Sends(), 2u);
}

TEST_F(DowngradeTest, ReplayedOlderStateIsIgnored) {
  auto client = RegisteredClient();
  ASSERT_NE(client, nullptr);
  // Genuine history: transport at epoch 1, E2EE at epoch 2.
  const v1::SecurityState old_plain = State("c_1", 1, SECURITY_MODE_TRANSPORT,
                                            signer_.get());
  const v1::SecurityState e2ee = State("c_1", 2, SECURITY_MODE_E2EE,
                                       signer_.get());
  Serve("c_1", e2ee);
  ASSERT_TRUE(client->GetConversation("c_1").ok());

  // The server replays the epoch-1 statement: silently ignored.
  Serve("c_1", old_plain);
  auto conv = client->GetConversation("c_1");
  EXPECT_TRUE(conv.ok()) << conv.status();
  std::optional<RememberedSecurity> rem =
      client->statement_verifier()->Remembered("c_1");
  ASSERT_TRUE(rem.has_value());
  EXPECT_EQ(rem->epoch, 2u);
  EXPECT_EQ(rem->mode, SECURITY_MODE_E2EE);
  // Not used: still E2EE for this client (no engine -> no plaintext).
  EXPECT_FALSE(client->Send("c_1", "secret").ok());
  auto fresh = Reopen();
  ASSERT_NE(fresh, nullptr);
  EXPECT_FALSE(fresh->Send("c_1", "secret").ok());

  // On the stream: a replayed change is neither applied nor flagged.
  auto stream = client->Receive();
  ASSERT_TRUE(stream.ok()) << stream.status();
  Deliver(1, "c_1", e2ee, old_plain);
  std::optional<Event> ev = NextEvent(**stream);
  ASSERT_TRUE(ev.has_value());
  EXPECT_FALSE(ev->unverifiable_state);
  EXPECT_FALSE(client->Send("c_1", "secret").ok());
  EXPECT_EQ(Sends(), 0u);
}

}  // namespace
}  // namespace parley
