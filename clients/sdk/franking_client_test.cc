// Message franking in the SDK: the commitment a sending Client attaches
// verifies on the receiving Client, a tampered one marks the message
// unreportable, reports carry the reveal from the FrankingStore, and the
// store round-trips and stays bounded. Also the display of the in-band
// notices. A fake gRPC server and a pass-through E2eeEngine (the inner
// envelope without Signal encryption; SignalEngine's own handling of the
// franking fields is covered in e2ee_engine_test.cc).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api/parley/franking/franking.h"
#include "clients/sdk/client.h"
#include "clients/sdk/display.h"
#include "clients/sdk/e2ee_format.h"
#include "clients/sdk/franking_store.h"
#include "clients/sdk/parse.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "parley/v1/parley.grpc.pb.h"

namespace parley {
namespace {

using ::testing::HasSubstr;

std::string TempDir(const char* name) {
  std::string tmpl = absl::StrCat(
      ::testing::TempDir().empty() ? "/tmp" : ::testing::TempDir(), "/", name,
      ".XXXXXX");
  EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

uint32_t ModeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

// ------------------------------------------------------- inner envelope

TEST(FrankingEnvelopeTest, RoundTripsKeyAndTimestamp) {
  for (int64_t t : {int64_t{1}, int64_t{1714550400123}, int64_t{-5}}) {
    InnerEnvelope e;
    e.conversation_id = "c_1";
    e.content_type = "text/plain";
    e.content = "hello";
    e.franking_key = std::string(32, '\x5a');
    e.sent_at_ms = t;
    const std::string bytes = EncodeInnerEnvelope(e);
    EXPECT_EQ(bytes.size() % InnerEnvelope::kPadBlock, 0u);
    auto d = DecodeInnerEnvelope(bytes);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->franking_key, e.franking_key);
    EXPECT_EQ(d->sent_at_ms, t);
    EXPECT_EQ(d->content, "hello");
  }
  // Unknown fields after the franking ones are still skipped.
  InnerEnvelope e;
  e.conversation_id = "c_1";
  e.franking_key = std::string(32, '\x01');
  e.sent_at_ms = 42;
  std::string bytes = EncodeInnerEnvelope(e);
  bytes += std::string("\x42\x03" "abc", 5);  // field 8, bytes
  auto d = DecodeInnerEnvelope(bytes);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->sent_at_ms, 42);
  // A wrong wire type for field 7 is malformed.
  InnerEnvelope plain;
  plain.conversation_id = "c_1";
  std::string bad = EncodeInnerEnvelope(plain) + std::string("\x3a\x01x", 3);
  EXPECT_FALSE(DecodeInnerEnvelope(bad).ok());
}

// --------------------------------------------------------- franking store

FrankingRecord Record(const std::string& conv, uint64_t seq) {
  FrankingRecord r;
  r.conversation_id = conv;
  r.seq = seq;
  r.content_type = "text/plain";
  r.content = absl::StrCat("binary\n\0\xff", seq);
  r.franking_key = std::string(32, static_cast<char>(seq));
  r.sent_at_ms = 1000 + static_cast<int64_t>(seq);
  r.sender_account_id = "a_alice";
  r.sender_device_id = 2;
  r.client_message_id = absl::StrCat("cmid-", seq);
  r.server_time_ms = 2000 + static_cast<int64_t>(seq);
  r.commitment = std::string(32, 'C');
  r.stamp = std::string(32, 'S');
  r.commitment_ok = seq % 7 != 0;
  return r;
}

TEST(FrankingStoreTest, RoundTripsAndIsPrivate) {
  const std::string root = TempDir("franking_store");
  FrankingStore store(root + "/franking");
  EXPECT_TRUE(absl::IsNotFound(store.Get("c_a", 1).status()));
  const FrankingRecord in = Record("c_a", 3);
  ASSERT_TRUE(store.Put(in).ok());
  ASSERT_TRUE(store.Put(Record("c_b", 3)).ok());
  auto out = store.Get("c_a", 3);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->conversation_id, "c_a");
  EXPECT_EQ(out->seq, 3u);
  EXPECT_EQ(out->content_type, in.content_type);
  EXPECT_EQ(out->content, in.content);
  EXPECT_EQ(out->franking_key, in.franking_key);
  EXPECT_EQ(out->sent_at_ms, in.sent_at_ms);
  EXPECT_EQ(out->sender_account_id, in.sender_account_id);
  EXPECT_EQ(out->sender_device_id, in.sender_device_id);
  EXPECT_EQ(out->client_message_id, in.client_message_id);
  EXPECT_EQ(out->server_time_ms, in.server_time_ms);
  EXPECT_EQ(out->commitment, in.commitment);
  EXPECT_EQ(out->stamp, in.stamp);
  EXPECT_TRUE(out->commitment_ok);
  const v1::FrankingReveal reveal = out->ToReveal();
  EXPECT_EQ(reveal.franking_key(), in.franking_key);
  EXPECT_EQ(reveal.franking_stamp(), in.stamp);
  EXPECT_EQ(reveal.client_message_id(), in.client_message_id);
  // A later Put of the same seq replaces it.
  FrankingRecord changed = in;
  changed.commitment_ok = false;
  ASSERT_TRUE(store.Put(changed).ok());
  EXPECT_FALSE(store.Get("c_a", 3)->commitment_ok);
  EXPECT_EQ(store.Seqs("c_a"), std::vector<uint64_t>{3});
  // Private files; a torn line is skipped.
  EXPECT_EQ(ModeOf(root + "/franking"), 0700u);
  const std::string file = root + "/franking/" + HexEncode("c_a");
  EXPECT_EQ(ModeOf(file), 0600u);
  {
    std::ofstream torn(file, std::ios::app);
    torn << "{\"seq\": 9, \"content";
  }
  EXPECT_TRUE(store.Get("c_a", 3).ok());
  EXPECT_TRUE(absl::IsNotFound(store.Get("c_a", 9).status()));
  // The content never appears in plain text in the file (base64).
  std::ifstream f(file);
  std::string all((std::istreambuf_iterator<char>(f)),
                  std::istreambuf_iterator<char>());
  EXPECT_EQ(all.find("binary"), std::string::npos);
  std::filesystem::remove_all(root);
}

