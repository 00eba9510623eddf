// Integration tests: the real server (TLS, RocksDB on a temp directory,
// port 0) driven over gRPC. Every RPC's success and error paths.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <grpcpp/generic/generic_stub.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/server.h"
#include "core/tls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/api_client.h"

namespace parley {
namespace {

using ::parley::testing::ApiClient;
using ::parley::testing::Device;
using ::parley::testing::Stream;
using ::testing::HasSubstr;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_it_XXXXXX";
    dir_ = mkdtemp(tmpl);
    Start();
  }
  void TearDown() override {
    client_.reset();
    if (server_) server_->Shutdown();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Start() {
    core::ServerOptions o;
    o.data_dir = dir_;
    o.listen = "127.0.0.1:0";
    o.admin_listen = "127.0.0.1:0";
    o.limits = limits_;
    o.policy_file = policy_file_;
    o.sync = sync_;
    o.clock = [this] { return now_ms_.load() + offset_ms_.load(); };
    auto s = core::Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto ca = core::ReadFile(server_->ca_cert_path());
    ASSERT_TRUE(ca.ok());
    ca_pem_ = *ca;
    client_ = std::make_unique<ApiClient>(
        testing::MakeChannel("127.0.0.1:" + std::to_string(server_->port()), ca_pem_));
  }
  void Restart() {
    client_.reset();
    server_->Shutdown();
    server_.reset();
    Start();
  }
  Device Reg(const std::string& name) {
    Device d;
    grpc::Status s = client_->Register(name, &d);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return d;
  }
  std::string DirectId(const Device& a, const Device& b) {
    v1::Conversation c;
    EXPECT_TRUE(client_->Direct(a, b.username, &c).ok());
    return c.conversation_id();
  }
  std::string Group(const Device& admin, const std::vector<std::string>& members, const std::string& title = "g") {
    v1::CreateGroupRequest req;
    req.set_title(title);
    for (const auto& m : members) req.add_member_usernames(m);
    v1::CreateGroupResponse resp;
    auto ctx = client_->Ctx(admin);
    grpc::Status s = client_->conversations->CreateGroup(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.conversation().conversation_id();
  }
  // Reads envelopes until one that carries plain text, within a bound.
  std::string NextText(Stream& st, v1::Envelope* env = nullptr) {
    v1::Envelope e;
    for (int i = 0; i < 100 && st.NextEnvelope(&e); ++i) {
      if (e.message().has_plain()) {
        if (env) *env = e;
        return e.message().plain().content();
      }
    }
    return "<no message>";
  }

  std::string dir_;
  std::string ca_pem_;
  core::Limits limits_;
  std::string policy_file_;
  bool sync_ = false;
  std::atomic<int64_t> now_ms_{std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()};
  std::atomic<int64_t> offset_ms_{0};
  std::unique_ptr<core::Server> server_;
  std::unique_ptr<ApiClient> client_;
};

// ------------------------------------------------------------ accounts

TEST_F(ServerTest, CreateAccountAndConflicts) {
  Device a;
  v1::AccountAttributes attrs;
  attrs.set_kind(v1::ACCOUNT_KIND_BUSINESS);
  attrs.set_age_band(v1::AGE_BAND_ADULT);
  attrs.set_region_code("DE");
  ASSERT_TRUE(client_->Register("Alice", &a, attrs).ok());
  EXPECT_EQ(a.username, "alice");
  EXPECT_EQ(a.device_id, 1u);
  EXPECT_EQ(a.token.size(), 64u);

  Device dup;
  grpc::Status s = client_->Register("ALICE", &dup);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("alice"));

  v1::GetAccountRequest g;
  g.set_username("alice");
  v1::GetAccountResponse gr;
  auto ctx = client_->Ctx(a);
  ASSERT_TRUE(client_->accounts->GetAccount(ctx.get(), g, &gr).ok());
  EXPECT_EQ(gr.account().attributes().kind(), v1::ACCOUNT_KIND_BUSINESS);
  EXPECT_EQ(gr.account().attributes().region_code(), "DE");
  // Others see the kind and organization, not age band or region.
  Device b;
  ASSERT_TRUE(client_->Register("bob", &b).ok());
  auto bctx = client_->Ctx(b);
  ASSERT_TRUE(client_->accounts->GetAccount(bctx.get(), g, &gr).ok());
  EXPECT_EQ(gr.account().attributes().kind(), v1::ACCOUNT_KIND_BUSINESS);
  EXPECT_EQ(gr.account().attributes().region_code(), "");
  EXPECT_EQ(gr.account().attributes().age_band(), v1::AGE_BAND_UNSPECIFIED);
}

TEST_F(ServerTest, CreateAccountInvalidInputNamesTheField) {
  struct Case {
    std::function<void(v1::CreateAccountRequest*)> mutate;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](auto* r) { r->set_username(""); }, "username"},
      {[](auto* r) { r->set_username("ab"); }, "username"},
      {[](auto* r) { r->set_username("9lives"); }, "username"},
      {[](auto* r) { r->set_username("bad name"); }, "username"},
      {[](auto* r) { r->set_display_name(std::string(65, 'x')); }, "display_name"},
      {[](auto* r) { r->mutable_attributes()->set_kind(static_cast<v1::AccountKind>(42)); }, "attributes.kind"},
      {[](auto* r) { r->mutable_attributes()->set_age_band(static_cast<v1::AgeBand>(9)); }, "attributes.age_band"},
      {[](auto* r) { r->mutable_attributes()->set_region_code("Germany"); }, "attributes.region_code"},
      {[](auto* r) { r->set_device_name("tab\there"); }, "device_name"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    v1::CreateAccountRequest req;
    req.set_username("valid_user" + std::to_string(i));
    cases[i].mutate(&req);
    v1::CreateAccountResponse resp;
    auto ctx = ApiClient::Ctx("");
    grpc::Status s = client_->accounts->CreateAccount(ctx.get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << i;
    EXPECT_THAT(s.error_message(), HasSubstr(cases[i].field)) << i;
  }
}

TEST_F(ServerTest, AuthenticationFailures) {
  Device a = Reg("alice");
  v1::ListDevicesResponse resp;
  {
    auto ctx = ApiClient::Ctx("");
    grpc::Status s = client_->accounts->ListDevices(ctx.get(), {}, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(s.error_message(), HasSubstr("missing authorization"));
  }
  {
    auto ctx = ApiClient::Ctx("not-hex");
    grpc::Status s = client_->accounts->ListDevices(ctx.get(), {}, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(s.error_message(), HasSubstr("malformed"));
  }
  {
    auto ctx = ApiClient::Ctx(std::string(64, 'a'));
    grpc::Status s = client_->accounts->ListDevices(ctx.get(), {}, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(s.error_message(), HasSubstr("unknown or revoked"));
  }
  // A stream without a token is refused too.
  Device nobody;
  nobody.token = "";
  Stream st(*client_, nobody);
  v1::ReceiveResponse r;
  EXPECT_FALSE(st.Read(&r));
  EXPECT_EQ(st.Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServerTest, GetAccountErrors) {
  Device a = Reg("alice");
  v1::GetAccountResponse resp;
  v1::GetAccountRequest req;
  auto c1 = client_->Ctx(a);
  EXPECT_EQ(client_->accounts->GetAccount(c1.get(), req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  req.set_username("nobody");
  auto c2 = client_->Ctx(a);
  grpc::Status s = client_->accounts->GetAccount(c2.get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("nobody"));
  req.set_account_id("a_123");
  auto c3 = client_->Ctx(a);
  EXPECT_EQ(client_->accounts->GetAccount(c3.get(), req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerTest, DeviceLinkListRemove) {
  Device a1 = Reg("alice");
  Device a2;
  ASSERT_TRUE(client_->Link(a1, &a2).ok());
  EXPECT_EQ(a2.account_id, a1.account_id);
  EXPECT_EQ(a2.device_id, 2u);
  v1::ListDevicesResponse devs;
  auto c1 = client_->Ctx(a2);
  ASSERT_TRUE(client_->accounts->ListDevices(c1.get(), {}, &devs).ok());
  EXPECT_EQ(devs.devices_size(), 2);

  // A link code works once.
  v1::CreateDeviceLinkResponse code;
  auto c2 = client_->Ctx(a1);
  ASSERT_TRUE(client_->accounts->CreateDeviceLink(c2.get(), {}, &code).ok());
  v1::LinkDeviceRequest lr;
  lr.set_link_code(code.link_code());
  v1::LinkDeviceResponse lresp;
  auto c3 = ApiClient::Ctx("");
  ASSERT_TRUE(client_->accounts->LinkDevice(c3.get(), lr, &lresp).ok());
  auto c4 = ApiClient::Ctx("");
  EXPECT_EQ(client_->accounts->LinkDevice(c4.get(), lr, &lresp).error_code(), grpc::StatusCode::NOT_FOUND);
  lr.set_link_code("short");
  auto c5 = ApiClient::Ctx("");
  EXPECT_EQ(client_->accounts->LinkDevice(c5.get(), lr, &lresp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Remove device 2: its token stops working.
  v1::RemoveDeviceRequest rm;
  rm.set_device_id(2);
  v1::RemoveDeviceResponse rmr;
  auto c6 = client_->Ctx(a1);
  ASSERT_TRUE(client_->accounts->RemoveDevice(c6.get(), rm, &rmr).ok());
  auto c7 = client_->Ctx(a2);
  EXPECT_EQ(client_->accounts->ListDevices(c7.get(), {}, &devs).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  auto c8 = client_->Ctx(a1);
  EXPECT_EQ(client_->accounts->RemoveDevice(c8.get(), rm, &rmr).error_code(), grpc::StatusCode::NOT_FOUND);
  rm.set_device_id(0);
  auto c9 = client_->Ctx(a1);
  EXPECT_EQ(client_->accounts->RemoveDevice(c9.get(), rm, &rmr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerTest, CannotRemoveOnlyDeviceAndDeviceLimit) {
  limits_.max_devices_per_account = 2;
  Restart();
  Device a1 = Reg("alice");
  v1::RemoveDeviceRequest rm;
  rm.set_device_id(1);
  v1::RemoveDeviceResponse rmr;
  auto c1 = client_->Ctx(a1);
  EXPECT_EQ(client_->accounts->RemoveDevice(c1.get(), rm, &rmr).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  Device a2, a3;
  ASSERT_TRUE(client_->Link(a1, &a2).ok());
  grpc::Status s = client_->Link(a1, &a3);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("limit 2"));
}

// ------------------------------------------------------- conversations

TEST_F(ServerTest, DirectConversationIsOnePerPair) {
  Device a = Reg("alice"), b = Reg("bob");
  v1::CreateDirectRequest req;
  req.set_peer_username("bob");
  v1::CreateDirectResponse r1, r2, r3;
  auto c1 = client_->Ctx(a);
  ASSERT_TRUE(client_->conversations->CreateDirect(c1.get(), req, &r1).ok());
  EXPECT_TRUE(r1.created());
  EXPECT_EQ(r1.conversation().kind(), v1::CONVERSATION_KIND_DIRECT);
  // The default preset (messenger-2016): 1:1 chats are opt-in.
  EXPECT_EQ(r1.conversation().security().mode(), v1::SECURITY_MODE_OPT_IN);
  EXPECT_EQ(r1.conversation().security().epoch(), 1u);
  EXPECT_FALSE(r1.conversation().security().rule_id().empty());
  auto c2 = client_->Ctx(a);
  ASSERT_TRUE(client_->conversations->CreateDirect(c2.get(), req, &r2).ok());
  EXPECT_FALSE(r2.created());
  EXPECT_EQ(r2.conversation().conversation_id(), r1.conversation().conversation_id());
  req.set_peer_username("alice");
  auto c3 = client_->Ctx(b);
  ASSERT_TRUE(client_->conversations->CreateDirect(c3.get(), req, &r3).ok());
  EXPECT_EQ(r3.conversation().conversation_id(), r1.conversation().conversation_id());

  auto c4 = client_->Ctx(a);
  EXPECT_EQ(client_->conversations->CreateDirect(c4.get(), req, &r3).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // yourself
  req.set_peer_username("carol");
  auto c5 = client_->Ctx(a);
  EXPECT_EQ(client_->conversations->CreateDirect(c5.get(), req, &r3).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, ConcurrentDirectCreationYieldsOneConversation) {
  Device a = Reg("alice"), b = Reg("bob");
  std::string ids[8];
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      v1::Conversation c;
      const Device& me = i % 2 ? a : b;
      client_->Direct(me, i % 2 ? "bob" : "alice", &c);
      ids[i] = c.conversation_id();
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 1; i < 8; ++i) EXPECT_EQ(ids[i], ids[0]);
}

TEST_F(ServerTest, GroupMembershipRules) {
  limits_.max_group_members = 4;
  Restart();
  Device a = Reg("alice"), b = Reg("bob"), c = Reg("carol"), d = Reg("dave"), e = Reg("erin");
  std::string g = Group(a, {"bob"});
  v1::AddMembersRequest add;
  add.set_conversation_id(g);
  add.add_usernames("carol");
  v1::AddMembersResponse ar;
  auto c1 = client_->Ctx(b);
  EXPECT_EQ(client_->conversations->AddMembers(c1.get(), add, &ar).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);  // bob is no admin
  auto c2 = client_->Ctx(a);
  ASSERT_TRUE(client_->conversations->AddMembers(c2.get(), add, &ar).ok());
  EXPECT_EQ(ar.conversation().members_size(), 3);
  auto c3 = client_->Ctx(a);
  EXPECT_EQ(client_->conversations->AddMembers(c3.get(), add, &ar).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  add.clear_usernames();
  add.add_usernames("dave");
  add.add_usernames("erin");
  auto c4 = client_->Ctx(a);
  grpc::Status s = client_->conversations->AddMembers(c4.get(), add, &ar);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("limit 4"));
  add.clear_usernames();
  add.add_usernames("nobody_here");
  auto c5 = client_->Ctx(a);
  EXPECT_EQ(client_->conversations->AddMembers(c5.get(), add, &ar).error_code(), grpc::StatusCode::NOT_FOUND);

  // Group creation over the limit.
  v1::CreateGroupRequest big;
  big.set_title("big");
  for (auto n : {"bob", "carol", "dave", "erin"}) big.add_member_usernames(n);
  v1::CreateGroupResponse br;
  auto c6 = client_->Ctx(a);
  EXPECT_EQ(client_->conversations->CreateGroup(c6.get(), big, &br).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  big.clear_member_usernames();
  big.set_title("");
  auto c7 = client_->Ctx(a);
  EXPECT_EQ(client_->conversations->CreateGroup(c7.get(), big, &br).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Remove: non-admin cannot remove others, can leave; removed member cannot send.
  v1::RemoveMemberRequest rm;
  rm.set_conversation_id(g);
  rm.set_account_id(c.account_id);
  v1::RemoveMemberResponse rr;
  auto c8 = client_->Ctx(b);
  EXPECT_EQ(client_->conversations->RemoveMember(c8.get(), rm, &rr).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  auto c9 = client_->Ctx(a);
  ASSERT_TRUE(client_->conversations->RemoveMember(c9.get(), rm, &rr).ok());
  EXPECT_EQ(client_->SendText(c, g, "m1", "still here?").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto c10 = client_->Ctx(a);
  EXPECT_EQ(client_->conversations->RemoveMember(c10.get(), rm, &rr).error_code(), grpc::StatusCode::NOT_FOUND);
  rm.set_account_id(b.account_id);
  auto c11 = client_->Ctx(b);
  ASSERT_TRUE(client_->conversations->RemoveMember(c11.get(), rm, &rr).ok());  // bob leaves

  // The last admin leaving promotes someone: here nobody else is left but
  // alice; re-add bob and let alice leave.
  add.clear_usernames();
  add.add_usernames("bob");
  auto c12 = client_->Ctx(a);
  ASSERT_TRUE(client_->conversations->AddMembers(c12.get(), add, &ar).ok());
  rm.set_account_id(a.account_id);
  auto c13 = client_->Ctx(a);
  ASSERT_TRUE(client_->conversations->RemoveMember(c13.get(), rm, &rr).ok());
  v1::GetConversationRequest gq;
  gq.set_conversation_id(g);
  v1::GetConversationResponse gr;
  auto c14 = client_->Ctx(b);
  ASSERT_TRUE(client_->conversations->GetConversation(c14.get(), gq, &gr).ok());
  ASSERT_EQ(gr.conversation().members_size(), 1);
  EXPECT_TRUE(gr.conversation().members(0).admin());

  // Direct conversations have fixed membership.
  std::string dm = DirectId(d, e);
  add.set_conversation_id(dm);
  auto c15 = client_->Ctx(d);
  EXPECT_EQ(client_->conversations->AddMembers(c15.get(), add, &ar).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServerTest, ConversationAccessIsForMembersOnly) {
  Device a = Reg("alice"), b = Reg("bob"), m = Reg("mallory");
  std::string dm = DirectId(a, b);
  v1::GetConversationRequest gq;
  gq.set_conversation_id(dm);
  v1::GetConversationResponse gr;
  auto c1 = client_->Ctx(m);
  EXPECT_EQ(client_->conversations->GetConversation(c1.get(), gq, &gr).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  gq.set_conversation_id("c_000000000000000000000000");
  auto c2 = client_->Ctx(a);
  EXPECT_EQ(client_->conversations->GetConversation(c2.get(), gq, &gr).error_code(), grpc::StatusCode::NOT_FOUND);
  gq.set_conversation_id("nonsense");
  auto c3 = client_->Ctx(a);
  EXPECT_EQ(client_->conversations->GetConversation(c3.get(), gq, &gr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::ListConversationsResponse lr;
  auto c4 = client_->Ctx(m);
  ASSERT_TRUE(client_->conversations->ListConversations(c4.get(), {}, &lr).ok());
  EXPECT_EQ(lr.conversations_size(), 0);
  auto c5 = client_->Ctx(b);
  ASSERT_TRUE(client_->conversations->ListConversations(c5.get(), {}, &lr).ok());
  ASSERT_EQ(lr.conversations_size(), 1);
  EXPECT_EQ(lr.conversations(0).members_size(), 2);
}

// ------------------------------------------------------------ messaging

TEST_F(ServerTest, SendReceiveFanOutToDevices) {
  Device a1 = Reg("alice"), b = Reg("bob");
  Device a2;
  ASSERT_TRUE(client_->Link(a1, &a2).ok());
  std::string dm = DirectId(a1, b);
  Stream bob(*client_, b), alice2(*client_, a2), alice1(*client_, a1);
  v1::SendResponse sr;
  ASSERT_TRUE(client_->SendText(a1, dm, "m1", "hello bob", &sr).ok());
  EXPECT_EQ(sr.seq(), 1u);
  EXPECT_FALSE(sr.duplicate());
  v1::Envelope e;
  EXPECT_EQ(NextText(bob, &e), "hello bob");
  EXPECT_EQ(e.message().sender_account_id(), a1.account_id);
  EXPECT_EQ(e.message().sender_device_id(), 1u);
  EXPECT_EQ(e.message().seq(), 1u);
  EXPECT_EQ(NextText(alice2), "hello bob");  // the sender's other device gets a copy
  ASSERT_TRUE(client_->SendText(b, dm, "r1", "hi alice").ok());
  EXPECT_EQ(NextText(alice1), "hi alice");  // not "hello bob": the sending device got no copy
  EXPECT_EQ(NextText(alice2), "hi alice");
}

TEST_F(ServerTest, IdempotentRetryStoresNothingTwice) {
  Device a = Reg("alice"), b = Reg("bob");
  std::string dm = DirectId(a, b);
  v1::SendResponse r1, r2;
  ASSERT_TRUE(client_->SendText(a, dm, "same-id", "once", &r1).ok());
  ASSERT_TRUE(client_->SendText(a, dm, "same-id", "once", &r2).ok());
  EXPECT_TRUE(r2.duplicate());
  EXPECT_EQ(r2.seq(), r1.seq());
  EXPECT_EQ(r2.server_time_ms(), r1.server_time_ms());
  ASSERT_TRUE(client_->SendText(a, dm, "other-id", "twice").ok());
  v1::GetHistoryRequest hq;
  hq.set_conversation_id(dm);
  v1::GetHistoryResponse hr;
  auto ctx = client_->Ctx(b);
  ASSERT_TRUE(client_->messaging->GetHistory(ctx.get(), hq, &hr).ok());
  ASSERT_EQ(hr.messages_size(), 2);
  // Bob's queue holds two entries: read the backlog up to the marker.
  Stream st(*client_, b);
  v1::ReceiveResponse r;
  int envelopes = 0;
  while (st.Read(&r) && !r.has_backlog_drained()) envelopes++;
  EXPECT_EQ(envelopes, 2);
}

TEST_F(ServerTest, OrderingBacklogAckAndRedelivery) {
  Device a = Reg("alice"), b = Reg("bob");
  std::string dm = DirectId(a, b);
  constexpr int kN = 150;  // more than one storage read batch
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(client_->SendText(a, dm, "id" + std::to_string(i), "msg " + std::to_string(i)).ok());
  }
  std::vector<uint64_t> first_half;
  {
    Stream st(*client_, b);
    v1::ReceiveResponse r;
    int i = 0;
    uint64_t last_delivery = 0;
    while (st.Read(&r)) {
      if (r.has_backlog_drained()) {
        EXPECT_EQ(r.backlog_drained().last_delivery_id(), last_delivery);
        break;
      }
      ASSERT_TRUE(r.has_envelope());
      EXPECT_GT(r.envelope().delivery_id(), last_delivery);
      last_delivery = r.envelope().delivery_id();
      EXPECT_EQ(r.envelope().message().plain().content(), "msg " + std::to_string(i));
      EXPECT_EQ(r.envelope().message().seq(), static_cast<uint64_t>(i + 1));
      if (i < kN / 2) first_half.push_back(r.envelope().delivery_id());
      ++i;
    }
    EXPECT_EQ(i, kN);
  }
  v1::AckRequest ack;
  for (auto id : first_half) ack.add_delivery_ids(id);
  v1::AckResponse ar;
  auto ctx = client_->Ctx(b);
  ASSERT_TRUE(client_->messaging->Ack(ctx.get(), ack, &ar).ok());
  EXPECT_EQ(ar.removed(), static_cast<uint32_t>(kN / 2));
  // Acking again removes nothing; unknown ids are ignored.
  auto ctx2 = client_->Ctx(b);
  ASSERT_TRUE(client_->messaging->Ack(ctx2.get(), ack, &ar).ok());
  EXPECT_EQ(ar.removed(), 0u);
  // A new stream redelivers exactly the unacknowledged second half, in order.
  Stream st(*client_, b);
  v1::Envelope e;
  ASSERT_TRUE(st.NextEnvelope(&e));
  EXPECT_EQ(e.message().plain().content(), "msg " + std::to_string(kN / 2));
}

// ReceiveRequest.max_batch: a backlog arrives in batches of at most
// max_batch envelopes, in order, with the marker after the last envelope of
// the backlog and never inside a batch; messages sent after the stream opened
// come after the marker, even when one storage read returns them together
// with the end of the backlog; a lone live envelope comes on its own.
TEST_F(ServerTest, ReceiveBatchesWhatIsWaiting) {
  Device a = Reg("alice"), b = Reg("bob");
  std::string dm = DirectId(a, b);
  constexpr int kBacklog = 150;  // three storage reads (64 entries each)
  constexpr int kLater = 100;
  constexpr uint32_t kMaxBatch = 50;
  const std::string body(8 * 1024, 'x');  // 50 envelopes: about 400 KB
  auto text = [&](int i) { return absl::StrCat("msg ", i, " ", body); };
  for (int i = 0; i < kBacklog; ++i) {
    ASSERT_TRUE(client_->SendText(a, dm, absl::StrCat("b", i), text(i)).ok());
  }
  // Bob reads on a connection with a 64 KB window that does not grow, so
  // the server cannot run ahead of him: after his first read it is stuck in
  // the backlog's first storage read. The later messages are then sent, and
  // the backlog's last read (entries 129..150) also returns newer ones.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 * 1024);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem_;
  ApiClient slow(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server_->port()),
                                           grpc::SslCredentials(ssl), args));
  Stream st(slow, b, 30, kMaxBatch);
  std::vector<v1::Envelope> before, after;
  uint64_t marker = 0;
  bool marked = false;
  int batches = 0;
  size_t largest = 0;
  auto read_one = [&]() -> bool {
    v1::ReceiveResponse r;
    if (!st.Read(&r)) return false;
    if (r.has_backlog_drained()) {
      EXPECT_FALSE(marked) << "a second marker";
      marked = true;
      marker = r.backlog_drained().last_delivery_id();
      return true;
    }
    std::vector<v1::Envelope>& into = marked ? after : before;
    if (r.has_envelope()) {
      into.push_back(r.envelope());
      return true;
    }
    EXPECT_TRUE(r.has_batch());
    EXPECT_GE(r.batch().envelopes_size(), 2) << "a batch holds two or more";
    ++batches;
    largest = std::max(largest, static_cast<size_t>(r.batch().envelopes_size()));
    into.insert(into.end(), r.batch().envelopes().begin(), r.batch().envelopes().end());
    return true;
  };
  ASSERT_TRUE(read_one());
  ASSERT_FALSE(marked);
  for (int i = kBacklog; i < kBacklog + kLater; ++i) {
    ASSERT_TRUE(client_->SendText(a, dm, absl::StrCat("b", i), text(i)).ok());
  }
  for (int n = 0; n < 1000 && before.size() + after.size() < static_cast<size_t>(kBacklog + kLater); ++n) {
    ASSERT_TRUE(read_one());
  }
  ASSERT_TRUE(marked);
  ASSERT_EQ(before.size(), static_cast<size_t>(kBacklog));  // exactly the backlog first
  ASSERT_EQ(after.size(), static_cast<size_t>(kLater));
  EXPECT_GE(batches, 4);  // 150 + 100 envelopes, at most 50 per batch
  EXPECT_LE(largest, kMaxBatch);
  for (const auto& e : before) EXPECT_LE(e.delivery_id(), marker);
  for (const auto& e : after) EXPECT_GT(e.delivery_id(), marker);
  before.insert(before.end(), after.begin(), after.end());
  uint64_t last_id = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_GT(before[i].delivery_id(), last_id);
    last_id = before[i].delivery_id();
    EXPECT_EQ(before[i].message().seq(), i + 1);
    EXPECT_EQ(before[i].message().plain().content(), text(static_cast<int>(i)));
  }
  // Caught up: one new message comes alone.
  ASSERT_TRUE(client_->SendText(a, dm, "live", "live").ok());
  v1::ReceiveResponse r;
  ASSERT_TRUE(st.Read(&r));
  ASSERT_TRUE(r.has_envelope());
  EXPECT_EQ(r.envelope().message().plain().content(), "live");
}

TEST_F(ServerTest, ReceiveMaxBatchAboveTheLimitIsInvalidArgument) {
  Device a = Reg("alice"), b = Reg("bob");
  std::string dm = DirectId(a, b);
  ASSERT_TRUE(client_->SendText(a, dm, "x", "kept").ok());
  {
    Stream st(*client_, b, 10, 257);
    v1::ReceiveResponse r;
    EXPECT_FALSE(st.Read(&r));
    grpc::Status s = st.Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("max_batch"));
    EXPECT_THAT(s.error_message(), HasSubstr("256"));
  }
  // The limit itself is accepted, and nothing was lost.
  Stream st(*client_, b, 10, 256);
  v1::Envelope e;
  ASSERT_TRUE(st.NextEnvelope(&e));
  EXPECT_EQ(e.message().plain().content(), "kept");
}

// The backlog marker also comes when nothing is left to deliver: every entry
// acknowledged, and after a restart (delivery ids then continue above a
// stored bound, so the queue's end is not the device's last id).
TEST_F(ServerTest, BacklogDrainedWhenQueueEmptyAlsoAfterRestart) {
  Device a = Reg("alice"), b = Reg("bob");
  std::string dm = DirectId(a, b);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client_->SendText(a, dm, "e" + std::to_string(i), "m").ok());
  }
  v1::AckRequest ack;
  {
    Stream st(*client_, b, 10);
    v1::Envelope e;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(st.NextEnvelope(&e));
      ack.add_delivery_ids(e.delivery_id());
    }
  }
  v1::AckResponse ar;
  auto ctx = client_->Ctx(b);
  ASSERT_TRUE(client_->messaging->Ack(ctx.get(), ack, &ar).ok());
  EXPECT_EQ(ar.removed(), 3u);
  auto expect_marker_first = [&](const char* when) {
    Stream st(*client_, b, 10);
    v1::ReceiveResponse r;
    ASSERT_TRUE(st.Read(&r)) << when;
    EXPECT_TRUE(r.has_backlog_drained()) << when;
  };
  expect_marker_first("all acknowledged");
  Restart();
  expect_marker_first("after a restart");
  // New messages after the restart still arrive, with larger ids.
  ASSERT_TRUE(client_->SendText(a, dm, "after", "new").ok());
  Stream st(*client_, b, 10);
  v1::Envelope e;
  ASSERT_TRUE(st.NextEnvelope(&e));
  EXPECT_GT(e.delivery_id(), ack.delivery_ids(2));
  EXPECT_EQ(e.message().plain().content(), "new");
}

// Live delivery hands just-written entries to a caught-up stream (without
// reading them back) and falls back to reading the queue when they arrive out
// of order (concurrent senders) or the stream's buffer is full (a slow
// reader): either way every message arrives once, in delivery-id order, and
// each sender's messages in their order.
TEST_F(ServerTest, LiveDeliveryWithConcurrentSendersAndSlowReaderIsOrdered) {
  Device b = Reg("bob");
  constexpr int kSenders = 4;
  constexpr int kPerSender = 60;
  std::vector<Device> senders;
  std::vector<std::string> convs;
  for (int i = 0; i < kSenders; ++i) {
    senders.push_back(Reg("sender" + std::to_string(i)));
    convs.push_back(DirectId(senders.back(), b));
  }
  Stream st(*client_, b, 60);
  v1::ReceiveResponse r;
  ASSERT_TRUE(st.Read(&r));
  ASSERT_TRUE(r.has_backlog_drained());  // empty queue: caught up
  std::vector<std::thread> threads;
  for (int i = 0; i < kSenders; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < kPerSender; ++k) {
        EXPECT_TRUE(client_->SendText(senders[i], convs[i], absl::StrCat("c", i, "-", k),
                                      absl::StrCat(i, ":", k))
                        .ok());
      }
    });
  }
  // Read while they send; the first reads wait until all were sent (the
  // stream's buffer fills, later entries are read from storage).
  for (auto& t : threads) t.join();
  uint64_t last_id = 0;
  std::vector<int> next(kSenders, 0);
  std::set<uint64_t> ids;
  for (int n = 0; n < kSenders * kPerSender; ++n) {
    v1::Envelope e;
    ASSERT_TRUE(st.NextEnvelope(&e)) << "after " << n;
    EXPECT_GT(e.delivery_id(), last_id);
    last_id = e.delivery_id();
    EXPECT_TRUE(ids.insert(e.delivery_id()).second);
    std::vector<std::string> parts = absl::StrSplit(e.message().plain().content(), ':');
    ASSERT_EQ(parts.size(), 2u);
    const int sender = std::stoi(parts[0]);
    ASSERT_LT(sender, kSenders);
    EXPECT_EQ(std::stoi(parts[1]), next[sender]) << "sender " << sender;
    next[sender] = std::stoi(parts[1]) + 1;
  }
  for (int i = 0; i < kSenders; ++i) EXPECT_EQ(next[i], kPerSender);
  // Then live again: new messages arrive one by one.
  for (int k = 0; k < 5; ++k) {
    ASSERT_TRUE(client_->SendText(senders[0], convs[0], absl::StrCat("live", k), "live").ok());
    v1::Envelope e;
    ASSERT_TRUE(st.NextEnvelope(&e));
    EXPECT_EQ(e.delivery_id(), last_id + 1);
    last_id = e.delivery_id();
  }
}

TEST_F(ServerTest, LiveDeliveryAfterBacklogAndReplacedStream) {
  Device a = Reg("alice"), b = Reg("bob");
  std::string dm = DirectId(a, b);
  ASSERT_TRUE(client_->SendText(a, dm, "x1", "queued").ok());
  auto old_stream = std::make_unique<Stream>(*client_, b);
  EXPECT_EQ(NextText(*old_stream), "queued");
  v1::ReceiveResponse r;
  ASSERT_TRUE(old_stream->Read(&r));
  EXPECT_TRUE(r.has_backlog_drained());
  ASSERT_TRUE(client_->SendText(a, dm, "x2", "live").ok());
  EXPECT_EQ(NextText(*old_stream), "live");
  // A second stream for the same device replaces the first.
  Stream fresh(*client_, b);
  v1::ReceiveResponse tmp;
  while (old_stream->Read(&tmp)) {
  }
  grpc::Status s = old_stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(s.error_message(), HasSubstr("replaced"));
  EXPECT_EQ(NextText(fresh), "queued");  // nothing was acked
  EXPECT_EQ(NextText(fresh), "live");
  ASSERT_TRUE(client_->SendText(a, dm, "x3", "after replace").ok());
  EXPECT_EQ(NextText(fresh), "after replace");
}

// SendStream: many Sends in flight on one call, each answered once with its
// request id; seqs follow the requests' order; the recipient gets them all.
// Run with --sync too, where answers wait for the shared fsync and more
// requests arrive than the server reads ahead (256).
void SendStreamPipelines(ApiClient& client, const Device& a, const Device& b, const std::string& dm, int n) {
  auto ctx = ApiClient::Ctx(a.token, 60);
  auto rw = client.messaging->SendStream(ctx.get());
  for (int i = 0; i < n; ++i) {
    v1::SendStreamRequest req;
    req.set_request_id(1000 + i);
    req.mutable_send()->set_conversation_id(dm);
    req.mutable_send()->set_client_message_id(absl::StrCat("s", i));
    req.mutable_send()->mutable_body()->mutable_plain()->set_content(absl::StrCat("pipelined ", i));
    ASSERT_TRUE(rw->Write(req)) << i;
  }
  ASSERT_TRUE(rw->WritesDone());
  std::map<uint64_t, uint64_t> seq_of;
  v1::SendStreamResponse resp;
  while (rw->Read(&resp)) {
    ASSERT_TRUE(resp.has_sent()) << resp.error().message();
    EXPECT_FALSE(resp.sent().duplicate());
    EXPECT_TRUE(seq_of.emplace(resp.request_id(), resp.sent().seq()).second) << "answered twice";
  }
  grpc::Status s = rw->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(seq_of.size(), static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) EXPECT_EQ(seq_of[1000 + i], static_cast<uint64_t>(i + 1));
  Stream st(client, b, 30, 64);
  for (int i = 0; i < n; ++i) {
    v1::Envelope e;
    ASSERT_TRUE(st.NextEnvelope(&e)) << i;
    EXPECT_EQ(e.message().plain().content(), absl::StrCat("pipelined ", i));
  }
}

TEST_F(ServerTest, SendStreamPipelinesSendsAndAnswersEach) {
  Device a = Reg("alice"), b = Reg("bob");
  SendStreamPipelines(*client_, a, b, DirectId(a, b), 300);
}

TEST_F(ServerTest, SendStreamWithSyncAnswersAfterTheSharedFsync) {
  sync_ = true;
  Restart();
  Device a = Reg("alice"), b = Reg("bob");
  SendStreamPipelines(*client_, a, b, DirectId(a, b), 600);
}

// A refused Send is an error response with what the unary Send answers (code
// and message), and the stream goes on; a retry is answered as a duplicate.
TEST_F(ServerTest, SendStreamAnswersRefusedSendsLikeSendAndGoesOn) {
  Device a = Reg("alice"), b = Reg("bob"), m = Reg("mallory");
  const std::string dm = DirectId(a, b);
  const std::string not_mine = DirectId(b, m);
  std::string unknown = dm;  // well-formed, not a conversation
  unknown.back() = unknown.back() == 'a' ? 'b' : 'a';
  auto text = [](const std::string& conv, const std::string& id, const std::string& body) {
    v1::SendRequest r;
    r.set_conversation_id(conv);
    r.set_client_message_id(id);
    r.mutable_body()->mutable_plain()->set_content(body);
    return r;
  };
  std::vector<v1::SendRequest> reqs = {
      text(dm, "c1", "first"),
      text(unknown, "c2", "x"),             // unknown conversation
      text(not_mine, "c3", "x"),            // not a member
      text(dm, std::string(65, 'x'), "x"),  // client_message_id too long
      text(dm, "c1", "first"),              // a retry of the first
      text(dm, "c5", "second"),
  };
  v1::SendRequest no_body;
  no_body.set_conversation_id(dm);
  no_body.set_client_message_id("c6");
  reqs.insert(reqs.begin() + 4, no_body);  // no body
  auto ctx = client_->Ctx(a);
  auto rw = client_->messaging->SendStream(ctx.get());
  for (size_t i = 0; i < reqs.size(); ++i) {
    v1::SendStreamRequest r;
    r.set_request_id(i);
    *r.mutable_send() = reqs[i];
    ASSERT_TRUE(rw->Write(r));
  }
  ASSERT_TRUE(rw->WritesDone());
  std::map<uint64_t, v1::SendStreamResponse> by_id;
  v1::SendStreamResponse resp;
  while (rw->Read(&resp)) by_id[resp.request_id()] = resp;
  ASSERT_TRUE(rw->Finish().ok());
  ASSERT_EQ(by_id.size(), reqs.size());
  ASSERT_TRUE(by_id[0].has_sent());
  EXPECT_EQ(by_id[0].sent().seq(), 1u);
  for (size_t i : {1, 2, 3, 4}) {
    ASSERT_TRUE(by_id[i].has_error()) << i;
    // The unary Send of the same request answers the same.
    v1::SendResponse unary;
    auto c = client_->Ctx(a);
    grpc::Status s = client_->messaging->Send(c.get(), reqs[i], &unary);
    ASSERT_FALSE(s.ok()) << i;
    EXPECT_EQ(by_id[i].error().code(), static_cast<int>(s.error_code())) << i;
    EXPECT_EQ(by_id[i].error().message(), s.error_message()) << i;
  }
  EXPECT_EQ(by_id[1].error().code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
  EXPECT_EQ(by_id[2].error().code(), static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
  EXPECT_EQ(by_id[3].error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(by_id[4].error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  ASSERT_TRUE(by_id[5].has_sent());
  EXPECT_TRUE(by_id[5].sent().duplicate());
  EXPECT_EQ(by_id[5].sent().seq(), 1u);
  ASSERT_TRUE(by_id[6].has_sent());
  EXPECT_EQ(by_id[6].sent().seq(), 2u);
}

// The token is checked when the call starts, and again for every Send: a
// device removed while its stream is open gets UNAUTHENTICATED answers.
TEST_F(ServerTest, SendStreamChecksTheTokenAtTheStartAndForEverySend) {
  for (const std::string token : {"", "not-a-token"}) {
    auto ctx = ApiClient::Ctx(token);
    auto rw = client_->messaging->SendStream(ctx.get());
    v1::SendStreamResponse resp;
    EXPECT_FALSE(rw->Read(&resp));
    grpc::Status s = rw->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << token;
  }
  Device a1 = Reg("alice"), b = Reg("bob");
  Device a2;
  ASSERT_TRUE(client_->Link(a1, &a2).ok());
  const std::string dm = DirectId(a1, b);
  auto ctx = client_->Ctx(a2);
  auto rw = client_->messaging->SendStream(ctx.get());
  auto send = [&](uint64_t id) {
    v1::SendStreamRequest r;
    r.set_request_id(id);
    r.mutable_send()->set_conversation_id(dm);
    r.mutable_send()->set_client_message_id(absl::StrCat("t", id));
    r.mutable_send()->mutable_body()->mutable_plain()->set_content("from device 2");
    EXPECT_TRUE(rw->Write(r));
    v1::SendStreamResponse resp;
    EXPECT_TRUE(rw->Read(&resp));
    EXPECT_EQ(resp.request_id(), id);
    return resp;
  };
  EXPECT_TRUE(send(1).has_sent());
  v1::RemoveDeviceRequest rm;
  rm.set_device_id(a2.device_id);
  v1::RemoveDeviceResponse rmr;
  auto c = client_->Ctx(a1);
  ASSERT_TRUE(client_->accounts->RemoveDevice(c.get(), rm, &rmr).ok());
  v1::SendStreamResponse after = send(2);
  ASSERT_TRUE(after.has_error());
  EXPECT_EQ(after.error().code(), static_cast<int>(grpc::StatusCode::UNAUTHENTICATED));
  ASSERT_TRUE(rw->WritesDone());
  EXPECT_TRUE(rw->Finish().ok());
}

// Stopping the server ends an open SendStream with UNAVAILABLE ("shutting
// down") instead of leaving it to gRPC's shutdown deadline.
TEST_F(ServerTest, SendStreamEndsWhenTheServerStops) {
  Device a = Reg("alice"), b = Reg("bob");
  const std::string dm = DirectId(a, b);
  auto ctx = ApiClient::Ctx(a.token, 60);
  auto rw = client_->messaging->SendStream(ctx.get());
  v1::SendStreamRequest r;
  r.set_request_id(7);
  r.mutable_send()->set_conversation_id(dm);
  r.mutable_send()->set_client_message_id("before");
  r.mutable_send()->mutable_body()->mutable_plain()->set_content("before the stop");
  ASSERT_TRUE(rw->Write(r));
  v1::SendStreamResponse resp;
  ASSERT_TRUE(rw->Read(&resp));
  EXPECT_TRUE(resp.has_sent());
  std::thread stop([&] { server_->Shutdown(); });
  EXPECT_FALSE(rw->Read(&resp));
  grpc::Status s = rw->Finish();
  stop.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("shutting down"));
}

TEST_F(ServerTest, SendErrors) {
  Device a = Reg("alice"), b = Reg("bob"), m = Reg("mallory");
  std::string dm = DirectId(a, b);
  auto code = [&](const Device& d, const v1::SendRequest& req) {
    v1::SendResponse resp;
    auto ctx = client_->Ctx(d);
    return client_->messaging->Send(ctx.get(), req, &resp);
  };
  v1::SendRequest req;
  req.set_conversation_id(dm);
  req.set_client_message_id("e1");
  req.mutable_body()->mutable_plain()->set_content("ok");

  v1::SendRequest r = req;
  r.clear_client_message_id();
  grpc::Status s = code(a, r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("client_message_id"));
  r = req;
  r.clear_body();
  EXPECT_EQ(code(a, r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r = req;
  r.mutable_body()->mutable_plain()->set_content("");
  EXPECT_EQ(code(a, r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r = req;
  r.mutable_body()->mutable_plain()->set_content(std::string(64 * 1024 + 1, 'x'));
  s = code(a, r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("65536"));
  r = req;
  r.mutable_body()->mutable_plain()->set_content("bad \xc3\x28 utf8");
  EXPECT_EQ(code(a, r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r = req;
  r.set_conversation_id("c_000000000000000000000000");
  EXPECT_EQ(code(a, r).error_code(), grpc::StatusCode::NOT_FOUND);
  r = req;
  r.set_conversation_id("garbage");
  EXPECT_EQ(code(a, r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(m, req).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  r = req;
  auto* ct = r.mutable_body()->mutable_encrypted()->add_ciphertexts();
  ct->set_account_id(b.account_id);
  ct->set_device_id(1);
  ct->set_ciphertext("opaque");
  s = code(a, r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("SECURITY_MODE_"));
  EXPECT_THAT(s.error_message(), HasSubstr("rule"));
  // Binary content with a non-text type is accepted as is.
  r = req;
  r.set_client_message_id("bin");
  r.mutable_body()->mutable_plain()->set_content_type("application/octet-stream");
  r.mutable_body()->mutable_plain()->set_content(std::string("\xff\x00\x01", 3));
  EXPECT_TRUE(code(a, r).ok());

  // Nothing was stored for the refused sends: history has only the binary one.
  v1::GetHistoryRequest hq;
  hq.set_conversation_id(dm);
  v1::GetHistoryResponse hr;
  auto ctx = client_->Ctx(a);
  ASSERT_TRUE(client_->messaging->GetHistory(ctx.get(), hq, &hr).ok());
  EXPECT_EQ(hr.messages_size(), 1);

  v1::AckRequest ack;
  v1::AckResponse ar;
  auto c2 = client_->Ctx(a);
  EXPECT_EQ(client_->messaging->Ack(c2.get(), ack, &ar).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ack.add_delivery_ids(0);
  auto c3 = client_->Ctx(a);
  EXPECT_EQ(client_->messaging->Ack(c3.get(), ack, &ar).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerTest, HistoryPagingAndAccess) {
  Device a = Reg("alice"), b = Reg("bob"), m = Reg("mallory");
  std::string dm = DirectId(a, b);
  for (int i = 1; i <= 12; ++i) {
    ASSERT_TRUE(client_->SendText(i % 2 ? a : b, dm, "h" + std::to_string(i), "text " + std::to_string(i)).ok());
  }
  v1::GetHistoryRequest hq;
  hq.set_conversation_id(dm);
  hq.set_limit(5);
  v1::GetHistoryResponse hr;
  auto c1 = client_->Ctx(b);
  ASSERT_TRUE(client_->messaging->GetHistory(c1.get(), hq, &hr).ok());
  ASSERT_EQ(hr.messages_size(), 5);
  EXPECT_TRUE(hr.more());
  EXPECT_EQ(hr.messages(0).seq(), 12u);  // newest first
  EXPECT_EQ(hr.messages(4).seq(), 8u);
  hq.set_before_seq(3);
  auto c2 = client_->Ctx(b);
  ASSERT_TRUE(client_->messaging->GetHistory(c2.get(), hq, &hr).ok());
  ASSERT_EQ(hr.messages_size(), 2);
  EXPECT_FALSE(hr.more());
  EXPECT_EQ(hr.messages(0).plain().content(), "text 2");
  hq.set_limit(501);
  auto c3 = client_->Ctx(b);
  EXPECT_EQ(client_->messaging->GetHistory(c3.get(), hq, &hr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  hq.set_limit(5);
  auto c4 = client_->Ctx(m);
  EXPECT_EQ(client_->messaging->GetHistory(c4.get(), hq, &hr).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(ServerTest, GroupFanOutAndMembershipEvents) {
  Device a = Reg("alice"), b = Reg("bob"), c = Reg("carol");
  std::string g = Group(a, {"bob", "carol"}, "friends");
  Stream sb(*client_, b), sc(*client_, c);
  v1::Envelope e;
  ASSERT_TRUE(sb.NextEnvelope(&e));
  ASSERT_TRUE(e.message().has_membership_change());
  EXPECT_EQ(e.message().membership_change().action(), v1::MembershipChange::ACTION_CREATED);
  EXPECT_EQ(e.message().membership_change().account_ids_size(), 3);
  ASSERT_TRUE(client_->SendText(a, g, "g1", "hi all").ok());
  EXPECT_EQ(NextText(sb), "hi all");
  EXPECT_EQ(NextText(sc), "hi all");
}

TEST_F(ServerTest, ReportMessageValidatesItsRequest) {
  // The full reporting flows are in tests/integration/safety_test.cc.
  Device a = Reg("alice"), b = Reg("bob");
  std::string dm = DirectId(a, b);
  v1::ReportMessageRequest rq;
  rq.set_conversation_id(dm);
  v1::ReportMessageResponse rr;
  auto c4 = client_->Ctx(a);
  EXPECT_EQ(client_->messaging->ReportMessage(c4.get(), rq, &rr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // no reason
  rq.set_reason(v1::REPORT_REASON_SPAM);
  auto c5 = client_->Ctx(a);
  EXPECT_EQ(client_->messaging->ReportMessage(c5.get(), rq, &rr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // no seq
}

TEST_F(ServerTest, HealthAndReflectionAreServed) {
  grpc::GenericStub generic(client_->ch_);
  // grpc.health.v1.Health/Check with an empty HealthCheckRequest.
  grpc::ByteBuffer req, resp;
  grpc::Slice empty("");
  req = grpc::ByteBuffer(&empty, 1);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &req, &resp,
                    [&](grpc::Status s) {
                      std::lock_guard<std::mutex> l(mu);
                      status = s;
                      done = true;
                      cv.notify_all();
                    });
  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(10), [&] { return done; }));
  }
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(resp.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING

  // grpc.reflection.v1alpha.ServerReflection: list_services.
  grpc::ClientContext rctx;
  rctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(&rctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::Slice list(std::string("\x3a\x00", 2));  // field 7 (list_services) = ""
  grpc::ByteBuffer lreq(&list, 1);
  call->WriteLast(lreq, grpc::WriteOptions(), reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::ByteBuffer lresp;
  call->Read(&lresp, reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  slices.clear();
  ASSERT_TRUE(lresp.Dump(&slices).ok());
  bytes.clear();
  for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_THAT(bytes, HasSubstr("parley.v1.MessagingService"));
  EXPECT_THAT(bytes, HasSubstr("parley.v1.AccountService"));
  grpc::Status fs;
  call->Finish(&fs, reinterpret_cast<void*>(4));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(ServerTest, RestartKeepsEverything) {
  Device a = Reg("alice"), b = Reg("bob");
  std::string dm = DirectId(a, b);
  ASSERT_TRUE(client_->SendText(a, dm, "p1", "persisted").ok());
  Restart();
  Stream st(*client_, b);
  EXPECT_EQ(NextText(st), "persisted");
  v1::SendResponse sr;
  ASSERT_TRUE(client_->SendText(a, dm, "p2", "after restart", &sr).ok());
  EXPECT_EQ(sr.seq(), 2u);
  EXPECT_EQ(NextText(st), "after restart");
}

TEST_F(ServerTest, ShutdownEndsStreams) {
  Device b = Reg("bob");
  Stream st(*client_, b);
  v1::ReceiveResponse r;
  ASSERT_TRUE(st.Read(&r));  // backlog marker
  server_->Shutdown();
  while (st.Read(&r)) {
  }
  EXPECT_EQ(st.Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServerTest, HistoryRetentionHidesAndPurgesOldMessages) {
  Device a = Reg("alice"), b = Reg("bob");
  std::string dm = DirectId(a, b);
  ASSERT_TRUE(client_->SendText(a, dm, "old", "from long ago").ok());
  offset_ms_ = 91LL * 24 * 3600 * 1000;  // default retention is 90 days
  ASSERT_TRUE(client_->SendText(a, dm, "new", "recent").ok());
  v1::GetHistoryRequest hq;
  hq.set_conversation_id(dm);
  v1::GetHistoryResponse hr;
  auto c1 = client_->Ctx(b);
  ASSERT_TRUE(client_->messaging->GetHistory(c1.get(), hq, &hr).ok());
  ASSERT_EQ(hr.messages_size(), 1);
  EXPECT_EQ(hr.messages(0).plain().content(), "recent");
  // The retention task runs at start: after a restart the old entry is purged
  // from storage, not just hidden.
  Restart();
  offset_ms_ = 0;  // even with the clock back, the purged message is gone
  auto c2 = client_->Ctx(b);
  ASSERT_TRUE(client_->messaging->GetHistory(c2.get(), hq, &hr).ok());
  ASSERT_EQ(hr.messages_size(), 1);
  EXPECT_EQ(hr.messages(0).plain().content(), "recent");
}

// ------------------------------------------------------- policy-decided modes

TEST_F(ServerTest, PolicyDecidesNewConversationsMode) {
  policy_file_ = std::string(PARLEY_PRESETS_DIR) + "/telegram.yaml";
  Restart();
  Device a = Reg("alice"), b = Reg("bob");
  v1::Conversation dm;
  ASSERT_TRUE(client_->Direct(a, "bob", &dm).ok());
  EXPECT_EQ(dm.security().mode(), v1::SECURITY_MODE_OPT_IN);
  EXPECT_THAT(dm.security().policy_revision(), ::testing::MatchesRegex("r2-[0-9a-f]{8}"));
  EXPECT_FALSE(dm.security().rule_id().empty());
  EXPECT_FALSE(dm.security().reason().empty());
  std::string g = Group(a, {"bob"});
  v1::GetConversationRequest gq;
  gq.set_conversation_id(g);
  v1::GetConversationResponse gr;
  auto ctx = client_->Ctx(a);
  ASSERT_TRUE(client_->conversations->GetConversation(ctx.get(), gq, &gr).ok());
  EXPECT_EQ(gr.conversation().security().mode(), v1::SECURITY_MODE_TRANSPORT);
  // Opt-in conversations are server-readable until switched: plain text is accepted.
  EXPECT_TRUE(client_->SendText(a, dm.conversation_id(), "t1", "readable").ok());
  (void)b;
}

TEST_F(ServerTest, E2eePolicyRefusesPlaintextAndStoresNothing) {
  policy_file_ = std::string(PARLEY_PRESETS_DIR) + "/signal.yaml";
  Restart();
  Device a = Reg("alice"), b = Reg("bob");
  v1::Conversation dm;
  ASSERT_TRUE(client_->Direct(a, "bob", &dm).ok());
  ASSERT_EQ(dm.security().mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_TRUE(dm.security().locked());
  grpc::Status s = client_->SendText(a, dm.conversation_id(), "p1", "secret plaintext");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("end-to-end encrypted"));
  EXPECT_THAT(s.error_message(), HasSubstr(dm.security().rule_id()));
  EXPECT_THAT(s.error_message(), HasSubstr(dm.security().policy_revision()));
  v1::GetHistoryRequest hq;
  hq.set_conversation_id(dm.conversation_id());
  v1::GetHistoryResponse hr;
  auto ctx = client_->Ctx(b);
  ASSERT_TRUE(client_->messaging->GetHistory(ctx.get(), hq, &hr).ok());
  EXPECT_EQ(hr.messages_size(), 0);
}

TEST(ServerOptionsTest, BadPolicyFileIsRefusedWithFileAndLine) {
  char tmpl[] = "/tmp/parley_pol_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  ASSERT_TRUE(core::WriteFileAtomic(dir + "/bad.yaml", "version: 1\nrules:\n  - id: x\n    mode: sometimes\n", 0644).ok());
  core::ServerOptions o;
  o.data_dir = dir + "/data";
  o.listen = "127.0.0.1:0";
  o.policy_file = dir + "/bad.yaml";
  auto s = core::Server::Start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("bad.yaml:"));
  std::filesystem::remove_all(dir);
}

TEST(ServerOptionsTest, InsecureOnlyOnLoopback) {
  char tmpl[] = "/tmp/parley_opt_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  core::ServerOptions o;
  o.data_dir = dir;
  o.insecure = true;
  o.listen = "0.0.0.0:0";
  auto s = core::Server::Start(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("loopback"));
  o.listen = "127.0.0.1:0";
  s = core::Server::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  (*s)->Shutdown();
  o.listen = "nonsense";
  EXPECT_EQ(core::Server::Start(o).status().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::remove_all(dir);
}

TEST(ServerOptionsTest, KeepaliveOutOfRangeIsRefusedNamingTheField) {
  char tmpl[] = "/tmp/parley_opt_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  core::ServerOptions o;
  o.data_dir = dir;
  o.listen = "127.0.0.1:0";
  o.admin_listen = "";
  o.keepalive.time_ms = -1;
  auto s = core::Server::Start(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("keepalive.time_ms: -1 ms"));
  o.keepalive.time_ms = 1000;
  o.keepalive.timeout_ms = 0;
  s = core::Server::Start(o);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("keepalive.timeout_ms"));
  o.keepalive.timeout_ms = 1000;
  o.keepalive.min_client_ping_interval_ms = int64_t{1} << 40;
  s = core::Server::Start(o);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("keepalive.min_client_ping_interval_ms"));
  // Nothing was created for a refused start.
  EXPECT_FALSE(std::filesystem::exists(dir + "/db"));
  o.keepalive.min_client_ping_interval_ms = 0;
  s = core::Server::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  (*s)->Shutdown();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace parley
