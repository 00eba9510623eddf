// Integration tests of safety and compliance on the real server (in
// process, real gRPC + TLS + RocksDB, controllable clock): reports in both
// modes with message franking (forged reveals refused), the moderation
// queue and its actions, the scanning hook, lawful-access export, access
// notices, role checks, the tamper-evident audit log and retention purges
// (searching the data directory after compaction).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <thread>
#include <filesystem>

#include "api/parley/franking/franking.h"
#include "api/parley/latency/latency_histogram.h"
#include "core/server.h"
#include "core/tls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parley/v1/admin.grpc.pb.h"
#include "rocksdb/db.h"
#include "tests/support/api_client.h"
#include "tests/support/data_scan.h"
#include "tests/support/keys.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"

namespace parley {
namespace {

using ::parley::testing::ApiClient;
using ::parley::testing::Device;
using ::parley::testing::Stream;
using ::testing::HasSubstr;

constexpr int64_t kDay = 24 * 3600 * 1000LL;
constexpr int64_t kStart = 1'800'000'000'000;

constexpr char kPolicy[] = R"(version: 1
name: safety-test
rules:
  - id: groups-e2ee
    when: {kind: group}
    mode: e2ee
    locked: true
    reason: Groups are end-to-end encrypted.
  - id: default
    mode: transport
    locked: true
    transport:
      retention_days: 30
      moderation: full_review
      automated_scanning: true
      lawful_access: true
      notify_access: immediately
    reason: Direct messages are server-readable for safety review.
)";

class SafetyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_safety_XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::ofstream(dir_ + "/policy.yaml") << kPolicy;
    std::ofstream(dir_ + "/patterns.txt") << "# test patterns\nspam: cheap pills\nscam: re:wire \\d+ dollars\n";
    Start();
  }
  void TearDown() override {
    Stop();
    std::filesystem::remove_all(dir_);
  }
  void Start() {
    core::ServerOptions o;
    o.data_dir = dir_ + "/server";
    o.listen = "127.0.0.1:0";
    o.admin_listen = "127.0.0.1:0";
    o.policy_file = dir_ + "/policy.yaml";
    o.scan_patterns_file = dir_ + "/patterns.txt";
    o.queue_retention_days = 30;
    o.history_retention_days = 365;
    o.clock = [this] { return now_.load(); };
    auto s = core::Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto ca = core::ReadFile(server_->ca_cert_path());
    ASSERT_TRUE(ca.ok());
    client_ = std::make_unique<ApiClient>(
        testing::MakeChannel("127.0.0.1:" + std::to_string(server_->port()), *ca));
    admin_ = v1::AdminService::NewStub(
        testing::MakeChannel("127.0.0.1:" + std::to_string(server_->admin_port()), *ca));
    auto tok = core::ReadFile(dir_ + "/server/admin/operator.token");
    ASSERT_TRUE(tok.ok());
    operator_ = std::string(absl::StripTrailingAsciiWhitespace(*tok));
  }
  void Stop() {
    client_.reset();
    admin_.reset();
    if (server_) server_->Shutdown();
    server_.reset();
  }

  std::unique_ptr<grpc::ClientContext> Admin(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", "Bearer " + token);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return ctx;
  }
  std::string Token(v1::AdminRole role, const std::string& name) {
    v1::CreateTokenRequest req;
    req.set_role(role);
    req.set_name(name);
    v1::CreateTokenResponse resp;
    grpc::Status s = admin_->CreateToken(Admin(operator_).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.secret();
  }
  Device Reg(const std::string& name) {
    Device d;
    EXPECT_TRUE(client_->Register(name, &d).ok());
    return d;
  }
  grpc::Status Report(const Device& d, const std::string& conv, uint64_t seq, v1::ReportReason reason,
                      v1::ReportMessageResponse* out = nullptr, const v1::FrankingReveal* reveal = nullptr) {
    v1::ReportMessageRequest req;
    req.set_conversation_id(conv);
    req.set_seq(seq);
    req.set_reason(reason);
    if (reveal) *req.mutable_reveal() = *reveal;
    v1::ReportMessageResponse resp;
    grpc::Status s = client_->messaging->ReportMessage(client_->Ctx(d).get(), req, &resp);
    if (out) *out = resp;
    return s;
  }
  std::vector<v1::Message> History(const Device& d, const std::string& conv) {
    v1::GetHistoryRequest req;
    req.set_conversation_id(conv);
    req.set_limit(100);
    v1::GetHistoryResponse resp;
    grpc::Status s = client_->messaging->GetHistory(client_->Ctx(d).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.messages().begin(), resp.messages().end()};
  }
  // Envelopes in the device's queue (a short Receive after the backlog).
  std::vector<v1::Message> Queue(const Device& d) {
    Stream st(*client_, d, 10);
    std::vector<v1::Message> out;
    v1::ReceiveResponse r;
    for (int i = 0; i < 1000 && st.Read(&r); ++i) {
      if (r.has_backlog_drained()) break;
      out.push_back(r.envelope().message());
    }
    st.ctx()->TryCancel();
    (void)st.Finish();
    return out;
  }
  std::vector<std::string> AuditActions() {
    v1::TailAuditRequest req;
    req.set_limit(1000);
    v1::TailAuditResponse resp;
    EXPECT_TRUE(admin_->TailAudit(Admin(operator_).get(), req, &resp).ok());
    std::vector<std::string> out;
    for (const auto& r : resp.records()) out.push_back(r.action());
    return out;
  }
  // Whether the stopped server's data directory holds `needle`, in a file's
  // bytes or in a database record read back decoded.
  bool DataDirContains(const std::string& needle) {
    const auto scan = ::parley::testing::DataScan::Read({dir_ + "/server"});
    EXPECT_GT(scan.databases(), 0u);
    return !scan.WhereIs(needle).empty();
  }

  std::string dir_;
  std::atomic<int64_t> now_{kStart};
  std::unique_ptr<core::Server> server_;
  std::unique_ptr<ApiClient> client_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::string operator_;
};