TEST(FrankingStoreTest, IsBoundedPerConversation) {
  const std::string root = TempDir("franking_bound");
  FrankingStore store(root, /*max_per_conversation=*/5);
  for (uint64_t seq = 1; seq <= 40; ++seq) {
    ASSERT_TRUE(store.Put(Record("c_a", seq)).ok());
  }
  ASSERT_TRUE(store.Put(Record("c_b", 1)).ok());
  EXPECT_EQ(store.Seqs("c_a"), (std::vector<uint64_t>{36, 37, 38, 39, 40}));
  EXPECT_TRUE(absl::IsNotFound(store.Get("c_a", 35).status()));
  EXPECT_TRUE(store.Get("c_a", 40).ok());
  EXPECT_EQ(store.Seqs("c_b"), std::vector<uint64_t>{1});
  // The file itself is compacted: never more than 2 * max lines.
  std::ifstream f(root + "/" + HexEncode("c_a"));
  int lines = 0;
  for (std::string l; std::getline(f, l);) ++lines;
  EXPECT_LE(lines, 10);
  EXPECT_EQ(FrankingStore(root).max_per_conversation(), 1000u);
  std::filesystem::remove_all(root);
}

// ------------------------------------------------------ client end to end

constexpr char kAliceToken[] =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
constexpr char kBobToken[] =
    "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
constexpr char kConv[] = "c_fr";

struct ServerState {
  absl::Mutex mu;
  std::vector<v1::SendRequest> sends;
  std::deque<v1::Envelope> for_bob;
  std::vector<v1::ReportMessageRequest> reports;
};

class Conversations final : public v1::ConversationService::Service {
 public:
  grpc::Status GetConversation(grpc::ServerContext*,
                               const v1::GetConversationRequest* req,
                               v1::GetConversationResponse* resp) override {
    v1::Conversation* c = resp->mutable_conversation();
    c->set_conversation_id(req->conversation_id());
    c->set_kind(v1::CONVERSATION_KIND_DIRECT);
    c->add_members()->set_account_id("a_alice");
    c->add_members()->set_account_id("a_bob");
    c->mutable_security()->set_mode(v1::SECURITY_MODE_E2EE);
    c->mutable_security()->set_epoch(1);
    return grpc::Status::OK;
  }
};

