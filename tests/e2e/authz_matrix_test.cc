// Authorization matrix: every RPC of the user API (AccountService,
// ConversationService, MessagingService, KeyService) × every kind of
// credential, and every RPC of the admin service × device credentials,
// against a real parleyd. One test per cell, named RPC__Credential, so a
// failure names the cell.
//
// Credentials:
//   NoToken       no authorization metadata
//   Malformed     "Bearer not-a-token!"
//   WrongScheme   "Basic <the victim's valid token>"
//   UnknownToken  a well-formed (64 hex) token the server never issued
//   Revoked       the token of a device the victim removed
//   AdminToken    the operator's admin token (admin tokens never work on the
//                 user API)
//   OtherAccount  a valid token of another (fresh) account, aimed at the
//                 victim's conversations, devices, queues and keys
//   Suspended     (a moderator suspended the account: PERMISSION_DENIED)
//
// Expected: UNAUTHENTICATED for every credential except OtherAccount, on every
// RPC except the two that take no token (CreateAccount, LinkDevice: the header
// is ignored, they answer exactly as without one). OtherAccount gets
// PERMISSION_DENIED or NOT_FOUND where it names the victim's objects, or OK
// on its own scope — and no response or error message of any OtherAccount
// call contains any of the victim's data (conversation ids, message text,
// device names, key material, queue entries).
//
// The unauthenticated columns are driven by the services' descriptors: an RPC
// added to the protos is covered without editing this file (the
// OtherAccount column then fails in EveryRpcHasAnOtherAccountCase until a row
// is added).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <sys/random.h>

#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parley/v1/admin.grpc.pb.h"
#include "parley/v1/parley.grpc.pb.h"
#include "tests/support/api_client.h"
#include "tests/support/signal_keys.h"
#include "tests/support/subprocess.h"

namespace parley {
namespace {

using testing::ApiClient;
using testing::Device;
using testing::Parleyd;
using testing::signal_keys::KeyMaker;

std::string RandomHex(size_t bytes) {
  std::string b(bytes, '\0');
  if (::getrandom(b.data(), b.size(), 0) != static_cast<ssize_t>(b.size())) {
    for (char& c : b) c = static_cast<char>(rand());
  }
  return absl::BytesToHexString(b);
}

// ------------------------------------------------------------------ world

// One parleyd for the whole suite, with a victim (alice) who has data of
// every kind. Cells never change alice's data (checked after each cell).
struct World {
  std::string dir;
  std::unique_ptr<Parleyd> server;
  std::string ca;
  std::unique_ptr<ApiClient> api;
  std::shared_ptr<grpc::Channel> channel;
  std::shared_ptr<grpc::Channel> admin_channel;
  std::string operator_token;

  Device alice, alice_laptop, bob;
  std::string revoked_token;          // alice's removed third device
  Device suspended;                   // mallory, suspended by a moderator
  uint32_t laptop_id = 0;
  std::string direct_id, group_id;    // alice's conversations
  std::string secret_text;            // in alice's messages
  std::string laptop_name;            // alice's device name
  std::string alice_identity_key;     // public, but alice's
  uint32_t alice_prekeys = 0;
  int bob_queue = 0;                  // envelopes queued for bob
  uint64_t direct_last_seq = 0;
  std::map<std::string, uint64_t> epochs;  // alice's conversations
  std::vector<uint64_t> bob_delivery_ids;
  KeyMaker keys;
  std::unique_ptr<KeyMaker::Install> alice_install;
  int attackers = 0;

