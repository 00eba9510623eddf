// Integration tests of live policy switching: the real server (TLS, RocksDB
// in a temp directory, port 0), its admin service, and Receive streams.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <atomic>
#include <filesystem>
#include <thread>

#include "core/audit.h"
#include "core/presets.h"
#include "core/server.h"
#include "core/statement.h"
#include "core/tls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parley/v1/admin.grpc.pb.h"
#include "tests/support/api_client.h"

namespace parley {
namespace {

using ::parley::testing::ApiClient;
using ::parley::testing::Device;
using ::parley::testing::Stream;
using ::testing::HasSubstr;

constexpr int64_t kDay = 24 * 3600 * 1000;

std::string Preset(const std::string& name) {
  const core::BuiltinPreset* p = core::FindPreset(name);
  EXPECT_NE(p, nullptr) << name;
  return p ? p->content : "";
}

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_pt_XXXXXX";
    dir_ = mkdtemp(tmpl);
    Start();
  }
  void TearDown() override {
    client_.reset();
    admin_.reset();
    if (server_) server_->Shutdown();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Start() {
    core::ServerOptions o;
    o.data_dir = dir_;
    o.listen = "127.0.0.1:0";
    o.admin_listen = "127.0.0.1:0";
    o.policy_file = policy_file_;
    o.scheduler_interval_ms = 20;
    o.clock = [this] { return now_ms_.load(); };
    auto s = core::Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto ca = core::ReadFile(server_->ca_cert_path());
    ASSERT_TRUE(ca.ok());
    ca_pem_ = *ca;
    client_ = std::make_unique<ApiClient>(
        testing::MakeChannel("127.0.0.1:" + std::to_string(server_->port()), ca_pem_));
    admin_ = v1::AdminService::NewStub(
        testing::MakeChannel("127.0.0.1:" + std::to_string(server_->admin_port()), ca_pem_));
    auto tok = core::ReadFile(server_->admin_token_file());
    ASSERT_TRUE(tok.ok()) << tok.status();
    operator_token_ = tok->substr(0, tok->find('\n'));
  }
  void Restart() {
    client_.reset();
    admin_.reset();
    server_->Shutdown();
    server_.reset();
    Start();
  }
  Device Reg(const std::string& name, v1::AgeBand age = v1::AGE_BAND_ADULT) {
    Device d;
    v1::AccountAttributes attrs;
    attrs.set_age_band(age);
    grpc::Status s = client_->Register(name, &d, attrs);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return d;
  }
  v1::Conversation Direct(const Device& a, const Device& b) {
    v1::Conversation c;
    grpc::Status s = client_->Direct(a, b.username, &c);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return c;
  }
  v1::Conversation Group(const Device& admin, const std::vector<std::string>& members) {
    v1::CreateGroupRequest req;
    req.set_title("g");
    for (const auto& m : members) req.add_member_usernames(m);
    v1::CreateGroupResponse resp;
    auto ctx = client_->Ctx(admin);
    grpc::Status s = client_->conversations->CreateGroup(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.conversation();
  }
  // parleyd restarted under preset:signal, alice and bob in an E2EE direct
  // conversation, then instagram-2026 applied: its downgrade is announced.
  void AnnounceDowngrade(Device* a, Device* b, v1::Conversation* dm) {
    policy_file_ = "preset:signal";
    Restart();
    *a = Reg("alice");
    *b = Reg("bob");
    *dm = Direct(*a, *b);
    ASSERT_TRUE(Apply(Preset("instagram-2026")).ok());
    ASSERT_TRUE(Get(*a, dm->conversation_id()).security().has_pending());
  }
  v1::Conversation Get(const Device& d, const std::string& id) {
    v1::GetConversationRequest req;
    req.set_conversation_id(id);
    v1::GetConversationResponse resp;
    auto ctx = client_->Ctx(d);
    EXPECT_TRUE(client_->conversations->GetConversation(ctx.get(), req, &resp).ok());
    return resp.conversation();
  }
  std::unique_ptr<grpc::ClientContext> AdminCtx(const std::string& token) {
    return ApiClient::Ctx(token, 60);
  }
  grpc::Status Apply(const std::string& content, v1::ApplyPolicyResponse* out = nullptr,
                     const std::string& token = "") {
    v1::ApplyPolicyRequest req;
    req.set_content(content);
    req.set_file_name("test.yaml");
    req.set_comment("test");
    v1::ApplyPolicyResponse resp;
    auto ctx = AdminCtx(token.empty() ? operator_token_ : token);
    grpc::Status s = admin_->ApplyPolicy(ctx.get(), req, &resp);
    if (out) *out = resp;
    return s;
  }
  grpc::Status RequestChange(const Device& d, const std::string& conv, v1::SecurityMode m,
                             v1::RequestSecurityChangeResponse* out = nullptr) {
    v1::RequestSecurityChangeRequest req;
    req.set_conversation_id(conv);
    req.set_requested_mode(m);
    v1::RequestSecurityChangeResponse resp;
    auto ctx = client_->Ctx(d);
    grpc::Status s = client_->conversations->RequestSecurityChange(ctx.get(), req, &resp);
    if (out) *out = resp;
    return s;
  }
  std::string RevisionFor(uint64_t number) {
    v1::GetPolicyRequest req;
    req.set_number(number);
    v1::GetPolicyResponse resp;
    auto ctx = AdminCtx(operator_token_);
    EXPECT_TRUE(admin_->GetPolicy(ctx.get(), req, &resp).ok());
    return resp.revision().revision_id();
  }
  // A token of `role` created by the operator.
  std::string Token(v1::AdminRole role, const std::string& name, std::string* id = nullptr) {
    v1::CreateTokenRequest req;
    req.set_role(role);
    req.set_name(name);
    v1::CreateTokenResponse resp;
    auto ctx = AdminCtx(operator_token_);
    grpc::Status s = admin_->CreateToken(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (id) *id = resp.token().token_id();
    return resp.secret();
  }
  // Reads envelopes until `pred` matches, within a bound.
  bool NextMatching(Stream& st, const std::function<bool(const v1::Message&)>& pred, v1::Message* out) {
    v1::Envelope e;
    for (int i = 0; i < 50 && st.NextEnvelope(&e); ++i) {
      if (pred(e.message())) {
        *out = e.message();
        return true;
      }
    }
    return false;
  }
  // The next content or security event (membership events skipped).
  v1::Message NextEvent(Stream& st) {
    v1::Message m;
    EXPECT_TRUE(NextMatching(
        st, [](const v1::Message& m) { return m.has_plain() || m.has_security_change(); }, &m));
    return m;
  }

  std::string dir_, ca_pem_, operator_token_, policy_file_;
  std::atomic<int64_t> now_ms_{std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()};
  std::unique_ptr<core::Server> server_;
  std::unique_ptr<ApiClient> client_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(PolicyTest, FirstStartUsesTheDefaultPresetAsRevisionOne) {
  v1::GetPolicyResponse resp;
  auto ctx = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->GetPolicy(ctx.get(), {}, &resp).ok());
  EXPECT_EQ(resp.revision().number(), 1u);
  EXPECT_EQ(resp.revision().name(), core::kDefaultPreset);
  EXPECT_EQ(resp.revision().author(), "parleyd");
  EXPECT_TRUE(resp.revision().current());
  EXPECT_EQ(resp.content(), Preset(core::kDefaultPreset));
  // messenger-2016: 1:1 opt-in, groups transport.
  Device a = Reg("alice"), b = Reg("bob");
  v1::Conversation dm = Direct(a, b);
  EXPECT_EQ(dm.security().mode(), v1::SECURITY_MODE_OPT_IN);
  EXPECT_EQ(dm.security().policy_revision(), resp.revision().revision_id());
  EXPECT_EQ(dm.security().rule_id(), "direct-opt-in");
  EXPECT_FALSE(dm.security().notice().empty());
  EXPECT_EQ(Group(a, {"bob"}).security().mode(), v1::SECURITY_MODE_TRANSPORT);
  // The operator token file is private.
  EXPECT_EQ(std::filesystem::status(server_->admin_token_file()).permissions() &
                std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST_F(PolicyTest, ApplyWhileStreamsAreOpenDeliversEventsInOrderWithMessages) {
  Device a = Reg("alice"), b = Reg("bob");
  v1::Conversation dm = Direct(a, b);
  Stream sb(*client_, b);
  ASSERT_TRUE(client_->SendText(a, dm.conversation_id(), "m1", "before").ok());

  v1::ApplyPolicyResponse applied;
  grpc::Status s = Apply(Preset("signal"), &applied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(applied.revision().number(), 2u);
  EXPECT_EQ(applied.conversations_changed(), 1u);
  ASSERT_EQ(applied.result().transitions_size(), 1);
  EXPECT_EQ(applied.result().transitions(0).from_mode(), v1::SECURITY_MODE_OPT_IN);
  EXPECT_EQ(applied.result().transitions(0).to_mode(), v1::SECURITY_MODE_E2EE);

  // Plaintext is now refused, naming mode, rule and revision; nothing stored.
  s = client_->SendText(a, dm.conversation_id(), "m2", "refused");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("end-to-end encrypted"));
  EXPECT_THAT(s.error_message(), HasSubstr("rule default"));
  EXPECT_THAT(s.error_message(), HasSubstr(applied.revision().revision_id()));

  // Back to transport (tiktok): a weakening rule with existing_e2ee: keep
  // (the default) keeps the conversation E2EE.
  // Its members are told why it stays E2EE (same mode, new reason: an event).
  ASSERT_TRUE(Apply(Preset("tiktok"), &applied).ok());
  EXPECT_EQ(applied.conversations_changed(), 1u);
  EXPECT_EQ(applied.result().e2ee_kept(), 1u);
  EXPECT_EQ(applied.result().transitions_size(), 0);
  EXPECT_EQ(applied.result().other_changes(), 1u);
  v1::SecurityState kept = Get(a, dm.conversation_id()).security();
  EXPECT_EQ(kept.mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_THAT(kept.reason(), HasSubstr("existing E2EE is kept"));
  EXPECT_EQ(kept.policy_revision(), RevisionFor(3));
  // The same decision again (a new revision deciding the same): no change.
  ASSERT_TRUE(Apply(Preset("tiktok") + "# comment only\n", &applied).ok());
  EXPECT_EQ(applied.conversations_changed(), 0u);
  EXPECT_EQ(applied.result().unchanged(), 1u);

  v1::Message m1 = NextEvent(sb);
  EXPECT_EQ(m1.plain().content(), "before");
  v1::Message ev = NextEvent(sb);
  ASSERT_TRUE(ev.has_security_change()) << ev.DebugString();
  EXPECT_GT(ev.seq(), m1.seq());
  const auto& sc = ev.security_change();
  EXPECT_EQ(sc.old_state().mode(), v1::SECURITY_MODE_OPT_IN);
  EXPECT_EQ(sc.new_state().mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_EQ(sc.new_state().epoch(), sc.old_state().epoch() + 1);
  EXPECT_EQ(ev.security_epoch(), sc.new_state().epoch());
  EXPECT_EQ(sc.new_state().rule_id(), "default");
  EXPECT_EQ(sc.new_state().policy_revision(), RevisionFor(2));
  EXPECT_FALSE(sc.reason().empty());
  EXPECT_GT(sc.effective_at_ms(), 0);
  // The history shows the switch too.
  v1::GetHistoryRequest hr;
  hr.set_conversation_id(dm.conversation_id());
  v1::GetHistoryResponse hist;
  auto ctx = client_->Ctx(a);
  ASSERT_TRUE(client_->messaging->GetHistory(ctx.get(), hr, &hist).ok());
  ASSERT_EQ(hist.messages_size(), 3);  // newest first: kept (tiktok), E2EE on (signal), message
  EXPECT_TRUE(hist.messages(0).has_security_change());
  EXPECT_TRUE(hist.messages(1).has_security_change());
  EXPECT_EQ(hist.messages(2).plain().content(), "before");
}

TEST_F(PolicyTest, DowngradeIsAnnouncedAndWaitsForItsNoticePeriod) {
  policy_file_ = "preset:signal";
  Restart();
  Device a = Reg("alice"), b = Reg("bob");
  v1::Conversation dm = Direct(a, b);
  ASSERT_EQ(dm.security().mode(), v1::SECURITY_MODE_E2EE);
  Stream sb(*client_, b);

  v1::ApplyPolicyResponse applied;
  ASSERT_TRUE(Apply(Preset("instagram-2026"), &applied).ok());
  EXPECT_EQ(applied.conversations_changed(), 1u);
  ASSERT_EQ(applied.result().downgrades_size(), 1);
  EXPECT_EQ(applied.result().downgrades(0).count(), 1u);

  // Announced: still E2EE, with the downgrade scheduled 30 days out.
  v1::Message ev = NextEvent(sb);
  ASSERT_TRUE(ev.has_security_change());
  const auto& ns = ev.security_change().new_state();
  EXPECT_EQ(ns.mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_EQ(ns.pending().new_mode(), v1::SECURITY_MODE_TRANSPORT);
  EXPECT_EQ(ns.pending().effective_at_ms(), now_ms_.load() + 30 * kDay);
  EXPECT_THAT(ns.notice(), HasSubstr("ends on"));
  EXPECT_EQ(client_->SendText(a, dm.conversation_id(), "x", "too early").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // 29 days later nothing has changed; after 30 days the scheduler switches.
  now_ms_ += 29 * kDay;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(Get(a, dm.conversation_id()).security().mode(), v1::SECURITY_MODE_E2EE);
  now_ms_ += kDay + 1;
  v1::Message down = NextEvent(sb);
  ASSERT_TRUE(down.has_security_change()) << down.DebugString();
  EXPECT_EQ(down.security_change().old_state().mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_EQ(down.security_change().new_state().mode(), v1::SECURITY_MODE_TRANSPORT);
  EXPECT_TRUE(down.security_change().new_state().e2ee_ever_enabled());
  EXPECT_FALSE(down.security_change().new_state().has_pending());
  ASSERT_TRUE(client_->SendText(a, dm.conversation_id(), "y", "now readable").ok());
  EXPECT_EQ(NextEvent(sb).plain().content(), "now readable");
}

// The schedule of announced changes lives in memory; parleyd rebuilds it at
// start from the stored conversations (in the start-up re-evaluation walk).
TEST_F(PolicyTest, DowngradeAnnouncedBeforeARestartHappensAfterIt) {
  Device a, b;
  v1::Conversation dm;
  ASSERT_NO_FATAL_FAILURE(AnnounceDowngrade(&a, &b, &dm));

  policy_file_.clear();  // the applied revision stays in force
  Restart();
  EXPECT_EQ(Get(a, dm.conversation_id()).security().mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_TRUE(Get(a, dm.conversation_id()).security().has_pending());
  now_ms_ += 30 * kDay + 1;
  v1::SecurityState after;
  for (int i = 0; i < 500; ++i) {  // the scheduler runs every 20 ms; at most 10 s
    after = Get(a, dm.conversation_id()).security();
    if (after.mode() == v1::SECURITY_MODE_TRANSPORT) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(after.mode(), v1::SECURITY_MODE_TRANSPORT) << after.DebugString();
  EXPECT_FALSE(after.has_pending());
}

TEST_F(PolicyTest, RollbackCreatesANewRevisionAndCancelsAnnouncedDowngrades) {
  Device a, b;
  v1::Conversation dm;
  ASSERT_NO_FATAL_FAILURE(AnnounceDowngrade(&a, &b, &dm));

  // r1 is the default preset (first start), r2 signal (restart), r3 instagram.
  v1::RollbackPolicyRequest rb;
  rb.set_number(2);
  rb.set_comment("users complained");
  v1::ApplyPolicyResponse resp;
  auto ctx = AdminCtx(operator_token_);
  grpc::Status s = admin_->RollbackPolicy(ctx.get(), rb, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.revision().number(), 4u);
  EXPECT_EQ(resp.revision().rollback_of(), 2u);
  EXPECT_EQ(resp.conversations_changed(), 1u);
  v1::SecurityState st = Get(a, dm.conversation_id()).security();
  EXPECT_EQ(st.mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_FALSE(st.has_pending());
  EXPECT_EQ(st.epoch(), 3u);

  // History: newest first, chained by hash.
  v1::ListPolicyRevisionsResponse hist;
  auto c2 = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->ListPolicyRevisions(c2.get(), {}, &hist).ok());
  ASSERT_EQ(hist.revisions_size(), 4);
  EXPECT_EQ(hist.revisions(0).number(), 4u);
  EXPECT_TRUE(hist.revisions(0).current());
  EXPECT_EQ(hist.revisions(0).content_hash(), hist.revisions(2).content_hash());
  EXPECT_EQ(hist.revisions(0).previous_hash(), hist.revisions(1).content_hash());
  EXPECT_EQ(hist.revisions(1).previous_hash(), hist.revisions(2).content_hash());
  EXPECT_EQ(hist.revisions(0).comment(), "users complained");
  EXPECT_EQ(hist.revisions(0).author(), "initial-operator");

  // Errors: unknown revision, missing comment, identical to current.
  rb.set_number(99);
  auto c3 = AdminCtx(operator_token_);
  EXPECT_EQ(admin_->RollbackPolicy(c3.get(), rb, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  rb.set_number(3);
  rb.clear_comment();
  auto c4 = AdminCtx(operator_token_);
  s = admin_->RollbackPolicy(c4.get(), rb, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("comment"));
  rb.set_number(2);
  rb.set_comment("again");
  auto c5 = AdminCtx(operator_token_);
  EXPECT_EQ(admin_->RollbackPolicy(c5.get(), rb, &resp).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(PolicyTest, RevisionsSurviveRestartAndPolicyFlagAppliesOnlyWhenDifferent) {
  ASSERT_TRUE(Apply(Preset("telegram")).ok());
  Restart();  // no --policy: the applied revision stays in force
  EXPECT_EQ(RevisionFor(0), RevisionFor(2));
  policy_file_ = "preset:telegram";
  Restart();  // same content: no new revision
  v1::ListPolicyRevisionsResponse hist;
  auto c1 = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->ListPolicyRevisions(c1.get(), {}, &hist).ok());
  EXPECT_EQ(hist.revisions_size(), 2);
  policy_file_ = "preset:tiktok";
  Restart();
  auto c2 = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->ListPolicyRevisions(c2.get(), {}, &hist).ok());
  ASSERT_EQ(hist.revisions_size(), 3);
  EXPECT_EQ(hist.revisions(0).author(), "parleyd");
  EXPECT_EQ(hist.revisions(0).name(), "tiktok");
}

TEST_F(PolicyTest, ParticipantsTurnE2eeOnWithConsent) {
  // Groups need every member's consent; 1:1 chats need one.
  const std::string doc = R"(version: 1
name: consent
rules:
  - id: groups-all-consent
    when: {kind: group}
    mode: opt_in
    transitions: {enable: all, disable: all}
    transport: {retention_days: 30, moderation: reports}
    reason: Groups switch when every member agrees.
  - id: default
    mode: opt_in
    transitions: {enable: any, disable: never}
    transport: {retention_days: 30, moderation: reports}
    reason: One participant may turn it on, for good.
)";
  grpc::Status applied = Apply(doc);
  ASSERT_TRUE(applied.ok()) << applied.error_message();
  Device a = Reg("alice"), b = Reg("bob"), c = Reg("carol"), m = Reg("mallory");
  v1::Conversation g = Group(a, {"bob", "carol"});
  Stream sc(*client_, c);

  v1::RequestSecurityChangeResponse r;
  ASSERT_TRUE(RequestChange(a, g.conversation_id(), v1::SECURITY_MODE_E2EE, &r).ok());
  EXPECT_TRUE(r.pending_consent());
  EXPECT_EQ(r.consents(), 1u);
  EXPECT_EQ(r.consents_required(), 3u);
  EXPECT_EQ(r.state().mode(), v1::SECURITY_MODE_OPT_IN);
  EXPECT_THAT(r.state().enable_requested_by(), ::testing::ElementsAre(a.account_id));
  // Asking twice counts once.
  ASSERT_TRUE(RequestChange(a, g.conversation_id(), v1::SECURITY_MODE_E2EE, &r).ok());
  EXPECT_EQ(r.consents(), 1u);
  ASSERT_TRUE(RequestChange(b, g.conversation_id(), v1::SECURITY_MODE_E2EE, &r).ok());
  EXPECT_TRUE(r.pending_consent());
  ASSERT_TRUE(RequestChange(c, g.conversation_id(), v1::SECURITY_MODE_E2EE, &r).ok());
  EXPECT_FALSE(r.pending_consent());
  EXPECT_EQ(r.state().mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_TRUE(r.state().set_by_participants());
  EXPECT_EQ(r.state().enable_requested_by_size(), 0);
  v1::Message ev = NextEvent(sc);
  ASSERT_TRUE(ev.has_security_change());
  EXPECT_EQ(ev.sender_account_id(), c.account_id);
  EXPECT_EQ(ev.security_change().new_state().mode(), v1::SECURITY_MODE_E2EE);

  // Errors: already on; not a member; bad mode; unknown conversation.
  grpc::Status s = RequestChange(a, g.conversation_id(), v1::SECURITY_MODE_E2EE);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("already"));
  EXPECT_EQ(RequestChange(m, g.conversation_id(), v1::SECURITY_MODE_TRANSPORT).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(RequestChange(a, g.conversation_id(), v1::SECURITY_MODE_UNSPECIFIED).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(RequestChange(a, "c_000000000000000000000000", v1::SECURITY_MODE_E2EE).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(RequestChange(a, "nope", v1::SECURITY_MODE_E2EE).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Turning it off needs everyone too; a 1:1 chat cannot turn it off at all.
  ASSERT_TRUE(RequestChange(a, g.conversation_id(), v1::SECURITY_MODE_TRANSPORT, &r).ok());
  EXPECT_TRUE(r.pending_consent());
  v1::Conversation dm = Direct(a, b);
  ASSERT_TRUE(RequestChange(b, dm.conversation_id(), v1::SECURITY_MODE_E2EE, &r).ok());
  EXPECT_EQ(r.state().mode(), v1::SECURITY_MODE_E2EE);
  s = RequestChange(a, dm.conversation_id(), v1::SECURITY_MODE_TRANSPORT);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("rule default"));

  // A participants' choice survives a policy re-evaluation.
  ASSERT_TRUE(Apply(doc + "# same rules, new revision\n").ok());
  EXPECT_EQ(Get(a, dm.conversation_id()).security().mode(), v1::SECURITY_MODE_E2EE);
}

TEST_F(PolicyTest, RequestsTheRuleForbidsAreRefusedNamingRuleAndRevision) {
  Device a = Reg("alice"), b = Reg("bob");
  ASSERT_TRUE(Apply(Preset("tiktok")).ok());
  v1::Conversation dm = Direct(a, b);
  grpc::Status s = RequestChange(a, dm.conversation_id(), v1::SECURITY_MODE_E2EE);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("rule default"));
  EXPECT_THAT(s.error_message(), HasSubstr(RevisionFor(2)));
  ASSERT_TRUE(Apply(Preset("signal")).ok());
  v1::Conversation now = Get(a, dm.conversation_id());
  ASSERT_EQ(now.security().mode(), v1::SECURITY_MODE_E2EE);
  s = RequestChange(a, dm.conversation_id(), v1::SECURITY_MODE_TRANSPORT);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("locks"));
}

TEST_F(PolicyTest, InvalidDocumentsAreRefusedWithLineAndFieldAndChangeNothing) {
  const std::string bad = "version: 1\nname: bad\nrules:\n  - id: default\n    mode: sometimes\n";
  v1::ApplyPolicyResponse resp;
  grpc::Status s = Apply(bad, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("test.yaml:5"));
  EXPECT_THAT(s.error_message(), HasSubstr("mode"));
  EXPECT_EQ(RevisionFor(0), RevisionFor(1));

  v1::ValidatePolicyRequest vr;
  vr.set_content(bad);
  vr.set_file_name("x.yaml");
  v1::ValidatePolicyResponse vresp;
  auto ctx = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->ValidatePolicy(ctx.get(), vr, &vresp).ok());
  EXPECT_FALSE(vresp.valid());
  EXPECT_THAT(vresp.errors(), HasSubstr("x.yaml:5"));
  vr.set_content(Preset("signal"));
  auto c2 = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->ValidatePolicy(c2.get(), vr, &vresp).ok());
  EXPECT_TRUE(vresp.valid());
  EXPECT_EQ(vresp.name(), "signal");

  EXPECT_EQ(Apply("").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::ApplyPolicyRequest no_comment;
  no_comment.set_content(Preset("signal"));
  auto c3 = AdminCtx(operator_token_);
  EXPECT_EQ(admin_->ApplyPolicy(c3.get(), no_comment, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Apply(Preset(core::kDefaultPreset)).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(PolicyTest, PlanCountsWithoutChangingAndExplainShowsTheDecision) {
  Device a = Reg("alice"), b = Reg("bob"), c = Reg("carol");
  v1::Conversation d1 = Direct(a, b), d2 = Direct(a, c);
  v1::Conversation g = Group(a, {"bob", "carol"});
  v1::PlanPolicyRequest req;
  req.set_content(Preset("signal"));
  auto ctx = AdminCtx(operator_token_);
  auto reader = admin_->PlanPolicy(ctx.get(), req);
  v1::PlanPolicyResponse r;
  v1::PolicyPlan plan;
  while (reader->Read(&r)) {
    if (r.has_plan()) plan = r.plan();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(plan.conversations(), 3u);
  EXPECT_EQ(plan.unchanged(), 0u);
  ASSERT_EQ(plan.transitions_size(), 2);
  uint64_t total = 0;
  for (const auto& t : plan.transitions()) {
    EXPECT_EQ(t.to_mode(), v1::SECURITY_MODE_E2EE);
    total += t.count();
    if (t.from_mode() == v1::SECURITY_MODE_OPT_IN) {
      EXPECT_EQ(t.count(), 2u);
      EXPECT_EQ(t.sample_conversation_ids_size(), 2);
    }
  }
  EXPECT_EQ(total, 3u);
  ASSERT_EQ(plan.rules_size(), 1);
  EXPECT_EQ(plan.rules(0).rule_id(), "default");
  // Nothing changed.
  EXPECT_EQ(Get(a, d1.conversation_id()).security().epoch(), 1u);

  v1::ExplainConversationRequest er;
  er.set_conversation_id(g.conversation_id());
  v1::ExplainConversationResponse ex;
  auto c2 = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->ExplainConversation(c2.get(), er, &ex).ok());
  EXPECT_EQ(ex.decided_mode(), v1::SECURITY_MODE_TRANSPORT);
  EXPECT_FALSE(ex.would_change());
  EXPECT_EQ(ex.member_count(), 3u);
  EXPECT_THAT(ex.explanation(), HasSubstr("Rule: default"));
  EXPECT_THAT(ex.decision_json(), HasSubstr("\"mode\""));
  er.set_content(Preset("signal"));
  auto c3 = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->ExplainConversation(c3.get(), er, &ex).ok());
  EXPECT_EQ(ex.decided_mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_TRUE(ex.would_change());
  EXPECT_THAT(ex.policy_revision(), HasSubstr("candidate-"));
  er.set_conversation_id("c_000000000000000000000000");
  auto c4 = AdminCtx(operator_token_);
  EXPECT_EQ(admin_->ExplainConversation(c4.get(), er, &ex).error_code(), grpc::StatusCode::NOT_FOUND);

  // Conversations list with a mode filter and paging.
  v1::AdminListConversationsRequest lr;
  lr.set_mode(v1::SECURITY_MODE_OPT_IN);
  lr.set_limit(1);
  v1::AdminListConversationsResponse lresp;
  auto c5 = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->ListConversations(c5.get(), lr, &lresp).ok());
  ASSERT_EQ(lresp.conversations_size(), 1);
  ASSERT_FALSE(lresp.next_page_token().empty());
  lr.set_page_token(lresp.next_page_token());
  auto c6 = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->ListConversations(c6.get(), lr, &lresp).ok());
  ASSERT_EQ(lresp.conversations_size(), 1);
  EXPECT_TRUE(lresp.next_page_token().empty());
  EXPECT_EQ(lresp.conversations(0).security().mode(), v1::SECURITY_MODE_OPT_IN);
}

TEST_F(PolicyTest, AdminAuthenticationRolesAndTheAuditChain) {
  Device a = Reg("alice");
  auto call = [&](const std::string& token) {
    v1::GetPolicyResponse resp;
    auto ctx = AdminCtx(token);
    return admin_->GetPolicy(ctx.get(), {}, &resp);
  };
  EXPECT_EQ(call("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call(a.token).error_code(), grpc::StatusCode::UNAUTHENTICATED);  // device token
  EXPECT_EQ(call("padm_" + std::string(64, '0')).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(call(operator_token_).ok());
  // The admin token does not work on the user API either.
  v1::ListConversationsResponse lc;
  auto uc = ApiClient::Ctx(operator_token_);
  EXPECT_EQ(client_->conversations->ListConversations(uc.get(), {}, &lc).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  std::string auditor_id;
  std::string auditor = Token(v1::ADMIN_ROLE_AUDITOR, "audit-1", &auditor_id);
  EXPECT_EQ(call(auditor).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Apply(Preset("signal"), nullptr, auditor).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::TailAuditRequest tr;
  tr.set_limit(1000);
  v1::TailAuditResponse tail;
  auto c1 = AdminCtx(auditor);
  ASSERT_TRUE(admin_->TailAudit(c1.get(), tr, &tail).ok());
  // Every call is recorded (denied ones too), chained by hash.
  bool saw_denied_apply = false, saw_unauth = false;
  std::string prev;
  for (const auto& r : tail.records()) {
    storage::AuditRecord rec{r.seq(), r.time_ms(), r.actor(), r.action(), r.target(), r.details_json(),
                             r.prev_hash(), r.hash()};
    EXPECT_EQ(core::RecordHash(rec), r.hash()) << r.seq();
    EXPECT_EQ(r.prev_hash(), prev) << r.seq();
    prev = r.hash();
    if (r.action() == "admin.ApplyPolicy" && r.details_json().find("PERMISSION_DENIED") != std::string::npos) {
      saw_denied_apply = true;
    }
    if (r.actor().rfind("unauthenticated", 0) == 0) saw_unauth = true;
  }
  EXPECT_TRUE(saw_denied_apply);
  EXPECT_TRUE(saw_unauth);
  EXPECT_EQ(tail.records(0).seq(), 1u);

  // Duplicate names are refused; revoked tokens stop working.
  v1::CreateTokenRequest dup;
  dup.set_role(v1::ADMIN_ROLE_AUDITOR);
  dup.set_name("audit-1");
  v1::CreateTokenResponse dresp;
  auto c2 = AdminCtx(operator_token_);
  EXPECT_EQ(admin_->CreateToken(c2.get(), dup, &dresp).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  dup.set_role(v1::ADMIN_ROLE_UNSPECIFIED);
  dup.set_name("x");
  auto c3 = AdminCtx(operator_token_);
  EXPECT_EQ(admin_->CreateToken(c3.get(), dup, &dresp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::RevokeTokenRequest rv;
  rv.set_token_id(auditor_id);
  v1::RevokeTokenResponse rresp;
  auto c4 = AdminCtx(operator_token_);
  ASSERT_TRUE(admin_->RevokeToken(c4.get(), rv, &rresp).ok());
  EXPECT_TRUE(rresp.token().revoked());
  auto c5 = AdminCtx(auditor);
  EXPECT_EQ(admin_->TailAudit(c5.get(), tr, &tail).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  rv.set_token_id("t_nope");
  auto c6 = AdminCtx(operator_token_);
  EXPECT_EQ(admin_->RevokeToken(c6.get(), rv, &rresp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(PolicyTest, MembershipChangesReevaluateTheConversation) {
  // Groups with a minor are transport and locked; others E2EE.
  const std::string doc = R"(version: 1
name: minors
rules:
  - id: minor-present
    when: {any_participant: {age_band: minor}}
    mode: transport
    locked: true
    transport: {retention_days: 30, moderation: reports}
    reason: A minor is present.
  - id: default
    mode: opt_in
    transitions: {enable: any, disable: any}
    transport: {retention_days: 30, moderation: reports}
    reason: Adults choose.
)";
  grpc::Status applied = Apply(doc);
  ASSERT_TRUE(applied.ok()) << applied.error_message();
  Device a = Reg("alice"), b = Reg("bob"), kid = Reg("kid", v1::AGE_BAND_MINOR);
  v1::Conversation g = Group(a, {"bob"});
  ASSERT_EQ(g.security().mode(), v1::SECURITY_MODE_OPT_IN);
  Stream sb(*client_, b);
  v1::AddMembersRequest add;
  add.set_conversation_id(g.conversation_id());
  add.add_usernames("kid");
  v1::AddMembersResponse ar;
  auto ctx = client_->Ctx(a);
  ASSERT_TRUE(client_->conversations->AddMembers(ctx.get(), add, &ar).ok());
  EXPECT_EQ(ar.conversation().security().mode(), v1::SECURITY_MODE_TRANSPORT);
  EXPECT_TRUE(ar.conversation().security().locked());
  v1::Message ev = NextEvent(sb);
  ASSERT_TRUE(ev.has_security_change());
  EXPECT_EQ(ev.security_change().new_state().rule_id(), "minor-present");
  v1::RemoveMemberRequest rm;
  rm.set_conversation_id(g.conversation_id());
  rm.set_account_id(kid.account_id);
  v1::RemoveMemberResponse rr;
  auto c2 = client_->Ctx(a);
  ASSERT_TRUE(client_->conversations->RemoveMember(c2.get(), rm, &rr).ok());
  EXPECT_EQ(Get(a, g.conversation_id()).security().mode(), v1::SECURITY_MODE_OPT_IN);
}

TEST_F(PolicyTest, EveryStateIsSignedWithTheKeyGivenAtRegistration) {
  v1::CreateAccountRequest cr;
  cr.set_username("alice");
  v1::CreateAccountResponse reg;
  auto c0 = ApiClient::Ctx("");
  ASSERT_TRUE(client_->accounts->CreateAccount(c0.get(), cr, &reg).ok());
  ASSERT_EQ(reg.server_signing_key().size(), 32u);
  EXPECT_EQ(reg.server_key_id(), statement::KeyId(reg.server_signing_key()));
  Device a{reg.account().account_id(), reg.account().username(), reg.device().device_id(), reg.device_token()};
  Device b = Reg("bob");
  v1::Conversation dm = Direct(a, b);
  auto st = statement::Verify(reg.server_signing_key(), dm.security(), dm.conversation_id());
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->epoch(), dm.security().epoch());
  // A state rewritten to another mode, or moved to another conversation, fails.
  v1::SecurityState forged = dm.security();
  forged.set_mode(v1::SECURITY_MODE_TRANSPORT);
  EXPECT_FALSE(statement::Verify(reg.server_signing_key(), forged, dm.conversation_id()).ok());
  EXPECT_FALSE(statement::Verify(reg.server_signing_key(), dm.security(), "c_000000000000000000000000").ok());
  // Events carry signed old and new states.
  Stream sb(*client_, b);
  ASSERT_TRUE(Apply(Preset("signal")).ok());
  v1::Message ev = NextEvent(sb);
  ASSERT_TRUE(ev.has_security_change());
  EXPECT_TRUE(statement::Verify(reg.server_signing_key(), ev.security_change().new_state(),
                                    dm.conversation_id()).ok());
  EXPECT_TRUE(statement::Verify(reg.server_signing_key(), ev.security_change().old_state(),
                                    dm.conversation_id()).ok());
  // The key survives a restart.
  std::string key = reg.server_signing_key();
  Restart();
  EXPECT_TRUE(statement::Verify(key, Get(a, dm.conversation_id()).security(), dm.conversation_id()).ok());
}

}  // namespace
}  // namespace parley