class Messaging final : public v1::MessagingService::Service {
 public:
  explicit Messaging(ServerState* s) : s_(s) {}
  grpc::Status Send(grpc::ServerContext*, const v1::SendRequest* req,
                    v1::SendResponse* resp) override {
    absl::MutexLock l(&s_->mu);
    s_->sends.push_back(*req);
    resp->set_seq(s_->sends.size());
    resp->set_server_time_ms(5000);
    return grpc::Status::OK;
  }
  grpc::Status Ack(grpc::ServerContext*, const v1::AckRequest* req,
                   v1::AckResponse* resp) override {
    resp->set_removed(req->delivery_ids_size());
    return grpc::Status::OK;
  }
  grpc::Status Receive(grpc::ServerContext* ctx, const v1::ReceiveRequest*,
                       grpc::ServerWriter<v1::ReceiveResponse>* w) override {
    std::deque<v1::Envelope> items;
    {
      absl::MutexLock l(&s_->mu);
      items.swap(s_->for_bob);
    }
    for (const v1::Envelope& e : items) {
      v1::ReceiveResponse r;
      *r.mutable_envelope() = e;
      w->Write(r);
    }
    while (!ctx->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
    return grpc::Status::CANCELLED;
  }
  // Accepts E2EE reports only when the reveal's content matches its
  // commitment (what parleyd checks, without the stamp).
  grpc::Status ReportMessage(grpc::ServerContext*,
                             const v1::ReportMessageRequest* req,
                             v1::ReportMessageResponse* resp) override {
    absl::MutexLock l(&s_->mu);
    s_->reports.push_back(*req);
    if (req->has_reveal()) {
      const v1::FrankingReveal& r = req->reveal();
      franking::CommitInput in;
      in.conversation_id = req->conversation_id();
      in.sender_account_id = r.sender_account_id();
      in.sender_device_id = r.sender_device_id();
      in.client_message_id = r.client_message_id();
      in.sent_at_ms = r.sent_at_ms();
      in.content_type = r.content_type();
      in.content = r.content();
      auto c = franking::Commit(r.franking_key(), in);
      if (!c.ok() || !franking::Equal(*c, r.franking_commitment())) {
        return {grpc::StatusCode::INVALID_ARGUMENT, "franking check failed"};
      }
      resp->set_franking_verified(true);
    }
    resp->set_report_id(absl::StrCat("r_", s_->reports.size()));
    return grpc::Status::OK;
  }

 private:
  ServerState* s_;
};

// The inner envelope without encryption: one "ciphertext" per member
// account's device 1 (this account excluded).
class PassThroughEngine final : public E2eeEngine {
 public:
  absl::Status MaintainKeys(E2eeHost&, bool) override {
    return absl::OkStatus();
  }
  absl::StatusOr<v1::EncryptedBody> Encrypt(
      E2eeHost& host, const v1::Conversation& conversation,
      const E2eeContent& content) override {
    InnerEnvelope env;
    env.conversation_id = conversation.conversation_id();
    env.content_type = content.content_type;
    env.content = content.content;
    env.franking_key = content.franking_key;
    env.sent_at_ms = content.sent_at_ms;
    v1::EncryptedBody body;
    for (const v1::Member& m : conversation.members()) {
      if (m.account_id() == host.account_id()) continue;
      v1::DeviceCiphertext* ct = body.add_ciphertexts();
      ct->set_account_id(m.account_id());
      ct->set_device_id(1);
      ct->set_type(2);
      ct->set_ciphertext(EncodeInnerEnvelope(env));
    }
    return body;
  }
  absl::Status RepairSessions(E2eeHost&, const v1::DeviceMismatch&) override {
    return absl::OkStatus();
  }
  absl::StatusOr<E2eeContent> Decrypt(E2eeHost&,
                                      const v1::Message& message) override {
    auto env = DecodeInnerEnvelope(message.ciphertext().ciphertext());
    if (!env.ok()) return env.status();
    E2eeContent out;
    out.content_type = env->content_type.empty() ? "text/plain"
                                                 : env->content_type;
    out.committed_content_type = env->content_type;
    out.content = env->content;
    out.franking_key = env->franking_key;
    out.sent_at_ms = env->sent_at_ms;
    return out;
  }
};

class FrankingClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port_);
    b.RegisterService(&conversations_);
    b.RegisterService(&messaging_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    root_ = TempDir("franking_client");
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(1));
    std::filesystem::remove_all(root_);
  }

  std::unique_ptr<Client> NewClient(const std::string& account,
                                    uint32_t device, const char* token) {
    Profile p;
    p.dir = absl::StrCat(root_, "/", account);
    p.account_id = account;
    p.device_id = device;
    p.device_token = token;
    ConnectOptions o;
    o.server = absl::StrCat("127.0.0.1:", port_);
    o.insecure = true;
    o.deadline = absl::Seconds(5);
    o.e2ee = std::make_shared<PassThroughEngine>();
    auto c = Client::Create(std::move(p), std::move(o));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // What the server delivers to bob for alice's `send` (seq `seq`).
  static v1::Envelope Deliver(const v1::SendRequest& send, uint64_t seq) {
    v1::Envelope e;
    e.set_delivery_id(seq);
    v1::Message* m = e.mutable_message();
    m->set_conversation_id(send.conversation_id());
    m->set_seq(seq);
    m->set_sender_account_id("a_alice");
    m->set_sender_device_id(2);
    m->set_client_message_id(send.client_message_id());
    m->set_server_time_ms(5000 + static_cast<int64_t>(seq));
    *m->mutable_ciphertext() = send.body().encrypted().ciphertexts(0);
    m->set_franking_commitment(send.body().encrypted().franking_commitment());
    m->set_franking_stamp(std::string(32, 'S'));
    return e;
  }

  std::vector<Event> ReceiveMessages(Client& bob, size_t n) {
    std::vector<Event> out;
    auto stream = bob.Receive();
    EXPECT_TRUE(stream.ok()) << stream.status();
    if (!stream.ok()) return out;
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (out.size() < n && absl::Now() < deadline) {
      auto ev = (*stream)->Next(absl::Milliseconds(100));
      if (!ev.ok()) break;
      if (ev->has_value() && (*ev)->kind == Event::Kind::kMessage) {
        out.push_back(**ev);
      }
    }
    (*stream)->Close();
    return out;
  }

  ServerState state_;
  Conversations conversations_;
  Messaging messaging_{&state_};
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string root_;
};