  // Markers that must never reach another account.
  std::vector<std::string> Secrets() const {
    return {direct_id, group_id, secret_text, laptop_name, alice_identity_key};
  }
};

World* w = nullptr;

class AuthzEnvironment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override {
    if (w == nullptr) return;
    if (w->server) {
      w->server->process().Kill(SIGTERM);
      w->server->process().Wait(std::chrono::seconds(20));
    }
    const std::string dir = w->dir;
    delete w;
    w = nullptr;
    std::filesystem::remove_all(dir);
  }
};

grpc::Status Ok(const grpc::Status& s, const char* what) {
  EXPECT_TRUE(s.ok()) << what << ": " << s.error_message();
  return s;
}

void ExpectVictimIntact();

void AuthzEnvironment::SetUp() {
  w = new World;
  char tmpl[] = "/tmp/parley_authz_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  w->dir = tmpl;
  // No per-device rate limit: ~1,000 checks of alice's data in half a second
  // are about authorization, not rates (those are tested on their own).
  w->server = std::make_unique<Parleyd>(PARLEYD_BIN, w->dir + "/data", w->dir,
                                        std::vector<std::string>{"--device-rate-limit", "0"});
  ASSERT_GT(w->server->port(), 0) << w->server->log();
  w->ca = testing::Slurp(w->server->ca_file());
  ASSERT_FALSE(w->ca.empty());
  w->channel = testing::MakeChannel(w->server->target(), w->ca);
  w->api = std::make_unique<ApiClient>(w->channel);
  w->admin_channel = testing::MakeChannel(w->server->admin_target(), w->ca);
  w->operator_token = testing::Slurp(w->server->operator_token_file());
  while (!w->operator_token.empty() && (w->operator_token.back() == '\n' || w->operator_token.back() == ' ')) {
    w->operator_token.pop_back();
  }
  ASSERT_FALSE(w->operator_token.empty());

  ApiClient& c = *w->api;
  ASSERT_TRUE(Ok(c.Register("alice", &w->alice), "register alice").ok());
  ASSERT_TRUE(Ok(c.Register("bob", &w->bob), "register bob").ok());
  {
    // mallory: suspended through the admin service by a moderator.
    ASSERT_TRUE(Ok(c.Register("mallory", &w->suspended), "register mallory").ok());
    auto admin = v1::AdminService::NewStub(w->admin_channel);
    auto actx = [](const std::string& token) {
      auto ctx = std::make_unique<grpc::ClientContext>();
      ctx->AddMetadata("authorization", "Bearer " + token);
      ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      return ctx;
    };
    v1::CreateTokenRequest treq;
    treq.set_role(v1::ADMIN_ROLE_MODERATOR);
    treq.set_name("matrix-moderator");
    v1::CreateTokenResponse tresp;
    ASSERT_TRUE(Ok(admin->CreateToken(actx(w->operator_token).get(), treq, &tresp), "moderator token").ok());
    v1::SetAccountSuspendedRequest sreq;
    sreq.set_account_id(w->suspended.account_id);
    sreq.set_suspended(true);
    sreq.set_note("authorization matrix");
    v1::SetAccountSuspendedResponse sresp;
    ASSERT_TRUE(Ok(admin->SetAccountSuspended(actx(tresp.secret()).get(), sreq, &sresp), "suspend").ok());
  }
  w->laptop_name = "alice-laptop-" + RandomHex(6);
  {
    v1::CreateDeviceLinkResponse code;
    auto c1 = c.Ctx(w->alice);
    ASSERT_TRUE(Ok(c.accounts->CreateDeviceLink(c1.get(), {}, &code), "link code").ok());
    v1::LinkDeviceRequest req;
    req.set_link_code(code.link_code());
    req.set_device_name(w->laptop_name);
    v1::LinkDeviceResponse resp;
    auto c2 = ApiClient::Ctx("");
    ASSERT_TRUE(Ok(c.accounts->LinkDevice(c2.get(), req, &resp), "link laptop").ok());
    w->alice_laptop = w->alice;
    w->alice_laptop.device_id = resp.device().device_id();
    w->alice_laptop.token = resp.device_token();
    w->laptop_id = resp.device().device_id();
  }
  {  // a third device, removed: its token is revoked
    Device third;
    ASSERT_TRUE(Ok(c.Link(w->alice, &third), "link third").ok());
    v1::RemoveDeviceRequest req;
    req.set_device_id(third.device_id);
    v1::RemoveDeviceResponse resp;
    auto ctx = c.Ctx(w->alice);
    ASSERT_TRUE(Ok(c.accounts->RemoveDevice(ctx.get(), req, &resp), "remove third").ok());
    w->revoked_token = third.token;
  }
  w->alice_install = std::make_unique<KeyMaker::Install>(&w->keys, 4242);
  {
    v1::UploadKeysRequest req = w->alice_install->Upload(30);
    w->alice_identity_key = req.identity_key();
    v1::UploadKeysResponse resp;
    auto ctx = c.Ctx(w->alice);
    ASSERT_TRUE(Ok(c.keys->UploadKeys(ctx.get(), req, &resp), "alice keys").ok());
  }
  v1::Conversation conv;
  ASSERT_TRUE(Ok(c.Direct(w->alice, "bob", &conv), "direct").ok());
  w->direct_id = conv.conversation_id();
  {
    v1::CreateGroupRequest req;
    req.set_title("alice's group " + RandomHex(4));
    req.add_member_usernames("bob");
    v1::CreateGroupResponse resp;
    auto ctx = c.Ctx(w->alice);
    ASSERT_TRUE(Ok(c.conversations->CreateGroup(ctx.get(), req, &resp), "group").ok());
    w->group_id = resp.conversation().conversation_id();
  }
  w->secret_text = "victim-secret-" + RandomHex(8);
  for (int i = 0; i < 3; ++i) {
    v1::SendResponse sr;
    ASSERT_TRUE(Ok(c.SendText(w->alice, w->direct_id, absl::StrCat("d", i), w->secret_text, &sr), "send").ok());
    w->direct_last_seq = sr.seq();
    ASSERT_TRUE(Ok(c.SendText(w->alice, w->group_id, absl::StrCat("g", i), w->secret_text), "send group").ok());
  }
  // bob's queue: the group's creation event and the six messages.
  testing::Stream st(c, w->bob, 20);
  v1::ReceiveResponse r;
  while (st.Read(&r) && !r.has_backlog_drained()) w->bob_delivery_ids.push_back(r.envelope().delivery_id());
  w->bob_queue = static_cast<int>(w->bob_delivery_ids.size());
  ASSERT_GE(w->bob_queue, 6);
  v1::GetPreKeyCountResponse count;
  auto ctx = c.Ctx(w->alice);
  ASSERT_TRUE(Ok(c.keys->GetPreKeyCount(ctx.get(), {}, &count), "count").ok());
  w->alice_prekeys = count.count();
  ASSERT_EQ(w->alice_prekeys, 30u);
  ExpectVictimIntact();  // records the conversations' epochs
}

// A fresh account: the attacker of one OtherAccount cell.
Device Attacker() {
  Device d;
  grpc::Status s = w->api->Register(absl::StrCat("eve", ++w->attackers), &d);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return d;
}

// Every victim secret found in `text` (serialized response, error message).
std::vector<std::string> Leaks(const std::string& text) {
  std::vector<std::string> found;
  for (const std::string& s : w->Secrets()) {
    if (!s.empty() && text.find(s) != std::string::npos) found.push_back(s);
  }
  return found;
}
std::vector<std::string> Leaks(const google::protobuf::Message& m) {
  std::vector<std::string> found = Leaks(m.SerializeAsString());
  for (auto& s : Leaks(m.DebugString())) found.push_back(s);
  return found;
}

// ---------------------------------------------------- the victim is intact

int CountEnvelopes(const Device& d) {
  testing::Stream st(*w->api, d, 20);
  v1::ReceiveResponse r;
  int n = 0;
  while (st.Read(&r) && !r.has_backlog_drained()) ++n;
  return n;
}

void ExpectVictimIntact() {
  ApiClient& c = *w->api;
  {
    v1::ListDevicesResponse resp;
    auto ctx = c.Ctx(w->alice);
    ASSERT_TRUE(c.accounts->ListDevices(ctx.get(), {}, &resp).ok());
    EXPECT_EQ(resp.devices_size(), 2) << "alice's devices changed";
  }
  for (const std::string& id : {w->direct_id, w->group_id}) {
    v1::GetConversationRequest req;
    req.set_conversation_id(id);
    v1::GetConversationResponse resp;
    auto ctx = c.Ctx(w->alice);
    ASSERT_TRUE(c.conversations->GetConversation(ctx.get(), req, &resp).ok());
    EXPECT_EQ(resp.conversation().members_size(), 2) << "members of " << id << " changed";
    if (w->epochs.count(id) == 0) w->epochs[id] = resp.conversation().security().epoch();
    EXPECT_EQ(resp.conversation().security().epoch(), w->epochs[id]) << "security state of " << id << " changed";
    if (id == w->direct_id) {
      EXPECT_EQ(resp.conversation().last_message_seq(), w->direct_last_seq) << "someone wrote into alice's chat";
    }
  }
  {
    v1::GetPreKeyCountResponse resp;
    auto ctx = c.Ctx(w->alice);
    ASSERT_TRUE(c.keys->GetPreKeyCount(ctx.get(), {}, &resp).ok());
    // FetchBundles (public by design) may take one-time pre-keys; nothing
    // else may change them.
    EXPECT_LE(resp.count(), w->alice_prekeys);
    w->alice_prekeys = resp.count();
  }
}

// ------------------------------------------------------------ credentials

enum class Cred {
  kNoToken,
  kMalformed,
  kWrongScheme,
  kUnknownToken,
  kRevoked,
  kAdminToken,
  kOtherAccount,
  kSuspended,  // a valid device token of an account a moderator suspended
};

const char* CredName(Cred c) {
  switch (c) {
    case Cred::kNoToken: return "NoToken";
    case Cred::kMalformed: return "Malformed";
    case Cred::kWrongScheme: return "WrongScheme";
    case Cred::kUnknownToken: return "UnknownToken";
    case Cred::kRevoked: return "Revoked";
    case Cred::kAdminToken: return "AdminToken";
    case Cred::kOtherAccount: return "OtherAccount";
    case Cred::kSuspended: return "Suspended";
  }
  return "?";
}

// The authorization header value for a credential ("" = none).
std::string Header(Cred c) {
  switch (c) {
    case Cred::kNoToken: return "";
    case Cred::kMalformed: return "Bearer not-a-token!";
    case Cred::kWrongScheme: return "Basic " + w->alice.token;
    case Cred::kUnknownToken: return "Bearer " + RandomHex(32);
    case Cred::kRevoked: return "Bearer " + w->revoked_token;
    case Cred::kAdminToken: return "Bearer " + w->operator_token;
    case Cred::kOtherAccount: return "";
    case Cred::kSuspended: return "Bearer " + w->suspended.token;
  }
  return "";
}

// Calls `method` ("/pkg.Service/Method") with an empty request; the status.
grpc::Status GenericCall(const std::shared_ptr<grpc::Channel>& ch, const std::string& method,
                         const std::string& header) {
  grpc::GenericStub stub(ch);
  grpc::ClientContext ctx;
  if (!header.empty()) ctx.AddMetadata("authorization", header);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty("");
  grpc::ByteBuffer req(&empty, 1);
  grpc::ByteBuffer resp;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp,
                 [&](grpc::Status s) { done.set_value(std::move(s)); });
  return done.get_future().get();
}