TEST_F(SafetyTest, TransportReportsModerationScanningAndNotices) {
  Device alice = Reg("alice"), bob = Reg("bob"), carol = Reg("carol");
  v1::Conversation conv;
  ASSERT_TRUE(client_->Direct(alice, "bob", &conv).ok());
  ASSERT_EQ(conv.security().mode(), v1::SECURITY_MODE_TRANSPORT);
  v1::SendResponse m1, m2, m3;
  ASSERT_TRUE(client_->SendText(alice, conv.conversation_id(), "m1", "hello bob, you idiot", &m1).ok());
  ASSERT_TRUE(client_->SendText(alice, conv.conversation_id(), "m2", "buy CHEAP PILLS now", &m2).ok());
  ASSERT_TRUE(client_->SendText(alice, conv.conversation_id(), "m3", "see you", &m3).ok());

  // Bad reports: clear errors, nothing filed.
  EXPECT_EQ(Report(bob, conv.conversation_id(), m1.seq(), v1::REPORT_REASON_UNSPECIFIED).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Report(bob, conv.conversation_id(), 999, v1::REPORT_REASON_SPAM).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Report(alice, conv.conversation_id(), m1.seq(), v1::REPORT_REASON_SPAM).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // own message
  EXPECT_EQ(Report(carol, conv.conversation_id(), m1.seq(), v1::REPORT_REASON_SPAM).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);  // not a member
  Device nobody;
  nobody.token = "garbage";
  EXPECT_EQ(Report(nobody, conv.conversation_id(), m1.seq(), v1::REPORT_REASON_SPAM).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  v1::ReportMessageResponse rep;
  grpc::Status s = Report(bob, conv.conversation_id(), m1.seq(), v1::REPORT_REASON_HARASSMENT, &rep);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(rep.franking_verified());

  const std::string mod = Token(v1::ADMIN_ROLE_MODERATOR, "mod-1");
  // The scanner filed m2; bob filed m1.
  v1::ListReportsRequest lr;
  lr.set_status(v1::REPORT_STATUS_OPEN);
  v1::ListReportsResponse list;
  ASSERT_TRUE(admin_->ListReports(Admin(mod).get(), lr, &list).ok());
  ASSERT_EQ(list.reports_size(), 2);
  std::string scanner_report;
  for (const auto& r : list.reports()) {
    if (r.source() == v1::REPORT_SOURCE_SCANNER) {
      scanner_report = r.report_id();
      EXPECT_EQ(r.seq(), m2.seq());
      EXPECT_EQ(r.scanner_match(), "patterns:spam");
    } else {
      EXPECT_EQ(r.report_id(), rep.report_id());
      EXPECT_EQ(r.reporter_account_id(), bob.account_id);
      EXPECT_EQ(r.sender_account_id(), alice.account_id);
      EXPECT_EQ(r.mode(), v1::SECURITY_MODE_TRANSPORT);
    }
  }
  ASSERT_FALSE(scanner_report.empty());

  // Only moderators read reports.
  v1::GetReportRequest gr;
  gr.set_report_id(rep.report_id());
  v1::GetReportResponse got;
  EXPECT_EQ(admin_->GetReport(Admin(operator_).get(), gr, &got).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(admin_->GetReport(Admin(mod).get(), gr, &got).ok());
  EXPECT_EQ(got.message().plain().content(), "hello bob, you idiot");
  EXPECT_GE(got.context_size(), 2);  // full_review: neighbours
  EXPECT_THAT(got.context_note(), HasSubstr("full_review"));
  gr.set_report_id("rep-999");
  EXPECT_EQ(admin_->GetReport(Admin(mod).get(), gr, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  gr.set_report_id("bogus");
  EXPECT_EQ(admin_->GetReport(Admin(mod).get(), gr, &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // notify_access: immediately -> an in-band AccessNotice in the conversation.
  bool noticed = false;
  for (const auto& m : History(bob, conv.conversation_id())) {
    if (m.has_access_notice()) {
      noticed = true;
      EXPECT_EQ(m.access_notice().kind(), v1::AccessNotice::KIND_MODERATION_REVIEW);
      EXPECT_GE(m.access_notice().message_count(), 1u);
    }
  }
  EXPECT_TRUE(noticed);

  // Warn: only the sender gets the notice.
  v1::ResolveReportRequest rr;
  rr.set_report_id(rep.report_id());
  rr.set_action(v1::REPORT_ACTION_WARN);
  v1::ResolveReportResponse res;
  EXPECT_EQ(admin_->ResolveReport(Admin(mod).get(), rr, &res).error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << "a note is required";
  rr.set_note("insult; first offence");
  ASSERT_TRUE(admin_->ResolveReport(Admin(mod).get(), rr, &res).ok());
  EXPECT_EQ(res.report().status(), v1::REPORT_STATUS_RESOLVED);
  EXPECT_EQ(admin_->ResolveReport(Admin(mod).get(), rr, &res).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  int warnings = 0;
  for (const auto& m : Queue(alice)) warnings += m.has_moderation_notice() ? 1 : 0;
  EXPECT_EQ(warnings, 1);
  for (const auto& m : Queue(bob)) EXPECT_FALSE(m.has_moderation_notice());

  // Remove the scanned message from history.
  rr.set_report_id(scanner_report);
  rr.set_action(v1::REPORT_ACTION_REMOVE_MESSAGE);
  rr.set_note("spam");
  ASSERT_TRUE(admin_->ResolveReport(Admin(mod).get(), rr, &res).ok());
  bool removed_notice = false;
  for (const auto& m : History(bob, conv.conversation_id())) {
    EXPECT_NE(m.seq(), m2.seq()) << "removed message still in history";
    if (m.has_moderation_notice()) {
      removed_notice = m.moderation_notice().kind() == v1::ModerationNotice::KIND_MESSAGE_REMOVED;
    }
  }
  EXPECT_TRUE(removed_notice);

  // Suspend: the account can no longer send, its stream ends.
  ASSERT_TRUE(Report(bob, conv.conversation_id(), m3.seq(), v1::REPORT_REASON_HARASSMENT, &rep).ok());
  Stream alice_stream(*client_, alice, 20);
  v1::ReceiveResponse r;
  for (int i = 0; i < 100 && alice_stream.Read(&r) && !r.has_backlog_drained(); ++i) {
  }
  rr.set_report_id(rep.report_id());
  rr.set_action(v1::REPORT_ACTION_SUSPEND);
  rr.set_note("repeat offender");
  ASSERT_TRUE(admin_->ResolveReport(Admin(mod).get(), rr, &res).ok());
  for (int i = 0; i < 100 && alice_stream.Read(&r); ++i) {
  }
  EXPECT_EQ(alice_stream.Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(client_->SendText(alice, conv.conversation_id(), "m4", "still here?").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Unsuspend restores it.
  v1::SetAccountSuspendedRequest sr;
  sr.set_account_id(alice.account_id);
  sr.set_suspended(false);
  sr.set_note("appeal granted");
  v1::SetAccountSuspendedResponse sres;
  ASSERT_TRUE(admin_->SetAccountSuspended(Admin(mod).get(), sr, &sres).ok());
  EXPECT_TRUE(client_->SendText(alice, conv.conversation_id(), "m5", "sorry").ok());

  auto actions = AuditActions();
  for (const char* a : {"content.view", "report.resolve", "account.suspend", "account.unsuspend"}) {
    EXPECT_NE(std::find(actions.begin(), actions.end(), a), actions.end()) << a;
  }
}

TEST_F(SafetyTest, E2eeReportsNeedAValidFrankingReveal) {
  Device alice = Reg("alice"), bob = Reg("bob");
  auto ak = testing::UploadFreshKeys(*client_, alice, dir_ + "/alice");
  auto bk = testing::UploadFreshKeys(*client_, bob, dir_ + "/bob");
  ASSERT_TRUE(ak.ok() && bk.ok());
  v1::CreateGroupRequest greq;
  greq.set_title("secret club");
  greq.add_member_usernames("bob");
  v1::CreateGroupResponse gresp;
  ASSERT_TRUE(client_->conversations->CreateGroup(client_->Ctx(alice).get(), greq, &gresp).ok());
  const std::string conv = gresp.conversation().conversation_id();
  ASSERT_EQ(gresp.conversation().security().mode(), v1::SECURITY_MODE_E2EE);

  // Alice's SDK would encrypt; the server only sees opaque bytes, the
  // commitment and the metadata.
  auto fk = franking::NewKey();
  ASSERT_TRUE(fk.ok());
  auto send = [&](const std::string& id, const std::string& text, const std::string& key, int64_t sent_at,
                  v1::SendResponse* out) {
    franking::CommitInput ci;
    ci.conversation_id = conv;
    ci.sender_account_id = alice.account_id;
    ci.sender_device_id = alice.device_id;
    ci.client_message_id = id;
    ci.sent_at_ms = sent_at;
    ci.content_type = "text/plain";
    ci.content = text;
    v1::SendRequest req;
    req.set_conversation_id(conv);
    req.set_client_message_id(id);
    auto* enc = req.mutable_body()->mutable_encrypted();
    enc->set_franking_commitment(*franking::Commit(key, ci));
    auto* ct = enc->add_ciphertexts();
    ct->set_account_id(bob.account_id);
    ct->set_device_id(bob.device_id);
    ct->set_registration_id((*bk)->registration_id());
    ct->set_type(3);
    ct->set_ciphertext("opaque-ciphertext-" + id);
    return client_->messaging->Send(client_->Ctx(alice).get(), req, out);
  };
  v1::SendResponse s1, s2;
  ASSERT_TRUE(send("e1", "meet me or else", *fk, 111, &s1).ok());
  auto fk2 = franking::NewKey();
  ASSERT_TRUE(send("e2", "second", *fk2, 222, &s2).ok());
  // A commitment of the wrong size is refused.
  {
    v1::SendRequest req;
    req.set_conversation_id(conv);
    req.set_client_message_id("bad");
    auto* enc = req.mutable_body()->mutable_encrypted();
    enc->set_franking_commitment("short");
    auto* ct = enc->add_ciphertexts();
    ct->set_account_id(bob.account_id);
    ct->set_device_id(bob.device_id);
    ct->set_registration_id((*bk)->registration_id());
    ct->set_type(3);
    ct->set_ciphertext("x");
    v1::SendResponse resp;
    EXPECT_EQ(client_->messaging->Send(client_->Ctx(alice).get(), req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }

  // Bob receives both with the server's stamps.
  std::vector<v1::Message> got;
  for (const auto& m : Queue(bob)) {
    if (m.has_ciphertext()) got.push_back(m);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].franking_stamp().size(), franking::kStampBytes);
  auto reveal_of = [&](const v1::Message& m, const std::string& text, const std::string& key, int64_t sent_at) {
    v1::FrankingReveal r;
    r.set_content_type("text/plain");
    r.set_content(text);
    r.set_franking_key(key);
    r.set_sent_at_ms(sent_at);
    r.set_sender_account_id(m.sender_account_id());
    r.set_sender_device_id(m.sender_device_id());
    r.set_client_message_id(m.client_message_id());
    r.set_server_time_ms(m.server_time_ms());
    r.set_franking_commitment(m.franking_commitment());
    r.set_franking_stamp(m.franking_stamp());
    return r;
  };
  const v1::FrankingReveal good = reveal_of(got[0], "meet me or else", *fk, 111);

  // Forgeries are refused and file nothing.
  v1::FrankingReveal forged = good;
  forged.set_content("meet me or else, I'll pay you");
  EXPECT_EQ(Report(bob, conv, s1.seq(), v1::REPORT_REASON_VIOLENCE, nullptr, &forged).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  forged = good;
  forged.set_franking_key(*fk2);
  EXPECT_EQ(Report(bob, conv, s1.seq(), v1::REPORT_REASON_VIOLENCE, nullptr, &forged).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  forged = good;
  forged.set_franking_stamp(got[1].franking_stamp());  // stamp of another message
  EXPECT_EQ(Report(bob, conv, s1.seq(), v1::REPORT_REASON_VIOLENCE, nullptr, &forged).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Report(bob, conv, s2.seq(), v1::REPORT_REASON_VIOLENCE, nullptr, &good).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // right reveal, wrong message
  forged = good;
  forged.set_sent_at_ms(112);
  EXPECT_EQ(Report(bob, conv, s1.seq(), v1::REPORT_REASON_VIOLENCE, nullptr, &forged).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status no_reveal = Report(bob, conv, s1.seq(), v1::REPORT_REASON_VIOLENCE);
  EXPECT_EQ(no_reveal.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_reveal.error_message(), HasSubstr("reveal"));

  const std::string mod = Token(v1::ADMIN_ROLE_MODERATOR, "mod-1");
  v1::ListReportsResponse list;
  ASSERT_TRUE(admin_->ListReports(Admin(mod).get(), v1::ListReportsRequest(), &list).ok());
  EXPECT_EQ(list.reports_size(), 0);

  v1::ReportMessageResponse rep;
  grpc::Status ok = Report(bob, conv, s1.seq(), v1::REPORT_REASON_VIOLENCE, &rep, &good);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_TRUE(rep.franking_verified());
  v1::GetReportRequest gr;
  gr.set_report_id(rep.report_id());
  v1::GetReportResponse shown;
  ASSERT_TRUE(admin_->GetReport(Admin(mod).get(), gr, &shown).ok());
  EXPECT_TRUE(shown.report().franking_verified());
  EXPECT_EQ(shown.report().mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_EQ(shown.message().plain().content(), "meet me or else");
  EXPECT_EQ(shown.context_size(), 0);
  // No server copy to remove.
  v1::ResolveReportRequest rr;
  rr.set_report_id(rep.report_id());
  rr.set_action(v1::REPORT_ACTION_REMOVE_MESSAGE);
  rr.set_note("threat");
  v1::ResolveReportResponse res;
  EXPECT_EQ(admin_->ResolveReport(Admin(mod).get(), rr, &res).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // Lawful access: metadata only for E2EE, content for transport.
  const std::string lawful = Token(v1::ADMIN_ROLE_LAWFUL_ACCESS, "le-1");
  v1::ExportConversationRequest ex;
  ex.set_conversation_id(conv);
  v1::ExportConversationResponse exr;
  EXPECT_EQ(admin_->ExportConversation(Admin(lawful).get(), ex, &exr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // no case reference
  ex.set_case_reference("CASE-2026-117");
  EXPECT_EQ(admin_->ExportConversation(Admin(mod).get(), ex, &exr).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(admin_->ExportConversation(Admin(lawful).get(), ex, &exr).ok());
  EXPECT_FALSE(exr.content_included());
  EXPECT_THAT(exr.note(), HasSubstr("end-to-end encrypted"));
  EXPECT_THAT(exr.export_json(), HasSubstr("\"content_included\":false"));
  EXPECT_THAT(exr.export_json(), ::testing::Not(HasSubstr("meet me")));

  v1::Conversation direct;
  ASSERT_TRUE(client_->Direct(alice, "bob", &direct).ok());
  ASSERT_TRUE(client_->SendText(alice, direct.conversation_id(), "t1", "plain \"quoted\" words").ok());
  ex.set_conversation_id(direct.conversation_id());
  ASSERT_TRUE(admin_->ExportConversation(Admin(lawful).get(), ex, &exr).ok());
  EXPECT_TRUE(exr.content_included());
  EXPECT_EQ(exr.message_count(), 1u);
  EXPECT_THAT(exr.export_json(), HasSubstr("plain \\\"quoted\\\" words"));
  EXPECT_THAT(exr.export_json(), HasSubstr("CASE-2026-117"));
  bool noticed = false;
  for (const auto& m : History(bob, direct.conversation_id())) {
    noticed |= m.has_access_notice() && m.access_notice().kind() == v1::AccessNotice::KIND_LAWFUL_ACCESS;
  }
  EXPECT_TRUE(noticed);
  auto actions = AuditActions();
  EXPECT_NE(std::find(actions.begin(), actions.end(), "content.export"), actions.end());
}

TEST_F(SafetyTest, AuditVerifyCatchesATamperedRecord) {
  const std::string auditor = Token(v1::ADMIN_ROLE_AUDITOR, "aud-1");
  v1::VerifyAuditResponse vr;
  ASSERT_TRUE(admin_->VerifyAudit(Admin(auditor).get(), v1::VerifyAuditRequest(), &vr).ok());
  EXPECT_TRUE(vr.ok()) << vr.problem();
  EXPECT_GE(vr.records(), 2u);
  // The auditor reads and verifies, nothing else.
  v1::ListReportsResponse lr;
  EXPECT_EQ(admin_->ListReports(Admin(auditor).get(), v1::ListReportsRequest(), &lr).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ListTokensResponse lt;
  EXPECT_EQ(admin_->ListTokens(Admin(auditor).get(), v1::ListTokensRequest(), &lt).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  Stop();

  // Change one byte of record 2's actor directly in RocksDB.
  {
    rocksdb::Options opts;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(opts, dir_ + "/server/db", &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(opts, dir_ + "/server/db", cfs, &handles, &raw).ok());
    rocksdb::ColumnFamilyHandle* audit = nullptr;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "audit") audit = handles[i];
    }
    ASSERT_NE(audit, nullptr);
    std::string key(8, '\0');
    key[7] = 2;
    std::string value;
    ASSERT_TRUE(raw->Get(rocksdb::ReadOptions(), audit, key, &value).ok());
    // Record 2 is parleyd's "policy.apply" at first start.
    const size_t at = value.find("policy.apply");
    ASSERT_NE(at, std::string::npos);
    value[at] = 'X';
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), audit, key, value).ok());
    for (auto* h : handles) raw->DestroyColumnFamilyHandle(h);
    delete raw;
  }
  Start();
  ASSERT_TRUE(admin_->VerifyAudit(Admin(auditor).get(), v1::VerifyAuditRequest(), &vr).ok());
  EXPECT_FALSE(vr.ok());
  EXPECT_EQ(vr.first_bad_seq(), 2u);
  EXPECT_FALSE(vr.problem().empty());
}

TEST_F(SafetyTest, ServerStatsCountMessagesStreamsAndCommits) {
  Device alice = Reg("alice"), bob = Reg("bob");
  v1::Conversation conv;
  ASSERT_TRUE(client_->Direct(alice, "bob", &conv).ok());
  v1::GetServerStatsResponse before;
  ASSERT_TRUE(admin_->GetServerStats(Admin(operator_).get(), {}, &before).ok());
  EXPECT_EQ(before.server_time_ms(), now_.load());
  EXPECT_EQ(before.started_at_ms(), kStart);
  EXPECT_EQ(before.receive_streams(), 0u);
  EXPECT_FALSE(before.writes_stopped());

  // Two new messages, one retry of the second, one refused (empty body).
  ASSERT_TRUE(client_->SendText(alice, conv.conversation_id(), "st-1", "one").ok());
  ASSERT_TRUE(client_->SendText(alice, conv.conversation_id(), "st-2", "two").ok());
  v1::SendResponse retry;
  ASSERT_TRUE(client_->SendText(alice, conv.conversation_id(), "st-2", "two", &retry).ok());
  EXPECT_TRUE(retry.duplicate());
  EXPECT_EQ(client_->SendText(alice, conv.conversation_id(), "st-3", "").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Bob's stream is open while he reads and acknowledges both.
  Stream stream(*client_, bob, 20);
  v1::AckRequest ack;
  v1::Envelope e;
  for (int i = 0; i < 2 && stream.NextEnvelope(&e); ++i) ack.add_delivery_ids(e.delivery_id());
  ASSERT_EQ(ack.delivery_ids_size(), 2);
  v1::AckResponse acked;
  ASSERT_TRUE(client_->messaging->Ack(ApiClient::Ctx(bob.token).get(), ack, &acked).ok());
  EXPECT_EQ(acked.removed(), 2u);
  // Over a SendStream: one Send stored, one refused (empty body).
  {
    auto ctx = ApiClient::Ctx(alice.token);
    auto rw = client_->messaging->SendStream(ctx.get());
    for (const char* content : {"four", ""}) {
      v1::SendStreamRequest req;
      req.set_request_id(1);
      req.mutable_send()->set_conversation_id(conv.conversation_id());
      req.mutable_send()->set_client_message_id(absl::StrCat("st-stream-", content));
      req.mutable_send()->mutable_body()->mutable_plain()->set_content(content);
      ASSERT_TRUE(rw->Write(req));
      v1::SendStreamResponse resp;
      ASSERT_TRUE(rw->Read(&resp));
      EXPECT_EQ(resp.has_sent(), *content != '\0');
    }
    ASSERT_TRUE(rw->WritesDone());
    EXPECT_TRUE(rw->Finish().ok());
  }

  v1::GetServerStatsResponse after;
  ASSERT_TRUE(admin_->GetServerStats(Admin(operator_).get(), {}, &after).ok());
  EXPECT_EQ(after.sends_stored(), before.sends_stored() + 3);
  EXPECT_EQ(after.sends_duplicate(), before.sends_duplicate() + 1);
  EXPECT_EQ(after.sends_refused(), before.sends_refused() + 2);
  // The Send latency histogram: every answered Send (three stored, the
  // retry), unary or streamed, each recorded before its reply left; not the
  // refused ones.
  auto latency = latency::Summarize(after.send_latency(), &before.send_latency());
  ASSERT_TRUE(latency.ok()) << latency.status();
  EXPECT_EQ(latency->count, 4u);
  EXPECT_GT(latency->p50_ms, 0);
  EXPECT_GE(latency->p99_ms, latency->p50_ms);
  EXPECT_EQ(after.acked(), before.acked() + 2);
  EXPECT_EQ(after.receive_streams(), 1u);
  // Every Send waited for the group commit (batched log writes).
  EXPECT_GT(after.group_commits(), before.group_commits());
  EXPECT_GE(after.group_commit_waiters() - before.group_commit_waiters(),
            after.group_commits() - before.group_commits());
  EXPECT_GT(after.memtable_bytes(), 0u);
  EXPECT_FALSE(after.writes_stopped());

  // Operator only, and audited like every admin call.
  v1::GetServerStatsResponse denied;
  EXPECT_EQ(admin_->GetServerStats(Admin(Token(v1::ADMIN_ROLE_AUDITOR, "st-aud")).get(), {}, &denied)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const std::vector<std::string> actions = AuditActions();
  EXPECT_GE(std::count(actions.begin(), actions.end(), "admin.GetServerStats"), 3);
}

TEST_F(SafetyTest, RetentionPurgesHistoryAndQueuesFromDisk) {
  Device alice = Reg("alice"), bob = Reg("bob");
  v1::Conversation conv;
  ASSERT_TRUE(client_->Direct(alice, "bob", &conv).ok());
  const std::string marker = "retention-marker-51c9e2";
  // The client message id is per-message metadata: purged with the rest.
  const std::string old_id = "cmid-old-8e41d7";
  ASSERT_TRUE(client_->SendText(alice, conv.conversation_id(), old_id, marker).ok());
  EXPECT_EQ(History(bob, conv.conversation_id()).size() >= 1, true);
  v1::GetRetentionStatusResponse st;
  EXPECT_EQ(admin_->GetRetentionStatus(Admin(Token(v1::ADMIN_ROLE_MODERATOR, "m")).get(),
                                       v1::GetRetentionStatusRequest(), &st)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  now_ += 31 * kDay;  // past the rule's 30 days and the 30-day queue retention
  // Sent after the jump: inside every window, so kept (and findable on disk).
  const std::string new_id = "cmid-new-03b9c5";
  ASSERT_TRUE(client_->SendText(alice, conv.conversation_id(), new_id, "kept").ok());
  v1::RunRetentionResponse run;
  ASSERT_TRUE(admin_->RunRetention(Admin(operator_).get(), v1::RunRetentionRequest(), &run).ok());
  EXPECT_GE(run.run().history_purged(), 1u);
  EXPECT_GE(run.run().queue_purged(), 1u);  // bob never received it
  EXPECT_EQ(run.run().idempotency_purged(), 1u);  // old_id; new_id is inside the 7-day window
  EXPECT_TRUE(run.run().compacted());
  EXPECT_TRUE(run.run().error().empty()) << run.run().error();
  ASSERT_TRUE(admin_->GetRetentionStatus(Admin(operator_).get(), v1::GetRetentionStatusRequest(), &st).ok());
  EXPECT_EQ(st.last_run().history_purged(), run.run().history_purged());
  EXPECT_GE(st.total_queue_purged(), 1u);
  EXPECT_EQ(st.queue_retention_days(), 30u);
  EXPECT_EQ(st.total_idempotency_purged(), 1u);
  EXPECT_EQ(st.idempotency_window_days(), 7u);
  for (const auto& m : History(bob, conv.conversation_id())) {
    if (m.client_message_id() == old_id) {
      EXPECT_FALSE(m.has_plain());
    }
  }
  Stop();
  EXPECT_FALSE(DataDirContains(marker)) << "purged content is still on disk";
  // Keys of deleted table files stay in RocksDB's MANIFEST (as those files'
  // key ranges) until it is rewritten, which every start does. Idempotency
  // keys hold the client message id.
  Start();
  Stop();
  const auto where = ::parley::testing::DataScan::Read({dir_ + "/server"}).WhereIs(old_id);
  EXPECT_TRUE(where.empty()) << "a purged message's client id is still on disk: " << absl::StrJoin(where, ", ");
  EXPECT_TRUE(DataDirContains(new_id)) << "the scan does not see client ids at all";
}

// A retry is recognised within the idempotency window (7 days by default);
// afterwards the server has forgotten the id and the same id is a new
// message, whether or not the retention task has run.
TEST_F(SafetyTest, RetryAfterTheIdempotencyWindowIsANewMessage) {
  Device alice = Reg("alice");
  Reg("bob");
  v1::Conversation conv;
  ASSERT_TRUE(client_->Direct(alice, "bob", &conv).ok());
  const std::string& id = conv.conversation_id();
  v1::SendResponse first, r;
  ASSERT_TRUE(client_->SendText(alice, id, "w1", "hello", &first).ok());
  EXPECT_FALSE(first.duplicate());
  now_ += 7 * kDay;  // the record is exactly 7 days old: still inside
  ASSERT_TRUE(client_->SendText(alice, id, "w1", "hello", &r).ok());
  EXPECT_TRUE(r.duplicate());
  EXPECT_EQ(r.seq(), first.seq());
  EXPECT_EQ(r.server_time_ms(), first.server_time_ms());
  now_ += 1;  // outside the window; the retention task has not run
  ASSERT_TRUE(client_->SendText(alice, id, "w1", "hello", &r).ok());
  EXPECT_FALSE(r.duplicate());
  EXPECT_GT(r.seq(), first.seq());
  const uint64_t second_seq = r.seq();
  // The new Send's record replaced the old: retries now return it.
  ASSERT_TRUE(client_->SendText(alice, id, "w1", "hello", &r).ok());
  EXPECT_TRUE(r.duplicate());
  EXPECT_EQ(r.seq(), second_seq);
  // The retention task deletes records past the window, and only those.
  ASSERT_TRUE(client_->SendText(alice, id, "w2", "second", &r).ok());
  now_ += 3 * kDay;
  ASSERT_TRUE(client_->SendText(alice, id, "w3", "third", &r).ok());
  now_ += 5 * kDay;  // w1's new record and w2 are 8 days old, w3 5 days
  v1::RunRetentionResponse run;
  ASSERT_TRUE(admin_->RunRetention(Admin(operator_).get(), v1::RunRetentionRequest(), &run).ok());
  EXPECT_EQ(run.run().idempotency_purged(), 2u);
  ASSERT_TRUE(client_->SendText(alice, id, "w3", "third", &r).ok());
  EXPECT_TRUE(r.duplicate());
  ASSERT_TRUE(client_->SendText(alice, id, "w2", "second", &r).ok());
  EXPECT_FALSE(r.duplicate());
}

TEST_F(SafetyTest, DelayedAccessNoticeArrivesWhenDue) {
  Stop();
  std::ofstream(dir_ + "/policy.yaml") << R"(version: 1
name: delayed-notice
rules:
  - id: default
    mode: transport
    locked: true
    transport:
      retention_days: unlimited
      moderation: reports
      lawful_access: true
      notify_access: after_days
      notify_after_days: 3
    reason: Participants learn of staff access after three days.
)";
  Start();
  Device alice = Reg("alice"), bob = Reg("bob");
  v1::Conversation conv;
  ASSERT_TRUE(client_->Direct(alice, "bob", &conv).ok());
  ASSERT_TRUE(client_->SendText(alice, conv.conversation_id(), "x1", "evidence").ok());
  const std::string lawful = Token(v1::ADMIN_ROLE_LAWFUL_ACCESS, "le");
  v1::ExportConversationRequest ex;
  ex.set_conversation_id(conv.conversation_id());
  ex.set_case_reference("CASE-7");
  v1::ExportConversationResponse exr;
  ASSERT_TRUE(admin_->ExportConversation(Admin(lawful).get(), ex, &exr).ok());
  auto notices = [&] {
    int n = 0;
    for (const auto& m : History(bob, conv.conversation_id())) n += m.has_access_notice() ? 1 : 0;
    return n;
  };
  now_ += 2 * kDay;
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // scheduler passes (1 s interval)
  EXPECT_EQ(notices(), 0) << "not due yet";
  now_ += 1 * kDay + 1;
  int seen = 0;
  for (int i = 0; i < 100 && seen == 0; ++i) {  // at most 10 s
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    seen = notices();
  }
  EXPECT_EQ(seen, 1);
  // Delivered once, not again on later passes.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(notices(), 1);
}

// Every admin RPC x every role: PERMISSION_DENIED exactly where the role
// has no business (admin_grpc.cc's table, documented in admin.proto).
TEST_F(SafetyTest, AdminRoleByRpcMatrix) {
  using Call = std::function<grpc::Status(grpc::ClientContext*)>;
  auto* a = admin_.get();
  const std::vector<std::pair<std::string, Call>> rpcs = {
      {"WhoAmI", [a](grpc::ClientContext* c) { v1::WhoAmIResponse r; return a->WhoAmI(c, {}, &r); }},
      {"ValidatePolicy", [a](grpc::ClientContext* c) { v1::ValidatePolicyResponse r; return a->ValidatePolicy(c, {}, &r); }},
      {"GetPolicy", [a](grpc::ClientContext* c) { v1::GetPolicyResponse r; return a->GetPolicy(c, {}, &r); }},
      {"ListPolicyRevisions", [a](grpc::ClientContext* c) { v1::ListPolicyRevisionsResponse r; return a->ListPolicyRevisions(c, {}, &r); }},
      {"PlanPolicy", [a](grpc::ClientContext* c) {
         auto reader = a->PlanPolicy(c, v1::PlanPolicyRequest());
         v1::PlanPolicyResponse r;
         for (int i = 0; i < 1000 && reader->Read(&r); ++i) {
         }
         return reader->Finish();
       }},
      {"ApplyPolicy", [a](grpc::ClientContext* c) { v1::ApplyPolicyResponse r; return a->ApplyPolicy(c, {}, &r); }},
      {"RollbackPolicy", [a](grpc::ClientContext* c) { v1::ApplyPolicyResponse r; return a->RollbackPolicy(c, {}, &r); }},
      {"ExplainConversation", [a](grpc::ClientContext* c) { v1::ExplainConversationResponse r; return a->ExplainConversation(c, {}, &r); }},
      {"ListConversations", [a](grpc::ClientContext* c) { v1::AdminListConversationsResponse r; return a->ListConversations(c, {}, &r); }},
      {"CreateToken", [a](grpc::ClientContext* c) { v1::CreateTokenResponse r; return a->CreateToken(c, {}, &r); }},
      {"ListTokens", [a](grpc::ClientContext* c) { v1::ListTokensResponse r; return a->ListTokens(c, {}, &r); }},
      {"RevokeToken", [a](grpc::ClientContext* c) { v1::RevokeTokenResponse r; return a->RevokeToken(c, {}, &r); }},
      {"TailAudit", [a](grpc::ClientContext* c) { v1::TailAuditResponse r; return a->TailAudit(c, {}, &r); }},
      {"VerifyAudit", [a](grpc::ClientContext* c) { v1::VerifyAuditResponse r; return a->VerifyAudit(c, {}, &r); }},
      {"ListReports", [a](grpc::ClientContext* c) { v1::ListReportsResponse r; return a->ListReports(c, {}, &r); }},
      {"GetReport", [a](grpc::ClientContext* c) { v1::GetReportResponse r; return a->GetReport(c, {}, &r); }},
      {"ResolveReport", [a](grpc::ClientContext* c) { v1::ResolveReportResponse r; return a->ResolveReport(c, {}, &r); }},
      {"SetAccountSuspended", [a](grpc::ClientContext* c) { v1::SetAccountSuspendedResponse r; return a->SetAccountSuspended(c, {}, &r); }},
      {"ExportConversation", [a](grpc::ClientContext* c) { v1::ExportConversationResponse r; return a->ExportConversation(c, {}, &r); }},
      {"GetRetentionStatus", [a](grpc::ClientContext* c) { v1::GetRetentionStatusResponse r; return a->GetRetentionStatus(c, {}, &r); }},
      {"RunRetention", [a](grpc::ClientContext* c) { v1::RunRetentionResponse r; return a->RunRetention(c, {}, &r); }},
      {"GetServerStats", [a](grpc::ClientContext* c) { v1::GetServerStatsResponse r; return a->GetServerStats(c, {}, &r); }},
  };
  // Must list every RPC of the service (a new RPC fails here until added).
  EXPECT_EQ(static_cast<int>(rpcs.size()),
            v1::WhoAmIRequest::descriptor()->file()->pool()->FindServiceByName("parley.v1.AdminService")->method_count());
  const std::map<std::string, std::set<v1::AdminRole>> allowed = {
      {"WhoAmI", {v1::ADMIN_ROLE_OPERATOR, v1::ADMIN_ROLE_AUDITOR, v1::ADMIN_ROLE_MODERATOR, v1::ADMIN_ROLE_LAWFUL_ACCESS}},
      {"TailAudit", {v1::ADMIN_ROLE_OPERATOR, v1::ADMIN_ROLE_AUDITOR}},
      {"VerifyAudit", {v1::ADMIN_ROLE_OPERATOR, v1::ADMIN_ROLE_AUDITOR}},
      {"ListReports", {v1::ADMIN_ROLE_MODERATOR, v1::ADMIN_ROLE_OPERATOR}},
      {"GetReport", {v1::ADMIN_ROLE_MODERATOR}},
      {"ResolveReport", {v1::ADMIN_ROLE_MODERATOR}},
      {"SetAccountSuspended", {v1::ADMIN_ROLE_MODERATOR}},
      {"ExportConversation", {v1::ADMIN_ROLE_LAWFUL_ACCESS}},
  };
  std::map<v1::AdminRole, std::string> tokens = {
      {v1::ADMIN_ROLE_OPERATOR, operator_},
      {v1::ADMIN_ROLE_AUDITOR, Token(v1::ADMIN_ROLE_AUDITOR, "m-aud")},
      {v1::ADMIN_ROLE_MODERATOR, Token(v1::ADMIN_ROLE_MODERATOR, "m-mod")},
      {v1::ADMIN_ROLE_LAWFUL_ACCESS, Token(v1::ADMIN_ROLE_LAWFUL_ACCESS, "m-law")},
  };
  Device dev = Reg("device-user");
  for (const auto& [name, call] : rpcs) {
    auto it = allowed.find(name);
    const std::set<v1::AdminRole> ok_roles =
        it != allowed.end() ? it->second : std::set<v1::AdminRole>{v1::ADMIN_ROLE_OPERATOR};
    for (const auto& [role, token] : tokens) {
      grpc::Status s = call(Admin(token).get());
      if (ok_roles.count(role)) {
        EXPECT_NE(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << name << " as " << v1::AdminRole_Name(role) << ": " << s.error_message();
        EXPECT_NE(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << name;
      } else {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << name << " as " << v1::AdminRole_Name(role) << ": " << s.error_message();
      }
    }
    // Device tokens and no token never work on the admin service.
    EXPECT_EQ(call(Admin(dev.token).get()).error_code(), grpc::StatusCode::UNAUTHENTICATED) << name;
    grpc::ClientContext none;
    none.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    EXPECT_EQ(call(&none).error_code(), grpc::StatusCode::UNAUTHENTICATED) << name;
  }
}

TEST_F(SafetyTest, DeviceRateLimitAnswersResourceExhaustedWithRetryInfo) {
  Stop();
  // A server with a tiny limit (the default is 500 calls/s per device).
  core::ServerOptions o;
  o.data_dir = dir_ + "/server";
  o.listen = "127.0.0.1:0";
  o.admin_listen = "";
  o.limits.device_calls_per_second = 1;
  o.limits.device_call_burst = 3;
  o.clock = [this] { return now_.load(); };
  auto srv = core::Server::Start(o);
  ASSERT_TRUE(srv.ok()) << srv.status();
  server_ = std::move(*srv);
  client_ = std::make_unique<ApiClient>(testing::MakeChannel(
      "127.0.0.1:" + std::to_string(server_->port()), *core::ReadFile(server_->ca_cert_path())));
  Device d = Reg("limited"), other = Reg("other");
  v1::ListDevicesResponse r;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(client_->accounts->ListDevices(client_->Ctx(d).get(), {}, &r).ok()) << i;
  }
  grpc::Status s = client_->accounts->ListDevices(client_->Ctx(d).get(), {}, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("retry after 1000 ms"));
  v1::RpcStatus rich;
  ASSERT_TRUE(rich.ParseFromString(s.error_details()));
  ASSERT_EQ(rich.details_size(), 1);
  EXPECT_EQ(rich.details(0).type_url(), "type.googleapis.com/google.rpc.RetryInfo");
  v1::RetryInfo info;
  ASSERT_TRUE(info.ParseFromString(rich.details(0).value()));
  EXPECT_EQ(info.retry_delay().seconds(), 1);
  // Another device is unaffected; the limited one recovers with time.
  EXPECT_TRUE(client_->accounts->ListDevices(client_->Ctx(other).get(), {}, &r).ok());
  now_ += 1000;
  EXPECT_TRUE(client_->accounts->ListDevices(client_->Ctx(d).get(), {}, &r).ok());

  // On a SendStream every Send takes from the same budget (the call's start
  // took one): a Send over it is answered RESOURCE_EXHAUSTED with RetryInfo,
  // and the stream goes on.
  now_ += 10000;  // the bucket refills
  v1::Conversation conv;
  ASSERT_TRUE(client_->Direct(other, d.username, &conv).ok());
  auto ctx = client_->Ctx(d);
  auto rw = client_->messaging->SendStream(ctx.get());
  auto send = [&](uint64_t id) {
    v1::SendStreamRequest req;
    req.set_request_id(id);
    req.mutable_send()->set_conversation_id(conv.conversation_id());
    req.mutable_send()->set_client_message_id(absl::StrCat("rl", id));
    req.mutable_send()->mutable_body()->mutable_plain()->set_content("hi");
    EXPECT_TRUE(rw->Write(req));
    v1::SendStreamResponse resp;
    EXPECT_TRUE(rw->Read(&resp));
    EXPECT_EQ(resp.request_id(), id);
    return resp;
  };
  EXPECT_TRUE(send(1).has_sent());
  EXPECT_TRUE(send(2).has_sent());
  v1::SendStreamResponse limited = send(3);
  ASSERT_TRUE(limited.has_error());
  EXPECT_EQ(limited.error().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  ASSERT_EQ(limited.error().details_size(), 1);
  EXPECT_EQ(limited.error().details(0).type_url(), "type.googleapis.com/google.rpc.RetryInfo");
  now_ += 1000;
  EXPECT_TRUE(send(4).has_sent());
  ASSERT_TRUE(rw->WritesDone());
  EXPECT_TRUE(rw->Finish().ok());
}

}  // namespace
}  // namespace parley