TEST_F(FrankingClientTest, SendCommitsReceiveVerifiesAndReportReveals) {
  auto alice = NewClient("a_alice", 2, kAliceToken);
  auto bob = NewClient("a_bob", 1, kBobToken);
  ASSERT_TRUE(alice && bob);
  const int64_t before = absl::ToUnixMillis(absl::Now());
  auto sent = alice->Send(kConv, "hello bob");
  ASSERT_TRUE(sent.ok()) << sent.status();
  auto sent2 = alice->Send(kConv, "second");
  ASSERT_TRUE(sent2.ok()) << sent2.status();
  v1::SendRequest req, req2;
  {
    absl::MutexLock l(&state_.mu);
    ASSERT_EQ(state_.sends.size(), 2u);
    req = state_.sends[0];
    req2 = state_.sends[1];
  }
  // The commitment is beside the ciphertexts; the key and the timestamp
  // are inside, and the commitment covers the sender's own identity.
  const std::string& c = req.body().encrypted().franking_commitment();
  ASSERT_EQ(c.size(), franking::kCommitmentBytes);
  auto env = DecodeInnerEnvelope(req.body().encrypted().ciphertexts(0)
                                     .ciphertext());
  ASSERT_TRUE(env.ok());
  ASSERT_EQ(env->franking_key.size(), franking::kKeyBytes);
  EXPECT_GE(env->sent_at_ms, before);
  EXPECT_LE(env->sent_at_ms, absl::ToUnixMillis(absl::Now()));
  franking::CommitInput in{kConv, "a_alice", 2, req.client_message_id(),
                           env->sent_at_ms, "text/plain", "hello bob"};
  EXPECT_TRUE(franking::Equal(*franking::Commit(env->franking_key, in), c));
  // A fresh key per message.
  auto env2 = DecodeInnerEnvelope(req2.body().encrypted().ciphertexts(0)
                                      .ciphertext());
  ASSERT_TRUE(env2.ok());
  EXPECT_NE(env2->franking_key, env->franking_key);

  // Delivered: #1 intact, #2 with a commitment that does not match.
  {
    absl::MutexLock l(&state_.mu);
    state_.for_bob.push_back(Deliver(req, 1));
    v1::Envelope tampered = Deliver(req2, 2);
    std::string bad = tampered.message().franking_commitment();
    bad[0] ^= 1;
    tampered.mutable_message()->set_franking_commitment(bad);
    state_.for_bob.push_back(tampered);
  }
  std::vector<Event> events = ReceiveMessages(*bob, 2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].text, "hello bob");
  EXPECT_TRUE(events[0].reportable);
  EXPECT_TRUE(events[0].unreportable.empty());
  // Still shown, but marked.
  EXPECT_EQ(events[1].text, "second");
  EXPECT_FALSE(events[1].reportable);
  EXPECT_EQ(events[1].unreportable,
            "unreportable: franking commitment does not match");

  // Kept for reports, in the profile.
  ASSERT_NE(bob->franking_store(), nullptr);
  EXPECT_EQ(bob->franking_store()->dir(), root_ + "/a_bob/franking");
  auto rec = bob->franking_store()->Get(kConv, 1);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->franking_key, env->franking_key);
  EXPECT_EQ(rec->server_time_ms, 5001);
  EXPECT_EQ(rec->stamp, std::string(32, 'S'));

  // Report #1: the reveal checks.
  auto report = bob->ReportMessage(kConv, 1, v1::REPORT_REASON_HARASSMENT,
                                   "please look");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->report_id, "r_1");
  EXPECT_TRUE(report->franking_verified);
  EXPECT_TRUE(report->revealed);
  {
    absl::MutexLock l(&state_.mu);
    ASSERT_EQ(state_.reports.size(), 1u);
    const v1::ReportMessageRequest& r = state_.reports[0];
    EXPECT_EQ(r.seq(), 1u);
    EXPECT_EQ(r.reason(), v1::REPORT_REASON_HARASSMENT);
    EXPECT_EQ(r.comment(), "please look");
    EXPECT_EQ(r.reveal().content(), "hello bob");
    EXPECT_EQ(r.reveal().sender_account_id(), "a_alice");
    EXPECT_EQ(r.reveal().sender_device_id(), 2u);
    EXPECT_EQ(r.reveal().client_message_id(), req.client_message_id());
    EXPECT_EQ(r.reveal().server_time_ms(), 5001);
    EXPECT_EQ(r.reveal().franking_commitment(), c);
    EXPECT_EQ(r.reveal().franking_stamp(), std::string(32, 'S'));
  }
  // #2 is unreportable: refused locally, nothing sent.
  auto refused = bob->ReportMessage(kConv, 2, v1::REPORT_REASON_SPAM, "");
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("unreportable"));
  // Not received end-to-end encrypted here: a transport-mode report.
  auto transport = bob->ReportMessage(kConv, 9, v1::REPORT_REASON_OTHER, "");
  ASSERT_TRUE(transport.ok()) << transport.status();
  EXPECT_FALSE(transport->revealed);
  EXPECT_FALSE(transport->franking_verified);
  {
    absl::MutexLock l(&state_.mu);
    ASSERT_EQ(state_.reports.size(), 2u);
    EXPECT_FALSE(state_.reports[1].has_reveal());
  }
  // Local validation.
  EXPECT_TRUE(absl::IsInvalidArgument(
      bob->ReportMessage(kConv, 1, v1::REPORT_REASON_UNSPECIFIED, "")
          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      bob->ReportMessage(kConv, 0, v1::REPORT_REASON_SPAM, "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      bob->ReportMessage(kConv, 1, v1::REPORT_REASON_SPAM,
                         std::string(1001, 'x'))
          .status()));
}