// ------------------------------------------------------- user API columns

struct Method {
  std::string service;  // "AccountService"
  std::string name;     // "GetAccount"
  std::string path() const { return absl::StrCat("/parley.v1.", service, "/", name); }
};

std::vector<Method> UserMethods() {
  std::vector<Method> out;
  const google::protobuf::FileDescriptor* f = v1::CreateAccountRequest::descriptor()->file();
  for (const char* svc : {"AccountService", "ConversationService", "MessagingService", "KeyService"}) {
    const google::protobuf::ServiceDescriptor* s = f->FindServiceByName(svc);
    if (s == nullptr) continue;
    for (int i = 0; i < s->method_count(); ++i) out.push_back({svc, s->method(i)->name()});
  }
  return out;
}

bool TakesNoToken(const Method& m) {
  return m.name == "CreateAccount" || m.name == "LinkDevice";
}

struct Cell {
  Method method;
  Cred cred;
};

void PrintTo(const Cell& c, std::ostream* os) { *os << c.method.path() << " with " << CredName(c.cred); }

std::vector<Cell> UnauthenticatedCells() {
  std::vector<Cell> cells;
  for (const Method& m : UserMethods()) {
    for (Cred c : {Cred::kNoToken, Cred::kMalformed, Cred::kWrongScheme, Cred::kUnknownToken, Cred::kRevoked,
                   Cred::kAdminToken}) {
      cells.push_back({m, c});
    }
  }
  return cells;
}

std::string CellName(const ::testing::TestParamInfo<Cell>& i) {
  return absl::StrCat(i.param.method.service, "_", i.param.method.name, "__", CredName(i.param.cred));
}

class UserApiUnauthenticated : public ::testing::TestWithParam<Cell> {};

TEST_P(UserApiUnauthenticated, Refused) {
  ASSERT_NE(w, nullptr);
  const Cell& cell = GetParam();
  grpc::Status s = GenericCall(w->channel, cell.method.path(), Header(cell.cred));
  if (TakesNoToken(cell.method)) {
    // The header is ignored: the same answer as without one (the empty
    // request is invalid).
    grpc::Status bare = GenericCall(w->channel, cell.method.path(), "");
    EXPECT_EQ(s.error_code(), bare.error_code()) << s.error_message() << " vs " << bare.error_message();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  } else {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << cell.method.path() << " with " << CredName(cell.cred) << ": code " << s.error_code() << " \""
        << s.error_message() << "\"";
  }
  // An error message never echoes a credential.
  EXPECT_THAT(s.error_message(), ::testing::Not(::testing::HasSubstr(w->alice.token)));
  EXPECT_THAT(s.error_message(), ::testing::Not(::testing::HasSubstr(w->revoked_token)));
  EXPECT_THAT(s.error_message(), ::testing::Not(::testing::HasSubstr(w->operator_token)));
  EXPECT_TRUE(Leaks(s.error_message()).empty());
  ExpectVictimIntact();
}

INSTANTIATE_TEST_SUITE_P(Matrix, UserApiUnauthenticated, ::testing::ValuesIn(UnauthenticatedCells()), CellName);

// A suspended account's valid tokens: PERMISSION_DENIED everywhere (the
// message says why), nothing of anyone else visible.
std::vector<Cell> SuspendedCells() {
  std::vector<Cell> cells;
  for (const Method& m : UserMethods()) cells.push_back({m, Cred::kSuspended});
  return cells;
}

class UserApiSuspended : public ::testing::TestWithParam<Cell> {};

TEST_P(UserApiSuspended, Refused) {
  ASSERT_NE(w, nullptr);
  const Cell& cell = GetParam();
  grpc::Status s = GenericCall(w->channel, cell.method.path(), Header(cell.cred));
  if (TakesNoToken(cell.method)) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  } else {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << cell.method.path() << ": code " << s.error_code() << " \"" << s.error_message() << "\"";
    EXPECT_THAT(s.error_message(), ::testing::HasSubstr("suspended"));
  }
  EXPECT_TRUE(Leaks(s.error_message()).empty());
  ExpectVictimIntact();
}

INSTANTIATE_TEST_SUITE_P(Matrix, UserApiSuspended, ::testing::ValuesIn(SuspendedCells()), CellName);

// The revoked token also ends a stream that was open when the device was
// removed (checked in its own cell: open, remove, the stream ends).
TEST(RevokedDevice, OpenStreamEndsUnauthenticatedWhenTheDeviceIsRemoved) {
  ASSERT_NE(w, nullptr);
  ApiClient& c = *w->api;
  Device dev;
  Device owner = Attacker();
  ASSERT_TRUE(c.Link(owner, &dev).ok());
  testing::Stream st(c, dev, 20);
  v1::ReceiveResponse r;
  ASSERT_TRUE(st.Read(&r));  // backlog_drained: the stream is up
  v1::RemoveDeviceRequest req;
  req.set_device_id(dev.device_id);
  v1::RemoveDeviceResponse resp;
  auto ctx = c.Ctx(owner);
  ASSERT_TRUE(c.accounts->RemoveDevice(ctx.get(), req, &resp).ok());
  while (st.Read(&r)) {
  }
  grpc::Status s = st.Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
}