TEST_F(FrankingClientTest, MissingCommitmentOrKeyIsUnreportable) {
  auto bob = NewClient("a_bob", 1, kBobToken);
  InnerEnvelope env;
  env.conversation_id = kConv;
  env.content = "no franking";  // an old client: no key, no commitment
  v1::SendRequest send;
  send.set_conversation_id(kConv);
  send.set_client_message_id("old-1");
  v1::DeviceCiphertext* ct = send.mutable_body()->mutable_encrypted()
                                 ->add_ciphertexts();
  ct->set_type(2);
  ct->set_ciphertext(EncodeInnerEnvelope(env));
  {
    absl::MutexLock l(&state_.mu);
    v1::Envelope e = Deliver(send, 4);
    e.mutable_message()->clear_franking_commitment();
    state_.for_bob.push_back(e);
  }
  std::vector<Event> events = ReceiveMessages(*bob, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].text, "no franking");
  EXPECT_FALSE(events[0].reportable);
  EXPECT_THAT(events[0].unreportable, HasSubstr("does not match"));
}

// ---------------------------------------------------------------- display

TEST(NoticeDisplayTest, AccessAndModerationNotices) {
  auto names = [](absl::string_view id) { return std::string(id); };
  v1::Message m;
  m.set_conversation_id("c_ab");
  m.set_seq(12);
  v1::AccessNotice* a = m.mutable_access_notice();
  a->set_kind(v1::AccessNotice::KIND_MODERATION_REVIEW);
  a->set_message_count(1);
  a->set_accessed_at_ms(1714557600000);
  a->set_text("a moderator read 1 reported message\x1b[31m");
  std::string line = FormatMessageLine(m, names);
  EXPECT_THAT(line, HasSubstr("*** STAFF ACCESS: a moderator read 1 reported "
                              "message"));
  EXPECT_EQ(line.find('\x1b'), std::string::npos);
  EXPECT_THAT(line, HasSubstr("conversation: c_ab (1 message read)"));
  EXPECT_THAT(line, HasSubstr("accessed: 2024-05-01T10:00:00Z"));
  nlohmann::json j = MessageJson(m, names);
  EXPECT_EQ(j["type"], "access_notice");
  EXPECT_EQ(j["kind"], "moderation_review");
  EXPECT_EQ(j["message_count"], 1);

  v1::Message w;
  w.set_conversation_id("c_ab");
  w.set_seq(13);
  w.mutable_moderation_notice()->set_kind(v1::ModerationNotice::KIND_WARNING);
  w.mutable_moderation_notice()->set_seq(5);
  w.mutable_moderation_notice()->set_text("do not spam");
  line = FormatMessageLine(w, names);
  EXPECT_THAT(line, HasSubstr("*** MODERATION WARNING: do not spam"));
  EXPECT_THAT(line, HasSubstr("conversation: c_ab, message #5"));
  EXPECT_EQ(MessageJson(w, names)["kind"], "warning");
  w.mutable_moderation_notice()->set_kind(
      v1::ModerationNotice::KIND_MESSAGE_REMOVED);
  EXPECT_THAT(FormatMessageLine(w, names),
              HasSubstr("*** MESSAGE REMOVED by moderators: do not spam"));
  EXPECT_EQ(MessageJson(w, names)["message_seq"], 5);
}

TEST(ReportReasonTest, ParsesTheNineReasons) {
  EXPECT_EQ(*ParseReportReason("spam"), v1::REPORT_REASON_SPAM);
  EXPECT_EQ(*ParseReportReason("Sexual_Content"),
            v1::REPORT_REASON_SEXUAL_CONTENT);
  EXPECT_EQ(*ParseReportReason("child-safety"), v1::REPORT_REASON_CHILD_SAFETY);
  EXPECT_EQ(*ParseReportReason("self_harm"), v1::REPORT_REASON_SELF_HARM);
  EXPECT_EQ(*ParseReportReason("other"), v1::REPORT_REASON_OTHER);
  EXPECT_FALSE(ParseReportReason("rude").ok());
  EXPECT_FALSE(ParseReportReason("").ok());
  EXPECT_STREQ(ReportReasonName(v1::REPORT_REASON_FRAUD), "fraud");
}

}  // namespace
}  // namespace parley