// --------------------------------------------------- OtherAccount column

struct OtherCase {
  std::string service, name;
  // Calls the RPC with the attacker's token against alice's objects, checks
  // the status and what came back; returns the status and the response.
  std::function<void(const Device& eve)> run;
};

template <typename Resp>
void ExpectNoLeak(const grpc::Status& s, const Resp& resp) {
  EXPECT_THAT(Leaks(resp), ::testing::IsEmpty()) << "victim data in the response: " << resp.DebugString();
  // An error may name the id the caller sent (a conversation id it already
  // knows), but never message text, device names or keys.
  for (const std::string& leak : Leaks(s.error_message())) {
    if (leak == w->direct_id || leak == w->group_id) continue;
    ADD_FAILURE() << "victim data in the error: " << s.error_message();
  }
}

void ExpectCode(const grpc::Status& s, std::set<grpc::StatusCode> codes) {
  EXPECT_TRUE(codes.count(s.error_code()) > 0) << "code " << s.error_code() << " \"" << s.error_message() << "\"";
}

const grpc::StatusCode kDenied = grpc::StatusCode::PERMISSION_DENIED;
const grpc::StatusCode kNotFound = grpc::StatusCode::NOT_FOUND;
const grpc::StatusCode kOk = grpc::StatusCode::OK;

std::vector<OtherCase> OtherCases() {
  std::vector<OtherCase> v;
  auto& c = *w->api;
  // ---- AccountService
  v.push_back({"AccountService", "CreateAccount", [&c](const Device&) {
                 Device d;
                 grpc::Status s = c.Register(absl::StrCat("fresh", RandomHex(3)), &d);
                 ExpectCode(s, {kOk});  // public: a new account, nobody else's
                 EXPECT_NE(d.account_id, w->alice.account_id);
               }});
  v.push_back({"AccountService", "GetAccount", [&c](const Device& eve) {
                 // The directory is public (username, display name,
                 // attributes): needed to start a chat. Nothing else.
                 v1::GetAccountRequest req;
                 req.set_account_id(w->alice.account_id);
                 v1::GetAccountResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.accounts->GetAccount(ctx.get(), req, &resp);
                 ExpectCode(s, {kOk});
                 ExpectNoLeak(s, resp);
               }});
  v.push_back({"AccountService", "CreateDeviceLink", [&c](const Device& eve) {
                 // A code for eve's own account only.
                 v1::CreateDeviceLinkResponse code;
                 auto c1 = c.Ctx(eve);
                 grpc::Status s = c.accounts->CreateDeviceLink(c1.get(), {}, &code);
                 ExpectCode(s, {kOk});
                 v1::LinkDeviceRequest req;
                 req.set_link_code(code.link_code());
                 v1::LinkDeviceResponse resp;
                 auto c2 = ApiClient::Ctx("");
                 ASSERT_TRUE(c.accounts->LinkDevice(c2.get(), req, &resp).ok());
                 EXPECT_EQ(resp.account().account_id(), eve.account_id);
                 ExpectNoLeak(s, resp);
               }});
  v.push_back({"AccountService", "LinkDevice", [&c](const Device& eve) {
                 // Codes are the secret; a guessed one is unknown.
                 v1::LinkDeviceRequest req;
                 req.set_link_code(RandomHex(16));
                 v1::LinkDeviceResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.accounts->LinkDevice(ctx.get(), req, &resp);
                 ExpectCode(s, {kNotFound});
                 ExpectNoLeak(s, resp);
               }});
  v.push_back({"AccountService", "ListDevices", [&c](const Device& eve) {
                 v1::ListDevicesResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.accounts->ListDevices(ctx.get(), {}, &resp);
                 ExpectCode(s, {kOk});
                 EXPECT_EQ(resp.devices_size(), 1) << "eve sees devices that are not hers";
                 ExpectNoLeak(s, resp);
               }});
  v.push_back({"AccountService", "RemoveDevice", [&c](const Device& eve) {
                 // Device ids are per account: alice's laptop id names no
                 // device of eve's.
                 v1::RemoveDeviceRequest req;
                 req.set_device_id(w->laptop_id);
                 v1::RemoveDeviceResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.accounts->RemoveDevice(ctx.get(), req, &resp);
                 ExpectCode(s, {kNotFound, kDenied});
                 ExpectNoLeak(s, resp);
               }});
  // ---- ConversationService
  v.push_back({"ConversationService", "CreateDirect", [&c](const Device& eve) {
                 // Allowed (anyone may start a chat); a new conversation,
                 // never alice's existing one with bob.
                 v1::Conversation conv;
                 grpc::Status s = c.Direct(eve, "alice", &conv);
                 ExpectCode(s, {kOk});
                 EXPECT_NE(conv.conversation_id(), w->direct_id);
                 EXPECT_EQ(conv.last_message_seq(), 0u);
                 ExpectNoLeak(s, conv);
               }});
  v.push_back({"ConversationService", "CreateGroup", [&c](const Device& eve) {
                 v1::CreateGroupRequest req;
                 req.set_title("eve's group");
                 req.add_member_usernames("alice");
                 v1::CreateGroupResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.conversations->CreateGroup(ctx.get(), req, &resp);
                 ExpectCode(s, {kOk});
                 EXPECT_NE(resp.conversation().conversation_id(), w->group_id);
                 ExpectNoLeak(s, resp);
               }});
  v.push_back({"ConversationService", "GetConversation", [&c](const Device& eve) {
                 for (const std::string& id : {w->direct_id, w->group_id}) {
                   v1::GetConversationRequest req;
                   req.set_conversation_id(id);
                   v1::GetConversationResponse resp;
                   auto ctx = c.Ctx(eve);
                   grpc::Status s = c.conversations->GetConversation(ctx.get(), req, &resp);
                   ExpectCode(s, {kDenied, kNotFound});
                   ExpectNoLeak(s, resp);
                 }
               }});
  v.push_back({"ConversationService", "ListConversations", [&c](const Device& eve) {
                 v1::ListConversationsResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.conversations->ListConversations(ctx.get(), {}, &resp);
                 ExpectCode(s, {kOk});
                 EXPECT_EQ(resp.conversations_size(), 0);
                 ExpectNoLeak(s, resp);
               }});
  v.push_back({"ConversationService", "AddMembers", [&c](const Device& eve) {
                 v1::AddMembersRequest req;
                 req.set_conversation_id(w->group_id);
                 req.add_usernames(absl::StrCat("eve", w->attackers));
                 v1::AddMembersResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.conversations->AddMembers(ctx.get(), req, &resp);
                 ExpectCode(s, {kDenied, kNotFound});
                 ExpectNoLeak(s, resp);
               }});
  v.push_back({"ConversationService", "RemoveMember", [&c](const Device& eve) {
                 v1::RemoveMemberRequest req;
                 req.set_conversation_id(w->group_id);
                 req.set_account_id(w->bob.account_id);
                 v1::RemoveMemberResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.conversations->RemoveMember(ctx.get(), req, &resp);
                 ExpectCode(s, {kDenied, kNotFound});
                 ExpectNoLeak(s, resp);
               }});
  v.push_back({"ConversationService", "RequestSecurityChange", [&c](const Device& eve) {
                 v1::RequestSecurityChangeRequest req;
                 req.set_conversation_id(w->direct_id);
                 req.set_requested_mode(v1::SECURITY_MODE_E2EE);
                 v1::RequestSecurityChangeResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.conversations->RequestSecurityChange(ctx.get(), req, &resp);
                 ExpectCode(s, {kDenied, kNotFound});
                 ExpectNoLeak(s, resp);
               }});
  // ---- MessagingService
  v.push_back({"MessagingService", "Send", [&c](const Device& eve) {
                 for (const std::string& id : {w->direct_id, w->group_id}) {
                   v1::SendResponse resp;
                   grpc::Status s = c.SendText(eve, id, "x1", "eve was here", &resp);
                   ExpectCode(s, {kDenied, kNotFound});
                   ExpectNoLeak(s, resp);
                 }
               }});
  v.push_back({"MessagingService", "SendStream", [&c](const Device& eve) {
                 // Every Send on eve's stream is refused like the unary
                 // Send, and the answers leak nothing.
                 auto ctx = c.Ctx(eve);
                 auto rw = c.messaging->SendStream(ctx.get());
                 uint64_t id = 0;
                 for (const std::string& conv : {w->direct_id, w->group_id}) {
                   v1::SendStreamRequest req;
                   req.set_request_id(++id);
                   req.mutable_send()->set_conversation_id(conv);
                   req.mutable_send()->set_client_message_id(absl::StrCat("x", id));
                   req.mutable_send()->mutable_body()->mutable_plain()->set_content("eve was here");
                   EXPECT_TRUE(rw->Write(req));
                 }
                 EXPECT_TRUE(rw->WritesDone());
                 v1::SendStreamResponse resp;
                 int answers = 0;
                 while (rw->Read(&resp)) {
                   ++answers;
                   ASSERT_TRUE(resp.has_error()) << resp.DebugString();
                   // The same rule as for a unary error: it may name the
                   // conversation id eve sent, nothing else of the victim.
                   const grpc::Status as_status(static_cast<grpc::StatusCode>(resp.error().code()),
                                                resp.error().message());
                   ExpectCode(as_status, {kDenied, kNotFound});
                   ExpectNoLeak(as_status, v1::SendStreamResponse());
                   EXPECT_EQ(resp.error().details_size(), 0);
                 }
                 EXPECT_EQ(answers, 2);
                 EXPECT_TRUE(rw->Finish().ok());
               }});
  v.push_back({"MessagingService", "Receive", [&c](const Device& eve) {
                 // eve's own (empty) queue; nothing of alice's or bob's.
                 testing::Stream st(c, eve, 10);
                 v1::ReceiveResponse r;
                 int envelopes = 0;
                 while (st.Read(&r) && !r.has_backlog_drained()) {
                   ++envelopes;
                   EXPECT_THAT(Leaks(r), ::testing::IsEmpty()) << r.DebugString();
                 }
                 EXPECT_TRUE(r.has_backlog_drained());
                 EXPECT_EQ(envelopes, 0);
               }});
  v.push_back({"MessagingService", "Ack", [&c](const Device& eve) {
                 // bob's delivery ids, acked by eve: nothing of bob's goes.
                 v1::AckRequest req;
                 for (uint64_t id : w->bob_delivery_ids) req.add_delivery_ids(id);
                 v1::AckResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.messaging->Ack(ctx.get(), req, &resp);
                 ExpectCode(s, {kOk, kNotFound, kDenied});
                 EXPECT_EQ(resp.removed(), 0u);
                 EXPECT_EQ(CountEnvelopes(w->bob), w->bob_queue) << "eve's Ack removed bob's queue entries";
               }});
  v.push_back({"MessagingService", "GetHistory", [&c](const Device& eve) {
                 for (const std::string& id : {w->direct_id, w->group_id}) {
                   v1::GetHistoryRequest req;
                   req.set_conversation_id(id);
                   v1::GetHistoryResponse resp;
                   auto ctx = c.Ctx(eve);
                   grpc::Status s = c.messaging->GetHistory(ctx.get(), req, &resp);
                   ExpectCode(s, {kDenied, kNotFound});
                   EXPECT_EQ(resp.messages_size(), 0);
                   ExpectNoLeak(s, resp);
                 }
               }});
  v.push_back({"MessagingService", "ReportMessage", [&c](const Device& eve) {
                 // Only members may report (UNIMPLEMENTED until the safety
                 // work lands).
                 v1::ReportMessageRequest req;
                 req.set_conversation_id(w->direct_id);
                 req.set_seq(1);
                 req.set_reason(v1::REPORT_REASON_SPAM);
                 v1::ReportMessageResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.messaging->ReportMessage(ctx.get(), req, &resp);
                 ExpectCode(s, {kDenied, kNotFound, grpc::StatusCode::UNIMPLEMENTED});
                 ExpectNoLeak(s, resp);
               }});
  // ---- KeyService
  v.push_back({"KeyService", "UploadKeys", [&c](const Device& eve) {
                 // eve's own keys; alice's stay (ExpectVictimIntact).
                 KeyMaker::Install install(&w->keys, 777);
                 v1::UploadKeysResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.keys->UploadKeys(ctx.get(), install.Upload(5), &resp);
                 ExpectCode(s, {kOk});
                 v1::GetPreKeyCountResponse count;
                 auto c2 = c.Ctx(eve);
                 ASSERT_TRUE(c.keys->GetPreKeyCount(c2.get(), {}, &count).ok());
                 EXPECT_EQ(count.count(), 5u);
               }});
  v.push_back({"KeyService", "GetPreKeyCount", [&c](const Device& eve) {
                 v1::GetPreKeyCountResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.keys->GetPreKeyCount(ctx.get(), {}, &resp);
                 ExpectCode(s, {kOk});
                 EXPECT_EQ(resp.count(), 0u) << "eve sees a pre-key count that is not hers";
                 ExpectNoLeak(s, resp);
               }});
  v.push_back({"KeyService", "FetchBundles", [&c](const Device& eve) {
                 // The key directory is public by design (anyone may start
                 // an E2EE session with alice): public keys only, one
                 // bundle per device with keys.
                 v1::FetchBundlesRequest req;
                 req.set_account_id(w->alice.account_id);
                 v1::FetchBundlesResponse resp;
                 auto ctx = c.Ctx(eve);
                 grpc::Status s = c.keys->FetchBundles(ctx.get(), req, &resp);
                 ExpectCode(s, {kOk});
                 ASSERT_EQ(resp.bundles_size(), 1);
                 EXPECT_EQ(resp.bundles(0).identity_key(), w->alice_identity_key);
                 // Only the public key fields of v1::PreKeyBundle exist;
                 // check no device name, conversation or text rides along.
                 const std::string bytes = resp.SerializeAsString();
                 for (const std::string& secret : {w->direct_id, w->group_id, w->secret_text, w->laptop_name}) {
                   EXPECT_EQ(bytes.find(secret), std::string::npos);
                 }
               }});
  return v;
}

class OtherAccount : public ::testing::TestWithParam<std::string> {};

TEST_P(OtherAccount, SeesNothingOfTheVictim) {
  ASSERT_NE(w, nullptr);
  for (const OtherCase& oc : OtherCases()) {
    if (absl::StrCat(oc.service, "_", oc.name) != GetParam()) continue;
    Device eve = Attacker();
    oc.run(eve);
    ExpectVictimIntact();
    return;
  }
  FAIL() << "no OtherAccount case for " << GetParam();
}

std::vector<std::string> OtherAccountCells() {
  std::vector<std::string> v;
  for (const Method& m : UserMethods()) v.push_back(absl::StrCat(m.service, "_", m.name));
  return v;
}

INSTANTIATE_TEST_SUITE_P(Matrix, OtherAccount, ::testing::ValuesIn(OtherAccountCells()),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           return absl::StrCat(i.param, "__OtherAccount");
                         });

// ------------------------------------------------------------ admin API

std::vector<std::string> AdminMethods() {
  std::vector<std::string> out;
  const google::protobuf::ServiceDescriptor* s =
      v1::WhoAmIRequest::descriptor()->file()->FindServiceByName("AdminService");
  if (s == nullptr) return out;
  for (int i = 0; i < s->method_count(); ++i) out.push_back(s->method(i)->name());
  return out;
}

enum class AdminCred { kDeviceToken, kRevokedDeviceToken, kNoToken, kMalformed, kDeviceTokenWithAdminPrefix };

const char* AdminCredName(AdminCred c) {
  switch (c) {
    case AdminCred::kDeviceToken: return "DeviceToken";
    case AdminCred::kRevokedDeviceToken: return "RevokedDeviceToken";
    case AdminCred::kNoToken: return "NoToken";
    case AdminCred::kMalformed: return "Malformed";
    case AdminCred::kDeviceTokenWithAdminPrefix: return "DeviceTokenWithAdminPrefix";
  }
  return "?";
}

struct AdminCell {
  std::string method;
  AdminCred cred;
};

void PrintTo(const AdminCell& c, std::ostream* os) { *os << c.method << " with " << AdminCredName(c.cred); }

std::vector<AdminCell> AdminCells() {
  std::vector<AdminCell> v;
  for (const std::string& m : AdminMethods()) {
    for (AdminCred c : {AdminCred::kDeviceToken, AdminCred::kRevokedDeviceToken, AdminCred::kNoToken,
                        AdminCred::kMalformed, AdminCred::kDeviceTokenWithAdminPrefix}) {
      v.push_back({m, c});
    }
  }
  return v;
}

class AdminApi : public ::testing::TestWithParam<AdminCell> {};

TEST_P(AdminApi, DeviceCredentialsNeverWork) {
  ASSERT_NE(w, nullptr);
  const AdminCell& cell = GetParam();
  std::string header;
  switch (cell.cred) {
    case AdminCred::kDeviceToken: header = "Bearer " + w->alice.token; break;
    case AdminCred::kRevokedDeviceToken: header = "Bearer " + w->revoked_token; break;
    case AdminCred::kNoToken: break;
    case AdminCred::kMalformed: header = "Bearer padm_not-hex"; break;
    case AdminCred::kDeviceTokenWithAdminPrefix: header = "Bearer padm_" + w->alice.token; break;
  }
  grpc::Status s = GenericCall(w->admin_channel, "/parley.v1.AdminService/" + cell.method, header);
  EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
              s.error_code() == grpc::StatusCode::PERMISSION_DENIED)
      << cell.method << " with " << AdminCredName(cell.cred) << ": code " << s.error_code() << " \""
      << s.error_message() << "\"";
  EXPECT_THAT(s.error_message(), ::testing::Not(::testing::HasSubstr(w->alice.token)));
}

INSTANTIATE_TEST_SUITE_P(Matrix, AdminApi, ::testing::ValuesIn(AdminCells()),
                         [](const ::testing::TestParamInfo<AdminCell>& i) {
                           return absl::StrCat(i.param.method, "__", AdminCredName(i.param.cred));
                         });

// The control: the operator token does work there (so the refusals above
// are about the credential, not a broken channel).
TEST(AdminApiControl, OperatorTokenWorks) {
  ASSERT_NE(w, nullptr);
  auto stub = v1::AdminService::NewStub(w->admin_channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + w->operator_token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::WhoAmIResponse resp;
  grpc::Status s = stub->WhoAmI(&ctx, {}, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// Every RPC of the user API has an OtherAccount case (a new RPC needs one).
TEST(Coverage, EveryRpcHasAnOtherAccountCase) {
  ASSERT_NE(w, nullptr);
  std::set<std::string> have;
  for (const OtherCase& oc : OtherCases()) have.insert(absl::StrCat(oc.service, "_", oc.name));
  for (const Method& m : UserMethods()) {
    EXPECT_TRUE(have.count(absl::StrCat(m.service, "_", m.name)))
        << m.path() << " has no OtherAccount case in authz_matrix_test.cc";
  }
  EXPECT_GE(UserMethods().size(), 21u);
  EXPECT_GE(AdminMethods().size(), 14u);
}

}  // namespace
}  // namespace parley

// The shared parleyd for every cell.
static ::testing::Environment* const kAuthzEnv = ::testing::AddGlobalTestEnvironment(new parley::AuthzEnvironment);
