// SPDX-License-Identifier: GPL-3.0-or-later
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tools/parleyctl/commands.h"
#include "tools/parleyctl/diff.h"
#include "tools/parleyctl/format.h"
#include "tools/parleyctl/safety_format.h"

namespace parley::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// ------------------------------------------------------------------ diff

std::string Lines(std::initializer_list<const char*> lines) {
  std::string s;
  for (const char* l : lines) s += std::string(l) + "\n";
  return s;
}

TEST(DiffTest, IdenticalIsEmpty) {
  const std::string a = Lines({"a", "b", "c"});
  EXPECT_EQ(UnifiedDiff(a, a, "x", "y"), "");
  EXPECT_EQ(UnifiedDiff("", "", "x", "y"), "");
}

TEST(DiffTest, Insertion) {
  EXPECT_EQ(UnifiedDiff(Lines({"a", "b", "c"}), Lines({"a", "b", "new", "c"}),
                        "current (r1-aa)", "p.yaml"),
            "--- current (r1-aa)\n+++ p.yaml\n"
            "@@ -1,3 +1,4 @@\n a\n b\n+new\n c\n");
}

TEST(DiffTest, Deletion) {
  EXPECT_EQ(
      UnifiedDiff(Lines({"a", "b", "c", "d"}), Lines({"a", "d"}), "x", "y"),
      "--- x\n+++ y\n@@ -1,4 +1,2 @@\n a\n-b\n-c\n d\n");
}

TEST(DiffTest, Change) {
  EXPECT_EQ(UnifiedDiff(Lines({"mode: e2ee", "locked: true"}),
                        Lines({"mode: transport", "locked: true"}), "x", "y"),
            "--- x\n+++ y\n@@ -1,2 +1,2 @@\n-mode: e2ee\n+mode: transport\n"
            " locked: true\n");
}

TEST(DiffTest, ContextGrouping) {
  std::vector<std::string> base;
  for (int i = 1; i <= 20; ++i) base.push_back("l" + std::to_string(i));
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& l : v) s += l + "\n";
    return s;
  };
  // Changes at lines 2 and 9: 6 equal lines between (<= 2*3): one hunk.
  std::vector<std::string> near = base;
  near[1] = "X2";
  near[8] = "X9";
  std::string d = UnifiedDiff(join(base), join(near), "a", "b");
  EXPECT_THAT(d, HasSubstr("@@ -1,12 +1,12 @@\n"));
  EXPECT_EQ(std::count(d.begin(), d.end(), '@'), 4);  // one "@@ ... @@"
  // Changes at lines 2 and 17: two hunks, 3 lines of context each.
  std::vector<std::string> far = base;
  far[1] = "X2";
  far[16] = "X17";
  d = UnifiedDiff(join(base), join(far), "a", "b");
  EXPECT_THAT(d, HasSubstr("@@ -1,5 +1,5 @@\n l1\n-l2\n+X2\n l3\n l4\n l5\n"));
  EXPECT_THAT(d, HasSubstr("@@ -14,7 +14,7 @@\n l14\n l15\n l16\n-l17\n+X17\n"
                           " l18\n l19\n l20\n"));
  EXPECT_EQ(std::count(d.begin(), d.end(), '@'), 8);
}

TEST(DiffTest, EmptyFiles) {
  EXPECT_EQ(UnifiedDiff("", Lines({"a", "b"}), "x", "y"),
            "--- x\n+++ y\n@@ -0,0 +1,2 @@\n+a\n+b\n");
  EXPECT_EQ(UnifiedDiff(Lines({"a"}), "", "x", "y"),
            "--- x\n+++ y\n@@ -1 +0,0 @@\n-a\n");
}

TEST(DiffTest, MissingFinalNewline) {
  EXPECT_EQ(UnifiedDiff("a\nb\n", "a\nb", "x", "y"),
            "--- x\n+++ y\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n"
            "\\ No newline at end of file\n");
}

// Random inputs: the script turns a into b and is as short as an LCS allows.
TEST(DiffTest, RandomScriptsAreValidAndMinimal) {
  std::mt19937 rng(7);
  const std::vector<std::string_view> alphabet = {"a\n", "b\n", "c\n"};
  for (int round = 0; round < 300; ++round) {
    std::vector<std::string_view> a, b;
    const int na = static_cast<int>(rng() % 12),
              nb = static_cast<int>(rng() % 12);
    for (int i = 0; i < na; ++i) a.push_back(alphabet[rng() % 3]);
    for (int i = 0; i < nb; ++i) b.push_back(alphabet[rng() % 3]);
    const std::vector<Edit> edits = DiffLines(a, b);
    std::vector<std::string_view> rebuilt;
    size_t ai = 0, changes = 0;
    for (const Edit& e : edits) {
      if (e.kind == EditKind::kInsert) {
        rebuilt.push_back(b[e.b_index]);
        ++changes;
        continue;
      }
      ASSERT_EQ(e.a_index, ai);
      ++ai;
      if (e.kind == EditKind::kEqual) {
        ASSERT_EQ(a[e.a_index], b[e.b_index]);
        rebuilt.push_back(a[e.a_index]);
      } else {
        ++changes;
      }
    }
    ASSERT_EQ(ai, a.size());
    ASSERT_EQ(rebuilt, b);
    std::vector<std::vector<size_t>> lcs(a.size() + 1,
                                         std::vector<size_t>(b.size() + 1, 0));
    for (size_t i = 1; i <= a.size(); ++i) {
      for (size_t j = 1; j <= b.size(); ++j) {
        lcs[i][j] = a[i - 1] == b[j - 1]
                        ? lcs[i - 1][j - 1] + 1
                        : std::max(lcs[i - 1][j], lcs[i][j - 1]);
      }
    }
    ASSERT_EQ(changes, a.size() + b.size() - 2 * lcs[a.size()][b.size()]);
  }
}

// ------------------------------------------------------ parsing and names

TEST(ParseTest, RevisionRefs) {
  auto r = ParseRevisionRef("3");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->number, 3u);
  EXPECT_EQ(r->hash_prefix, "");
  r = ParseRevisionRef("r12");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->number, 12u);
  r = ParseRevisionRef("r3-ABCD1234");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->number, 3u);
  EXPECT_EQ(r->hash_prefix, "abcd1234");
  for (const char* bad : {"", "r", "0", "r0", "abc", "3-", "r3-xyz", "-3",
                          "r-3", "99999999999999999999", "3.0", " 3"}) {
    EXPECT_FALSE(ParseRevisionRef(bad)) << bad;
  }
}

TEST(ParseTest, Modes) {
  EXPECT_EQ(ParseMode("e2ee"), v1::SECURITY_MODE_E2EE);
  EXPECT_EQ(ParseMode("E2EE"), v1::SECURITY_MODE_E2EE);
  EXPECT_EQ(ParseMode("opt-in"), v1::SECURITY_MODE_OPT_IN);
  EXPECT_EQ(ParseMode("opt_in"), v1::SECURITY_MODE_OPT_IN);
  EXPECT_EQ(ParseMode("transport"), v1::SECURITY_MODE_TRANSPORT);
  EXPECT_FALSE(ParseMode("optin"));
  EXPECT_FALSE(ParseMode(""));
  for (auto m : {v1::SECURITY_MODE_E2EE, v1::SECURITY_MODE_OPT_IN,
                 v1::SECURITY_MODE_TRANSPORT}) {
    EXPECT_EQ(ParseMode(ModeName(m)), m);
  }
  EXPECT_EQ(ModeName(v1::SECURITY_MODE_OPT_IN), "opt-in");
  EXPECT_EQ(ModeName(v1::SECURITY_MODE_UNSPECIFIED), "unspecified");
}

TEST(ParseTest, Roles) {
  EXPECT_EQ(ParseRole("operator"), v1::ADMIN_ROLE_OPERATOR);
  EXPECT_EQ(ParseRole("lawful-access"), v1::ADMIN_ROLE_LAWFUL_ACCESS);
  EXPECT_EQ(RoleName(*ParseRole("lawful_access")), "lawful_access");
  EXPECT_FALSE(ParseRole("root"));
}

TEST(ExitCodeTest, FromGrpcCodes) {
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::OK), 0);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::INVALID_ARGUMENT), 2);
  for (auto c :
       {grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::PERMISSION_DENIED,
        grpc::StatusCode::UNAUTHENTICATED,
        grpc::StatusCode::FAILED_PRECONDITION, grpc::StatusCode::NOT_FOUND,
        grpc::StatusCode::DEADLINE_EXCEEDED, grpc::StatusCode::INTERNAL}) {
    EXPECT_EQ(ExitCodeFor(c), 1) << StatusCodeName(c);
  }
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::FAILED_PRECONDITION),
            "FAILED_PRECONDITION");
}

// ------------------------------------------------------------ formatting

TEST(FormatTest, Times) {
  EXPECT_EQ(FormatTime(0), "-");
  EXPECT_EQ(FormatTime(1700000000123), "2023-11-14T22:13:20Z");
  EXPECT_EQ(FormatDate(1700000000123), "2023-11-14");
  EXPECT_EQ(FormatDuration(42), "0.042 s");
  EXPECT_EQ(FormatDuration(12345), "12.3 s");
  EXPECT_EQ(FormatDuration(125000), "2 min 5 s");
}

TEST(FormatTest, TableAlignsAndSanitizes) {
  Table t({"ID", "COUNT", "NOTE"});
  t.AlignRight(1);
  t.AddRow({"c_1", "5", "e2ee \u2192 transport"});
  t.AddRow({"c_22", "1234", "bad\x1b[31m"});
  t.AddRow({"c_3", "7", ""});
  EXPECT_EQ(t.Render(),
            "ID    COUNT  NOTE\n"
            "c_1       5  e2ee \u2192 transport\n"
            "c_22   1234  bad?[31m\n"
            "c_3       7\n");
}

TEST(FormatTest, SanitizeKeepsNewlinesOnlyWhenAsked) {
  EXPECT_EQ(Sanitize("a\nb\tc\x07"), "a?b?c?");
  EXPECT_EQ(Sanitize("a\nb\tc\x07", true), "a\nb\tc?");
  EXPECT_EQ(Sanitize("x\xc2\x9by \xc3\xa9"), "x?y \xc3\xa9");
}

TEST(FormatTest, ProgressLine) {
  EXPECT_EQ(ProgressLine(50, 100, 10),
            "[#####-----]  50%  50/100 conversations");
  EXPECT_EQ(ProgressLine(7, 0), "7 conversations scanned");
  EXPECT_EQ(ProgressLine(120, 100, 4), "[####] 100%  120/100 conversations");
}

v1::PolicyPlan SamplePlan() {
  v1::PolicyPlan p;
  p.set_candidate_hash("ab12");
  p.set_conversations(1000);
  p.set_unchanged(950);
  auto* t = p.add_transitions();
  t->set_from_mode(v1::SECURITY_MODE_E2EE);
  t->set_to_mode(v1::SECURITY_MODE_TRANSPORT);
  t->set_count(12);
  for (const char* id : {"c_1", "c_2", "c_3"})
    t->add_sample_conversation_ids(id);
  t = p.add_transitions();
  t->set_from_mode(v1::SECURITY_MODE_OPT_IN);
  t->set_to_mode(v1::SECURITY_MODE_E2EE);
  t->set_count(3);
  t->add_sample_conversation_ids("c_9");
  // Two downgrades on the same UTC day are grouped.
  auto* d = p.add_downgrades();
  d->set_effective_at_ms(1700000000000);
  d->set_count(30);
  d->add_sample_conversation_ids("c_a");
  d = p.add_downgrades();
  d->set_effective_at_ms(1700000000000 + 3600000);
  d->set_count(5);
  d->add_sample_conversation_ids("c_b");
  p.set_e2ee_kept(40);
  p.set_e2ee_kept_by_participants(2);
  p.add_kept_sample_conversation_ids("c_k");
  auto* r = p.add_rules();
  r->set_rule_id("minors");
  r->set_count(100);
  r = p.add_rules();
  r->set_rule_id("default");
  r->set_count(900);
  p.set_elapsed_ms(1234);
  return p;
}

TEST(FormatTest, Plan) {
  EXPECT_EQ(FormatPlan(SamplePlan()),
            "1000 conversations evaluated\n"
            "\n"
            "FROM \u2192 TO         COUNT  SAMPLE IDS\n"
            "e2ee \u2192 transport     12  c_1, c_2, c_3\n"
            "opt-in \u2192 e2ee         3  c_9\n"
            "\n"
            "unchanged: 950\n"
            "downgrades announced (E2EE until the effective date):\n"
            "  EFFECTIVE   COUNT  SAMPLE IDS\n"
            "  2023-11-14     35  c_a, c_b\n"
            "e2ee kept: 40 (existing_e2ee: keep), 2 (participants' choice); "
            "e.g. c_k\n"
            "rules matched:\n"
            "  RULE     COUNT\n"
            "  minors     100\n"
            "  default    900\n"
            "elapsed: 1.234 s\n");
  v1::PolicyPlan empty;
  EXPECT_THAT(FormatPlan(empty), HasSubstr("no conversation changes mode\n"));
  EXPECT_THAT(FormatPlan(empty), HasSubstr("downgrades announced: none\n"));
  const nlohmann::json j = PlanJson(SamplePlan());
  EXPECT_EQ(j["transitions"][0]["from"], "e2ee");
  EXPECT_EQ(j["transitions"][0]["to"], "transport");
  EXPECT_EQ(j["downgrades"][1]["effective_date"], "2023-11-14");
}

TEST(FormatTest, History) {
  v1::ListPolicyRevisionsResponse resp;
  auto* r = resp.add_revisions();
  r->set_number(3);
  r->set_revision_id("r3-cccc0000");
  r->set_author("alice");
  r->set_comment("undo");
  r->set_rollback_of(1);
  r->set_current(true);
  r->set_created_at_ms(1700000000000);
  r = resp.add_revisions();
  r->set_number(2);
  r->set_revision_id("r2-bbbb0000");
  r->set_author("alice");
  r->set_comment("minors");
  r->set_created_at_ms(1699990000000);
  EXPECT_EQ(FormatHistory(resp),
            "   NUMBER  REVISION     TIME                  AUTHOR  COMMENT\n"
            "*       3  r3-cccc0000  2023-11-14T22:13:20Z  alice   undo "
            "(rollback of r1)\n"
            "        2  r2-bbbb0000  2023-11-14T19:26:40Z  alice   minors\n"
            "(* current)\n");
}

// ------------------------------------------------------------ token file

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/parleyctl_test.XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string Write(const std::string& name, const std::string& content) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(TokenFileTest, Trims) {
  TempDir dir;
  auto t = ReadTokenFile(dir.Write("t", "  \n pat_secret123\r\n\n"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "pat_secret123");
}

TEST(TokenFileTest, MissingFileIsAClearUsageError) {
  TempDir dir;
  const std::string p = dir.path() + "/nope.token";
  auto t = ReadTokenFile(p);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()),
              HasSubstr("cannot read admin token file " + p +
                        ": No such file or directory"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("--token-file"));
  // Reported as exit 2.
  std::ostringstream out, err;
  Env env(false, &out, &err);
  EXPECT_EQ(env.Fail(t.status(), kExitUsage), kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("parleyctl: cannot read admin token file"));
  EXPECT_THAT(err.str(), HasSubstr("[NOT_FOUND]"));
}

TEST(TokenFileTest, EmptyAndMalformed) {
  TempDir dir;
  auto t = ReadTokenFile(dir.Write("empty", ""));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("is empty"));
  t = ReadTokenFile(dir.Write("blank", " \n\t\n"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("is empty"));
  t = ReadTokenFile(dir.Write("two", "secret-one secret-two\n"));
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), Not(HasSubstr("secret")));
  t = ReadTokenFile(dir.path());
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("is a directory"));
}

// ------------------------------------------- commands against a fake server

// A self-signed certificate for localhost / 127.0.0.1 (CA and server
// certificate at once) and its key: a test-only TLS identity.
constexpr char kTestCert[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBmzCCAUGgAwIBAgIUaS4cxzKUcecMPgCMWBT2dTOIjLUwCgYIKoZIzj0EAwIw\n"
    "FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMzE3NDIwMloYDzIxMjYxMDMw\n"
    "MTc0MjAyWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO\n"
    "PQMBBwNCAASjR2KUe/ekU0TBmClnEOTETNddBbikUNSF0gr0mqNrWXHfjhcNOELx\n"
    "+OthGks1oQKILO6ny1o4U0sRtI5tGLQOo28wbTAdBgNVHQ4EFgQUjHlQcV/F+OpR\n"
    "B/QsghNeSKZ8oIQwHwYDVR0jBBgwFoAUjHlQcV/F+OpRB/QsghNeSKZ8oIQwDwYD\n"
    "VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI\n"
    "zj0EAwIDSAAwRQIgXTcrrdk3wAa3t1radY/jOKDrkEJpsyIQF7Vpb8sk3sYCIQDM\n"
    "vmV2/MXXfXOMVvCiXYXxuMlMoliUk7MyWzCOey3WgA==\n"
    "-----END CERTIFICATE-----\n";
constexpr char kTestKey[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYPnzM7liyGKWB/A2\n"
    "1N3KDht9IN8I8ySjSgpj/jsAWoWhRANCAASjR2KUe/ekU0TBmClnEOTETNddBbik\n"
    "UNSF0gr0mqNrWXHfjhcNOELx+OthGks1oQKILO6ny1o4U0sRtI5tGLQO\n"
    "-----END PRIVATE KEY-----\n";

constexpr char kPolicyV1[] =
    "version: 1\n"
    "name: test\n"
    "rules:\n"
    "  - id: minors\n"
    "    when: { any_participant: { age_band: minor } }\n"
    "    mode: e2ee\n"
    "    locked: true\n"
    "    reason: Minors are protected.\n"
    "  - id: default\n"
    "    mode: e2ee\n"
    "    reason: Everything else is end-to-end encrypted.\n";

constexpr char kPolicyV2[] =
    "version: 1\n"
    "name: test\n"
    "rules:\n"
    "  - id: default\n"
    "    mode: e2ee\n"
    "    locked: true\n"
    "    reason: Everything is end-to-end encrypted.\n";

// ---------------------------------------------------------- safety samples

// Report rep-N in conversation c_N (transport), message #N+4.
v1::ReportSummary SampleReport(int n, bool open) {
  v1::ReportSummary r;
  r.set_report_id("rep-" + std::to_string(n));
  r.set_status(open ? v1::REPORT_STATUS_OPEN : v1::REPORT_STATUS_RESOLVED);
  r.set_source(v1::REPORT_SOURCE_PARTICIPANT);
  r.set_reason(v1::REPORT_REASON_HARASSMENT);
  r.set_conversation_id("c_" + std::to_string(n));
  r.set_seq(static_cast<uint64_t>(n) + 4);
  r.set_mode(v1::SECURITY_MODE_TRANSPORT);
  r.set_reporter_account_id("acc_bob");
  r.set_sender_account_id("acc_eve");
  r.set_created_at_ms(1700000000000);
  if (!open) {
    r.set_action(v1::REPORT_ACTION_WARN);
    r.set_resolved_by("moderator:mod-1");
    r.set_resolved_at_ms(1700000600000);
    r.set_resolution_note("first offence");
  }
  return r;
}

v1::Message TextMessage(uint64_t seq, const std::string& sender,
                        const std::string& text) {
  v1::Message m;
  m.set_conversation_id("c_9");
  m.set_seq(seq);
  m.set_sender_account_id(sender);
  m.set_sender_device_id(1);
  m.set_server_time_ms(1700000000000 + static_cast<int64_t>(seq) * 1000);
  m.mutable_plain()->set_content(text);
  return m;
}

// An E2EE report whose revealed plaintext was verified by franking.
v1::GetReportResponse SampleE2eeReport() {
  v1::GetReportResponse r;
  v1::ReportSummary* s = r.mutable_report();
  s->set_report_id("rep-1");
  s->set_status(v1::REPORT_STATUS_OPEN);
  s->set_source(v1::REPORT_SOURCE_PARTICIPANT);
  s->set_reason(v1::REPORT_REASON_CHILD_SAFETY);
  s->set_conversation_id("c_9");
  s->set_seq(7);
  s->set_mode(v1::SECURITY_MODE_E2EE);
  s->set_reporter_account_id("acc_bob");
  s->set_sender_account_id("acc_eve");
  s->set_created_at_ms(1700000000000);
  s->set_franking_verified(true);
  r.set_comment("keeps messaging my kid");
  *r.mutable_message() = TextMessage(7, "acc_eve", "meet me\nalone");
  r.set_context_note(
      "end-to-end encrypted: this is what the reporter revealed, verified by "
      "message franking; parleyd has no other content of this conversation");
  return r;
}

v1::GetServerStatsResponse SampleServerStats() {
  v1::GetServerStatsResponse s;
  s.set_server_time_ms(1'700'000'000'000 + 3'600'000);
  s.set_started_at_ms(1'700'000'000'000);
  s.set_sends_stored(120000);
  s.set_sends_duplicate(1);
  s.set_sends_refused(42);
  s.set_acked(119950);
  s.set_receive_streams(32);
  s.set_group_commits(40000);
  s.set_group_commit_waiters(100000);
  s.set_memtable_bytes(3 * 1024 * 1024 + 512 * 1024);
  s.set_table_file_bytes(900);
  s.set_pending_compaction_bytes(0);
  // 90 Sends within 1 ms, 5 within 2, 3 within 5, 1 within 10, 1 above.
  v1::LatencyHistogram* h = s.mutable_send_latency();
  for (uint64_t b : {1000, 2000, 5000, 10000}) h->add_upper_bounds_us(b);
  for (uint64_t c : {90, 5, 3, 1, 1}) h->add_counts(c);
  return s;
}

v1::GetRetentionStatusResponse SampleRetentionStatus() {
  v1::GetRetentionStatusResponse s;
  v1::RetentionRun* run = s.mutable_last_run();
  run->set_started_at_ms(1700000000000);
  run->set_elapsed_ms(42);
  run->set_conversations_checked(250);
  run->set_history_purged(1200);
  run->set_queue_purged(1);
  run->set_idempotency_purged(1);
  run->set_compacted(true);
  s.set_total_history_purged(5000);
  s.set_total_queue_purged(3);
  s.set_queue_retention_days(30);
  s.set_total_idempotency_purged(420);
  s.set_idempotency_window_days(7);
  s.set_interval_ms(6 * 3600000);
  s.set_next_run_at_ms(1700000000000 + 6 * 3600000);
  return s;
}

// ------------------------------------------------------ safety: parsing

TEST(SafetyParseTest, TimeArgs) {
  EXPECT_EQ(ParseTimeArg("2026-11-27T10:00:00Z"), 1795773600000);
  EXPECT_EQ(ParseTimeArg("2026-11-27t10:00:00z"), 1795773600000);
  EXPECT_EQ(ParseTimeArg("2026-11-27T10:00:00.5Z"), 1795773600500);
  EXPECT_EQ(ParseTimeArg("2026-11-27T10:00:00.123456Z"), 1795773600123);
  EXPECT_EQ(ParseTimeArg("2026-11-27T10:00:00+01:30"), 1795768200000);
  EXPECT_EQ(ParseTimeArg("2000-02-29T23:59:59Z"), 951868799000);
  EXPECT_EQ(ParseTimeArg("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseTimeArg("1795773600000"), 1795773600000);
  EXPECT_EQ(ParseTimeArg("0"), 0);
  // Round trip with FormatTime.
  EXPECT_EQ(FormatTime(*ParseTimeArg("2023-11-14T22:13:20Z")),
            "2023-11-14T22:13:20Z");
  std::string why;
  EXPECT_FALSE(ParseTimeArg("1795773600", &why));  // Unix seconds
  EXPECT_THAT(why, HasSubstr("looks like Unix seconds"));
  EXPECT_FALSE(ParseTimeArg("2026-11-27T10:00:00", &why));
  EXPECT_THAT(why, HasSubstr("time zone is missing"));
  EXPECT_FALSE(ParseTimeArg("2026-02-29T10:00:00Z", &why));  // not leap
  EXPECT_THAT(why, HasSubstr("no such date"));
  EXPECT_FALSE(ParseTimeArg("1969-12-31T23:59:59Z", &why));
  EXPECT_THAT(why, HasSubstr("before 1970"));
  for (const char* bad :
       {"", "now", "-5", "2026-11-27", "2026-11-27 10:00:00Z",
        "2026-13-01T00:00:00Z", "2026-11-27T24:00:00Z",
        "2026-11-27T10:60:00Z", "2026-11-27T10:00:60Z",
        "2026-11-27T10:00:00.Z", "2026-11-27T10:00:00+0100",
        "2026-11-27T10:00:00+25:00", "2026-11-27T10:00:00ZZ",
        "12345678901234567890", " 1795773600000", "1.5e12"}) {
    EXPECT_FALSE(ParseTimeArg(bad)) << bad;
  }
}

TEST(SafetyParseTest, StatusFilterAndActionNames) {
  EXPECT_EQ(ParseReportStatusFilter("open"), v1::REPORT_STATUS_OPEN);
  EXPECT_EQ(ParseReportStatusFilter("RESOLVED"), v1::REPORT_STATUS_RESOLVED);
  EXPECT_EQ(ParseReportStatusFilter("all"), v1::REPORT_STATUS_UNSPECIFIED);
  EXPECT_FALSE(ParseReportStatusFilter("closed"));
  EXPECT_FALSE(ParseReportStatusFilter(""));
  for (auto st : {v1::REPORT_STATUS_OPEN, v1::REPORT_STATUS_RESOLVED}) {
    EXPECT_EQ(ParseReportStatusFilter(ReportStatusName(st)), st);
  }
  EXPECT_EQ(ParseReportAction("dismiss"), v1::REPORT_ACTION_DISMISS);
  EXPECT_EQ(ParseReportAction("warn"), v1::REPORT_ACTION_WARN);
  EXPECT_EQ(ParseReportAction("Suspend"), v1::REPORT_ACTION_SUSPEND);
  EXPECT_EQ(ParseReportAction("remove-message"),
            v1::REPORT_ACTION_REMOVE_MESSAGE);
  EXPECT_EQ(ParseReportAction("remove_message"),
            v1::REPORT_ACTION_REMOVE_MESSAGE);
  EXPECT_FALSE(ParseReportAction("ban"));
  EXPECT_FALSE(ParseReportAction("unspecified"));
  for (auto a : {v1::REPORT_ACTION_DISMISS, v1::REPORT_ACTION_WARN,
                 v1::REPORT_ACTION_SUSPEND, v1::REPORT_ACTION_REMOVE_MESSAGE}) {
    EXPECT_EQ(ParseReportAction(ReportActionName(a)), a);
  }
  EXPECT_EQ(ReportActionName(v1::REPORT_ACTION_REMOVE_MESSAGE),
            "remove-message");
  EXPECT_EQ(ReportSourceName(v1::REPORT_SOURCE_SCANNER), "scanner");
  EXPECT_EQ(ReportSourceName(v1::REPORT_SOURCE_PARTICIPANT), "participant");
}

TEST(SafetyParseTest, ReasonNamesMatchTheServer) {
  const std::map<v1::ReportReason, std::string> names = {
      {v1::REPORT_REASON_SPAM, "spam"},
      {v1::REPORT_REASON_HARASSMENT, "harassment"},
      {v1::REPORT_REASON_HATE, "hate"},
      {v1::REPORT_REASON_VIOLENCE, "violence"},
      {v1::REPORT_REASON_SEXUAL_CONTENT, "sexual_content"},
      {v1::REPORT_REASON_CHILD_SAFETY, "child_safety"},
      {v1::REPORT_REASON_SELF_HARM, "self_harm"},
      {v1::REPORT_REASON_FRAUD, "fraud"},
      {v1::REPORT_REASON_OTHER, "other"},
      {v1::REPORT_REASON_UNSPECIFIED, "unspecified"}};
  for (const auto& [reason, name] : names) {
    EXPECT_EQ(ReportReasonName(reason), name);
  }
  // Every defined value has a name.
  for (int i = v1::ReportReason_MIN; i <= v1::ReportReason_MAX; ++i) {
    EXPECT_EQ(names.count(static_cast<v1::ReportReason>(i)), 1u) << i;
  }
}

TEST(SafetyParseTest, AllFourRoles) {
  EXPECT_EQ(ParseRole("operator"), v1::ADMIN_ROLE_OPERATOR);
  EXPECT_EQ(ParseRole("auditor"), v1::ADMIN_ROLE_AUDITOR);
  EXPECT_EQ(ParseRole("moderator"), v1::ADMIN_ROLE_MODERATOR);
  EXPECT_EQ(ParseRole("lawful_access"), v1::ADMIN_ROLE_LAWFUL_ACCESS);
  for (auto r : {v1::ADMIN_ROLE_OPERATOR, v1::ADMIN_ROLE_AUDITOR,
                 v1::ADMIN_ROLE_MODERATOR, v1::ADMIN_ROLE_LAWFUL_ACCESS}) {
    EXPECT_EQ(ParseRole(RoleName(r)), r);
  }
}

TEST(SafetyParseTest, TextChecks) {
  EXPECT_TRUE(IsValidUtf8("plain \xc3\xa9 \xe2\x86\x92 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));            // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));        // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));    // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_EQ(CheckText("CASE-2026-001", 128), "");
  EXPECT_EQ(CheckText("Fall \xc3\xa9t\xc3\xa9", 128), "");
  EXPECT_EQ(CheckText("", 128), "must not be empty");
  EXPECT_EQ(CheckText("  \t", 128), "must not be empty");
  EXPECT_THAT(CheckText(std::string(129, 'x'), 128), HasSubstr("too long"));
  EXPECT_EQ(CheckText(std::string(128, 'x'), 128), "");
  EXPECT_THAT(CheckText("a\nb", 128), HasSubstr("control characters"));
  EXPECT_EQ(CheckText("a\xff", 128), "is not valid UTF-8");
}

// --------------------------------------------------- safety: formatting

TEST(SafetyFormatTest, VerifyTextAndExitCode) {
  v1::VerifyAuditResponse ok;
  ok.set_ok(true);
  ok.set_records(42);
  EXPECT_EQ(FormatVerify(ok), "audit log OK: 42 records, chain intact");
  EXPECT_EQ(VerifyExitCode(ok), kExitOk);
  ok.set_records(1);
  EXPECT_EQ(FormatVerify(ok), "audit log OK: 1 record, chain intact");
  v1::VerifyAuditResponse bad;
  bad.set_ok(false);
  bad.set_records(42);
  bad.set_first_bad_seq(17);
  bad.set_problem("hash mismatch\x1b[2J");
  EXPECT_EQ(FormatVerify(bad),
            "audit log BROKEN at record 17: hash mismatch?[2J (42 records "
            "checked)");
  EXPECT_EQ(VerifyExitCode(bad), 1);
  EXPECT_NE(VerifyExitCode(bad), kExitUsage);
  EXPECT_EQ(VerifyJson(bad)["first_bad_seq"], 17);
  EXPECT_EQ(VerifyJson(bad)["ok"], false);
}

TEST(SafetyFormatTest, ReportTable) {
  v1::ReportSummary e2ee = SampleE2eeReport().report();
  v1::ReportSummary scanner = SampleReport(12, false);
  scanner.set_source(v1::REPORT_SOURCE_SCANNER);
  scanner.set_reason(v1::REPORT_REASON_SPAM);
  EXPECT_EQ(
      FormatReportTable({e2ee, scanner}),
      "ID      STATUS    SOURCE       REASON        CONVERSATION  SEQ  MODE"
      "       VERIFIED  CREATED               ACTION\n"
      "rep-1   open      participant  child_safety  c_9             7  e2ee"
      "       yes       2023-11-14T22:13:20Z  -\n"
      "rep-12  resolved  scanner      spam          c_12           16  "
      "transport  -         2023-11-14T22:13:20Z  warn\n");
  e2ee.set_franking_verified(false);
  EXPECT_EQ(VerifiedCell(e2ee), "no");
}

TEST(SafetyFormatTest, E2eeReportShowsTheFrankingMark) {
  EXPECT_EQ(FormatReport(SampleE2eeReport()),
            "report        rep-1 (open)\n"
            "source        participant, reporter acc_bob\n"
            "reason        child_safety\n"
            "conversation  c_9, message #7 (e2ee when reported)\n"
            "sender        acc_eve\n"
            "reported      2023-11-14T22:13:20Z\n"
            "verified      yes (message franking)\n"
            "comment       keeps messaging my kid\n"
            "\n"
            "message #7 from acc_eve (device 1) at 2023-11-14T22:13:27Z:\n"
            "    meet me\n"
            "    alone\n"
            "VERIFIED by message franking: this is what the reporter revealed "
            "(it matches the sender's commitment and parleyd's stamp)\n"
            "\n"
            "context note: end-to-end encrypted: this is what the reporter "
            "revealed, verified by message franking; parleyd has no other "
            "content of this conversation\n");
  // Not verified: said plainly.
  v1::GetReportResponse r = SampleE2eeReport();
  r.mutable_report()->set_franking_verified(false);
  EXPECT_THAT(FormatReport(r), HasSubstr("\nNOT VERIFIED: "));
  EXPECT_THAT(FormatReport(r), HasSubstr("verified      NO\n"));
  const nlohmann::json j = ReportDetailJson(SampleE2eeReport());
  EXPECT_EQ(j["report"]["franking_verified"], true);
  EXPECT_EQ(j["report"]["reason"], "child_safety");
  EXPECT_EQ(j["report"]["action"], nullptr);
  EXPECT_EQ(j["message"]["content"], "meet me\nalone");
  EXPECT_EQ(j["message"]["content_type"], "text/plain");
}

TEST(SafetyFormatTest, TransportReportWithContextAndResolution) {
  v1::GetReportResponse r;
  *r.mutable_report() = SampleReport(9, false);
  r.mutable_report()->set_seq(7);
  *r.mutable_message() = TextMessage(7, "acc_eve", "you \x1b[31mloser");
  *r.add_context() = TextMessage(6, "acc_bob", "hi");
  *r.add_context() = TextMessage(7, "acc_eve", "you loser");
  v1::Message image = TextMessage(8, "acc_eve", std::string("\x89PNG\0\1", 6));
  image.mutable_plain()->set_content_type("image/png");
  *r.add_context() = image;
  v1::Message bad_text = TextMessage(9, "acc_bob", "\xff\xfe");
  *r.add_context() = bad_text;
  r.set_context_note("policy rule default (moderation: full_review): up to 5 "
                     "messages before and after");
  EXPECT_EQ(FormatReport(r),
            "report        rep-9 (resolved)\n"
            "source        participant, reporter acc_bob\n"
            "reason        harassment\n"
            "conversation  c_9, message #7 (transport when reported)\n"
            "sender        acc_eve\n"
            "reported      2023-11-14T22:13:20Z\n"
            "verified      - (not end-to-end encrypted)\n"
            "resolution    warn by moderator:mod-1 at 2023-11-14T22:23:20Z\n"
            "note          first offence\n"
            "comment       -\n"
            "\n"
            "message #7 from acc_eve (device 1) at 2023-11-14T22:13:27Z:\n"
            "    you ?[31mloser\n"
            "parleyd's own copy (the conversation was not end-to-end "
            "encrypted)\n"
            "\n"
            "context (4 messages):\n"
            "  #6 from acc_bob (device 1) at 2023-11-14T22:13:26Z:\n"
            "    hi\n"
            "> #7 from acc_eve (device 1) at 2023-11-14T22:13:27Z:\n"
            "    you loser\n"
            "  #8 from acc_eve (device 1) at 2023-11-14T22:13:28Z:\n"
            "    (6 bytes of image/png, not shown)\n"
            "  #9 from acc_bob (device 1) at 2023-11-14T22:13:29Z:\n"
            "    (2 bytes of text/plain, not shown)\n"
            "\n"
            "context note: policy rule default (moderation: full_review): up "
            "to 5 messages before and after\n");
  // Withheld content (moderation: none).
  r.clear_message();
  r.clear_context();
  EXPECT_THAT(FormatReport(r), HasSubstr("\nmessage #7: not shown\n"));
  const nlohmann::json j = MessageJson(image);
  EXPECT_EQ(j["content_type"], "image/png");
  EXPECT_EQ(j["content_base64"], "iVBORwAB");
  EXPECT_EQ(j["content_bytes"], 6);
  EXPECT_FALSE(j.contains("content"));
  EXPECT_EQ(ReportJson(r.report())["action"], "warn");
}

TEST(SafetyFormatTest, ScannerSummary) {
  v1::ReportSummary s = SampleReport(3, true);
  s.set_source(v1::REPORT_SOURCE_SCANNER);
  s.clear_reporter_account_id();
  s.set_scanner_match("free crypto");
  EXPECT_THAT(FormatReportSummary(s),
              HasSubstr("source        scanner, matched \"free crypto\"\n"));
  EXPECT_THAT(FormatReportSummary(s), Not(HasSubstr("resolution")));
}

TEST(SafetyFormatTest, ServerStats) {
  EXPECT_EQ(
      FormatServerStats(SampleServerStats()),
      "server time   2023-11-14T23:13:20Z (up 1 h)\n"
      "messages (since the start):\n"
      "  stored        120000\n"
      "  duplicates    1 retry answered from the idempotency record\n"
      "  refused       42\n"
      "  acked         119950 queue entries\n"
      "  streams       32 Receive streams open\n"
      "  send latency  100 Sends: p50 1.00 ms, p99 10.00 ms, p99.9 above "
      "10.00 ms\n"
      "storage:\n"
      "  durability    40000 group commits answering 100000 waiters (2.5 per "
      "commit)\n"
      "  memtables     3.5 MiB\n"
      "  table files   900 B\n"
      "  compaction    0 B pending\n"
      "  writes        accepted\n");
  EXPECT_EQ(ServerStatsExitCode(SampleServerStats()), kExitOk);
  v1::GetServerStatsResponse stopped;
  stopped.set_server_time_ms(1'700'000'000'000);
  stopped.set_writes_stopped(true);
  const std::string text = FormatServerStats(stopped);
  EXPECT_THAT(text, HasSubstr("  durability    0 group commits\n"));
  EXPECT_THAT(text, HasSubstr("  writes        STOPPED (a background error"));
  EXPECT_THAT(text, HasSubstr("  send latency  not reported\n"));
  v1::GetServerStatsResponse malformed = SampleServerStats();
  malformed.mutable_send_latency()->mutable_counts()->RemoveLast();
  EXPECT_THAT(
      FormatServerStats(malformed),
      HasSubstr("  send latency  unreadable: latency histogram (end): 4 "
                "counts for 4 bounds"));
  EXPECT_EQ(ServerStatsJson(malformed)["send_latency"]["error"],
            "latency histogram (end): 4 counts for 4 bounds; there must be one "
            "more count than bounds");
  v1::GetServerStatsResponse idle;
  for (uint64_t b : {1000, 2000})
    idle.mutable_send_latency()->add_upper_bounds_us(b);
  for (int i = 0; i < 3; ++i) idle.mutable_send_latency()->add_counts(0);
  EXPECT_THAT(FormatServerStats(idle), HasSubstr("  send latency  0 Sends\n"));
  EXPECT_THAT(text, HasSubstr("server time   2023-11-14T22:13:20Z\n"));
  EXPECT_EQ(ServerStatsExitCode(stopped), kExitFailed);
  const nlohmann::json j = ServerStatsJson(SampleServerStats());
  EXPECT_EQ(j["sends_stored"], 120000);
  EXPECT_EQ(j["group_commit_waiters"], 100000);
  EXPECT_EQ(j["started_at"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(j["writes_stopped"], false);
  EXPECT_EQ(j["send_latency"]["count"], 100);
  EXPECT_EQ(j["send_latency"]["p50_ms"], 1.0);
  EXPECT_EQ(j["send_latency"]["p99_ms"], 10.0);
  EXPECT_TRUE(j["send_latency"]["p999_ms"].is_null());
  EXPECT_TRUE(ServerStatsJson(stopped)["send_latency"].is_null());
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(uint64_t{5} << 30), "5.0 GiB");
  EXPECT_EQ(FormatBytes(uint64_t{3} << 50), "3072.0 TiB");
}

TEST(SafetyFormatTest, RetentionStatus) {
  EXPECT_EQ(FormatRetentionStatus(SampleRetentionStatus()),
            "last run:\n"
            "  started       2023-11-14T22:13:20Z\n"
            "  elapsed       0.042 s\n"
            "  checked       250 conversations\n"
            "  purged        1200 history entries, 1 queue entry, 1 "
            "idempotency record\n"
            "  compacted     yes\n"
            "  result        ok\n"
            "totals:\n"
            "  purged        5000 history entries, 3 queue entries, 420 "
            "idempotency records\n"
            "settings:\n"
            "  queue         undelivered entries purged after 30 days\n"
            "  message ids   forgotten after 7 days (a retry within the "
            "window is recognised)\n"
            "  interval      every 6 h\n"
            "  next run      2023-11-15T04:13:20Z\n");
  v1::GetRetentionStatusResponse never;
  never.set_interval_ms(3600000);
  EXPECT_EQ(FormatRetentionStatus(never),
            "last run: never\n"
            "totals:\n"
            "  purged        0 history entries, 0 queue entries, 0 "
            "idempotency records\n"
            "settings:\n"
            "  queue         undelivered entries kept (no queue retention)\n"
            "  message ids   kept while the sending device exists (no "
            "idempotency window)\n"
            "  interval      every 1 h\n"
            "  next run      at the next check\n");
  v1::RetentionRun failed = SampleRetentionStatus().last_run();
  EXPECT_EQ(RetentionRunExitCode(failed), kExitOk);
  failed.set_error("IO error: disk full");
  EXPECT_THAT(FormatRetentionRun(failed),
              HasSubstr("result        FAILED: IO error: disk full\n"));
  EXPECT_EQ(RetentionRunExitCode(failed), kExitFailed);
  const nlohmann::json j = RetentionStatusJson(SampleRetentionStatus());
  EXPECT_EQ(j["last_run"]["history_purged"], 1200);
  EXPECT_EQ(j["queue_retention_days"], 30);
  EXPECT_EQ(j["last_run"]["idempotency_purged"], 1);
  EXPECT_EQ(j["total_idempotency_purged"], 420);
  EXPECT_EQ(j["idempotency_window_days"], 7);
  EXPECT_EQ(RetentionStatusJson(never)["last_run"], nullptr);
  EXPECT_EQ(FormatInterval(30 * 60000), "30 min");
  EXPECT_EQ(FormatInterval(90000), "90 s");
  EXPECT_EQ(FormatInterval(0), "-");
}

class FakeAdmin final : public v1::AdminService::Service {
 public:
  std::string last_authorization;
  std::string last_comment;
  int list_calls = 0;

  grpc::Status WhoAmI(grpc::ServerContext* ctx, const v1::WhoAmIRequest*,
                      v1::WhoAmIResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    resp->mutable_token()->set_token_id("t_1");
    resp->mutable_token()->set_name("ops");
    resp->mutable_token()->set_role(v1::ADMIN_ROLE_OPERATOR);
    return grpc::Status::OK;
  }
  grpc::Status GetPolicy(grpc::ServerContext* ctx,
                         const v1::GetPolicyRequest* req,
                         v1::GetPolicyResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    if (req->number() > 1) {
      return {grpc::StatusCode::NOT_FOUND,
              "no revision " + std::to_string(req->number())};
    }
    auto* r = resp->mutable_revision();
    r->set_number(1);
    r->set_revision_id("r1-abcd1234");
    r->set_content_hash("abcd1234ffff");
    r->set_author("parleyd");
    r->set_current(true);
    resp->set_content(kPolicyV1);
    return grpc::Status::OK;
  }
  grpc::Status PlanPolicy(
      grpc::ServerContext* ctx, const v1::PlanPolicyRequest* req,
      grpc::ServerWriter<v1::PlanPolicyResponse>* writer) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    v1::PlanPolicyResponse progress;
    progress.mutable_progress()->set_scanned(5);
    progress.mutable_progress()->set_total_estimate(10);
    writer->Write(progress);
    v1::PlanPolicyResponse plan;
    *plan.mutable_plan() = SamplePlan();
    plan.mutable_plan()->set_candidate_hash(
        std::to_string(req->content().size()));
    writer->Write(plan);
    return grpc::Status::OK;
  }
  grpc::Status ApplyPolicy(grpc::ServerContext* ctx,
                           const v1::ApplyPolicyRequest* req,
                           v1::ApplyPolicyResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    last_comment = req->comment();
    if (req->comment() == "refuse") {
      return {grpc::StatusCode::FAILED_PRECONDITION, "policy refused"};
    }
    if (req->comment() == "invalid") {
      return {grpc::StatusCode::INVALID_ARGUMENT, "p.yaml:3: rules: bad"};
    }
    resp->mutable_revision()->set_number(2);
    resp->mutable_revision()->set_revision_id("r2-beef0000");
    resp->mutable_revision()->set_current(true);
    resp->set_conversations_changed(12);
    *resp->mutable_result() = SamplePlan();
    return grpc::Status::OK;
  }
  grpc::Status RollbackPolicy(grpc::ServerContext* ctx,
                              const v1::RollbackPolicyRequest* req,
                              v1::ApplyPolicyResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    resp->mutable_revision()->set_number(3);
    resp->mutable_revision()->set_revision_id("r3-abcd1234");
    resp->mutable_revision()->set_rollback_of(req->number());
    return grpc::Status::OK;
  }
  // 250 conversations, pages of at most 100.
  grpc::Status ListConversations(
      grpc::ServerContext* ctx, const v1::AdminListConversationsRequest* req,
      v1::AdminListConversationsResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    ++list_calls;
    const int start =
        req->page_token().empty() ? 0 : std::stoi(req->page_token());
    const int n =
        std::min<int>({static_cast<int>(req->limit()), 100, 250 - start});
    for (int i = start; i < start + n; ++i) {
      auto* c = resp->add_conversations();
      c->set_conversation_id("c_" + std::to_string(i));
      c->set_kind(v1::CONVERSATION_KIND_GROUP);
      c->set_member_count(3);
      c->mutable_security()->set_mode(req->mode() == 0 ? v1::SECURITY_MODE_E2EE
                                                       : req->mode());
      c->mutable_security()->set_epoch(1);
      c->mutable_security()->set_rule_id("default");
      c->mutable_security()->set_policy_revision("r1-abcd1234");
    }
    if (start + n < 250) resp->set_next_page_token(std::to_string(start + n));
    return grpc::Status::OK;
  }
  grpc::Status CreateToken(grpc::ServerContext* ctx,
                           const v1::CreateTokenRequest* req,
                           v1::CreateTokenResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    resp->mutable_token()->set_token_id("t_2");
    resp->mutable_token()->set_role(req->role());
    resp->mutable_token()->set_name(req->name());
    resp->set_secret("s3cr3t-value");
    return grpc::Status::OK;
  }
  // Safety RPCs.
  bool audit_broken = false;
  v1::ResolveReportRequest last_resolve;
  v1::SetAccountSuspendedRequest last_suspend;
  v1::ExportConversationRequest last_export;
  int report_list_calls = 0;
  int export_calls = 0;
  std::string retention_error;
  bool writes_stopped = false;

  grpc::Status VerifyAudit(grpc::ServerContext* ctx,
                           const v1::VerifyAuditRequest*,
                           v1::VerifyAuditResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    resp->set_ok(!audit_broken);
    resp->set_records(42);
    if (audit_broken) {
      resp->set_first_bad_seq(17);
      resp->set_problem("hash mismatch (record changed)");
    }
    return grpc::Status::OK;
  }
  // 120 reports rep-1..rep-120 (odd: open, even: resolved), pages of at
  // most 50, next_page_token = the last id returned.
  grpc::Status ListReports(grpc::ServerContext* ctx,
                           const v1::ListReportsRequest* req,
                           v1::ListReportsResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    ++report_list_calls;
    int n = req->page_token().empty() ? 0 : std::stoi(req->page_token().substr(4));
    const size_t limit = std::min<uint32_t>(req->limit(), 50);
    while (++n <= 120 && static_cast<size_t>(resp->reports_size()) < limit) {
      const bool open = n % 2 == 1;
      if (req->status() == v1::REPORT_STATUS_OPEN && !open) continue;
      if (req->status() == v1::REPORT_STATUS_RESOLVED && open) continue;
      *resp->add_reports() = SampleReport(n, open);
      if (static_cast<size_t>(resp->reports_size()) == limit && n < 120) {
        resp->set_next_page_token("rep-" + std::to_string(n));
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status GetReport(grpc::ServerContext* ctx,
                         const v1::GetReportRequest* req,
                         v1::GetReportResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    if (req->report_id() != "rep-1") {
      return {grpc::StatusCode::NOT_FOUND,
              "report " + req->report_id() + " does not exist"};
    }
    *resp = SampleE2eeReport();
    return grpc::Status::OK;
  }
  grpc::Status ResolveReport(grpc::ServerContext* ctx,
                             const v1::ResolveReportRequest* req,
                             v1::ResolveReportResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    last_resolve = *req;
    if (req->report_id() == "rep-2") {
      return {grpc::StatusCode::FAILED_PRECONDITION,
              "report rep-2 was already resolved"};
    }
    *resp->mutable_report() = SampleReport(1, false);
    resp->mutable_report()->set_action(req->action());
    resp->mutable_report()->set_resolution_note(req->note());
    return grpc::Status::OK;
  }
  grpc::Status SetAccountSuspended(
      grpc::ServerContext* ctx, const v1::SetAccountSuspendedRequest* req,
      v1::SetAccountSuspendedResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    last_suspend = *req;
    resp->set_account_id(req->account_id());
    resp->set_suspended(req->suspended());
    return grpc::Status::OK;
  }
  // c_e2ee: metadata only; c_denied: PERMISSION_DENIED; else content.
  grpc::Status ExportConversation(
      grpc::ServerContext* ctx, const v1::ExportConversationRequest* req,
      v1::ExportConversationResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    ++export_calls;
    last_export = *req;
    if (req->conversation_id() == "c_denied") {
      return {grpc::StatusCode::PERMISSION_DENIED,
              "policy rule default does not allow lawful access"};
    }
    const bool e2ee = req->conversation_id() == "c_e2ee";
    resp->set_content_included(!e2ee);
    resp->set_message_count(e2ee ? 0 : 2);
    resp->set_note(e2ee ? "conversation c_e2ee is end-to-end encrypted: "
                          "parleyd has no readable content; metadata only"
                        : "2 history entries (2 messages with content)");
    resp->set_export_json(
        "{\"format\":\"parley.export.v1\",\"case_reference\":\"" +
        req->case_reference() + "\",\"content_included\":" +
        (e2ee ? "false" : "true") + ",\"messages\":[]}");
    return grpc::Status::OK;
  }
  grpc::Status GetRetentionStatus(grpc::ServerContext* ctx,
                                  const v1::GetRetentionStatusRequest*,
                                  v1::GetRetentionStatusResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    *resp = SampleRetentionStatus();
    return grpc::Status::OK;
  }
  grpc::Status GetServerStats(grpc::ServerContext* ctx,
                              const v1::GetServerStatsRequest*,
                              v1::GetServerStatsResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    *resp = SampleServerStats();
    resp->set_writes_stopped(writes_stopped);
    return grpc::Status::OK;
  }
  grpc::Status RunRetention(grpc::ServerContext* ctx,
                            const v1::RunRetentionRequest*,
                            v1::RunRetentionResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    *resp->mutable_run() = SampleRetentionStatus().last_run();
    resp->mutable_run()->set_error(retention_error);
    return grpc::Status::OK;
  }

  grpc::Status TailAudit(grpc::ServerContext* ctx, const v1::TailAuditRequest*,
                         v1::TailAuditResponse* resp) override {
    if (grpc::Status s = Auth(ctx); !s.ok()) return s;
    auto* r = resp->add_records();
    r->set_seq(7);
    r->set_time_ms(1700000000000);
    r->set_actor("ops");
    r->set_action("policy.apply");
    r->set_target("r2-beef0000");
    r->set_details_json("{\"changed\":12}");
    return grpc::Status::OK;
  }

 private:
  grpc::Status Auth(grpc::ServerContext* ctx) {
    auto it = ctx->client_metadata().find("authorization");
    last_authorization =
        it == ctx->client_metadata().end()
            ? ""
            : std::string(it->second.data(), it->second.size());
    if (last_authorization != "Bearer good-token") {
      return {grpc::StatusCode::UNAUTHENTICATED, "unknown admin token"};
    }
    return grpc::Status::OK;
  }
};

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_);
  }
  void TearDown() override { server_->Shutdown(); }

  // A fresh Env (clears the captured output).
  Env& NewEnv(bool json, const std::string& token = "good-token") {
    out_.str("");
    err_.str("");
    env_ = std::make_unique<Env>(json, &out_, &err_);
    env_->SetStub(v1::AdminService::NewStub(
                      server_->InProcessChannel(grpc::ChannelArguments())),
                  "127.0.0.1:7444", token, 10);
    return *env_;
  }
  nlohmann::json OutJson() const { return nlohmann::json::parse(out_.str()); }

  FakeAdmin service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Env> env_;
  std::ostringstream out_, err_;
  TempDir dir_;
};

TEST_F(CommandsTest, WhoAmISendsTheBearerToken) {
  EXPECT_EQ(WhoAmI(NewEnv(false)), kExitOk);
  EXPECT_EQ(service_.last_authorization, "Bearer good-token");
  EXPECT_EQ(out_.str(), "token t_1: ops (operator), created by  at -\n");
}

TEST_F(CommandsTest, BadTokenIsReportedWithoutTheToken) {
  EXPECT_EQ(WhoAmI(NewEnv(false, "wrong-token")), kExitFailed);
  EXPECT_THAT(err_.str(), HasSubstr("parleyctl: WhoAmI: unknown admin token"));
  EXPECT_THAT(err_.str(), HasSubstr("[UNAUTHENTICATED]"));
  EXPECT_THAT(err_.str(), Not(HasSubstr("wrong-token")));
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(WhoAmI(NewEnv(true, "wrong-token")), kExitFailed);
  EXPECT_EQ(OutJson()["error"]["code"], "UNAUTHENTICATED");
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CommandsTest, ValidateLocally) {
  Env env(false, &out_, &err_);  // no stub: validate needs no server
  EXPECT_EQ(PolicyValidate(env, dir_.Write("p.yaml", kPolicyV1)), kExitOk);
  EXPECT_EQ(out_.str(),
            dir_.path() + "/p.yaml: valid (2 rules: minors, default)\n");
  out_.str("");
  const std::string bad = dir_.Write("bad.yaml", "version: 2\nrules: []\n");
  EXPECT_EQ(PolicyValidate(env, bad), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr(bad + ":1: version"));
  EXPECT_THAT(err_.str(), HasSubstr("invalid policy"));
  EXPECT_EQ(PolicyValidate(env, dir_.path() + "/missing.yaml"), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("cannot read policy file"));
  Env json_env(true, &out_, &err_);
  out_.str("");
  EXPECT_EQ(PolicyValidate(json_env, bad), kExitUsage);
  EXPECT_EQ(OutJson()["valid"], false);
  EXPECT_EQ(OutJson()["error"]["code"], "INVALID_ARGUMENT");
  EXPECT_FALSE(OutJson()["errors"].empty());
}

TEST_F(CommandsTest, Diff) {
  const std::string same = dir_.Write("same.yaml", kPolicyV1);
  EXPECT_EQ(PolicyDiff(NewEnv(false), same), kExitOk);
  EXPECT_EQ(out_.str(), "no differences (" + same + " matches r1-abcd1234)\n");
  const std::string v2 = dir_.Write("v2.yaml", kPolicyV2);
  EXPECT_EQ(PolicyDiff(NewEnv(false), v2), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("--- current (r1-abcd1234)\n+++ " + v2));
  EXPECT_THAT(out_.str(), HasSubstr("-  - id: minors\n"));
  EXPECT_THAT(out_.str(), HasSubstr("rules removed: minors\n"));
  EXPECT_EQ(PolicyDiff(NewEnv(true), v2), kExitOk);
  EXPECT_EQ(OutJson()["different"], true);
  EXPECT_EQ(OutJson()["rules_removed"], nlohmann::json({"minors"}));
  EXPECT_EQ(OutJson()["rules_added"], nlohmann::json::array());
}

TEST_F(CommandsTest, PlanPrintsThePlan) {
  const std::string v2 = dir_.Write("v2.yaml", kPolicyV2);
  EXPECT_EQ(PolicyPlan(NewEnv(false), {v2, 0}), kExitOk);
  EXPECT_THAT(out_.str(),
              HasSubstr("plan for " + v2 + " (candidate sha256 " +
                        std::to_string(sizeof kPolicyV2 - 1) + ")"));
  EXPECT_THAT(out_.str(), HasSubstr("e2ee \u2192 transport     12"));
  EXPECT_EQ(err_.str(), "");  // no progress bar when not a terminal
  EXPECT_EQ(PolicyPlan(NewEnv(false), {dir_.Write("bad.yaml", "x: [\n"), 0}),
            kExitUsage);
}

TEST_F(CommandsTest, ApplyExitCodes) {
  const std::string v2 = dir_.Write("v2.yaml", kPolicyV2);
  EXPECT_EQ(PolicyApply(NewEnv(false), {v2, ""}), kExitUsage);
  EXPECT_EQ(PolicyApply(NewEnv(false), {v2, "tighten"}), kExitOk);
  EXPECT_EQ(service_.last_comment, "tighten");
  EXPECT_THAT(out_.str(), HasSubstr("applied " + v2 +
                                    " as r2-beef0000 (#2, current)\n"
                                    "12 conversations changed"));
  EXPECT_EQ(PolicyApply(NewEnv(false), {v2, "refuse"}), kExitFailed);
  EXPECT_THAT(err_.str(),
              HasSubstr("ApplyPolicy: policy refused [FAILED_PRECONDITION]"));
  EXPECT_EQ(PolicyApply(NewEnv(true), {v2, "invalid"}), kExitUsage);
  EXPECT_EQ(OutJson()["error"]["code"], "INVALID_ARGUMENT");
}

TEST_F(CommandsTest, RollbackChecksTheRevisionId) {
  EXPECT_EQ(PolicyRollback(NewEnv(false), {"r1-abcd", "back"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("rolled back to r1: new revision "
                                    "r3-abcd1234 (#3, rollback of r1)"));
  EXPECT_EQ(PolicyRollback(NewEnv(false), {"r1-0000", "back"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("does not match"));
  EXPECT_EQ(PolicyRollback(NewEnv(false), {"latest", "back"}), kExitUsage);
  EXPECT_EQ(PolicyRollback(NewEnv(false), {"5-ab", "back"}), kExitFailed);
  EXPECT_THAT(err_.str(), HasSubstr("[NOT_FOUND]"));
}

TEST_F(CommandsTest, ListFollowsPagesUpToTheLimit) {
  EXPECT_EQ(ConversationsList(NewEnv(true), {"", 230}), kExitOk);
  EXPECT_EQ(OutJson()["conversations"].size(), 230u);
  EXPECT_EQ(OutJson()["conversations"][229]["conversation_id"], "c_229");
  EXPECT_EQ(OutJson()["more"], true);
  EXPECT_EQ(service_.list_calls, 3);
  EXPECT_EQ(ConversationsList(NewEnv(false), {"opt-in", 1000}), kExitOk);
  EXPECT_THAT(
      out_.str(),
      HasSubstr(
          "ID     KIND   MEMBERS  MODE    EPOCH  RULE     REVISION\n"
          "c_0    group        3  opt-in      1  default  r1-abcd1234\n"));
  EXPECT_THAT(out_.str(), HasSubstr("\n250 conversations\n"));
  EXPECT_EQ(ConversationsList(NewEnv(false), {"plain", 10}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("unknown mode \"plain\""));
}

TEST_F(CommandsTest, AuditTail) {
  EXPECT_EQ(AuditTail(NewEnv(false), {}), kExitOk);
  EXPECT_EQ(
      out_.str(),
      "SEQ  TIME                  ACTOR  ACTION        TARGET       DETAILS\n"
      "  7  2023-11-14T22:13:20Z  ops    policy.apply  r2-beef0000  "
      "{\"changed\":12}\n");
  EXPECT_EQ(AuditTail(NewEnv(true), {}), kExitOk);
  EXPECT_EQ(OutJson()["records"][0]["details"]["changed"], 12);
}

TEST_F(CommandsTest, TokensCreateWritesA0600File) {
  const std::string out_file = dir_.path() + "/new.token";
  EXPECT_EQ(TokensCreate(NewEnv(false), {"auditor", "audit-bot", out_file}),
            kExitOk);
  struct stat st {};
  ASSERT_EQ(::stat(out_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto secret = ReadTokenFile(out_file);
  ASSERT_TRUE(secret.ok());
  EXPECT_EQ(*secret, "s3cr3t-value");
  EXPECT_THAT(out_.str(), Not(HasSubstr("s3cr3t")));
  // Never overwrites.
  EXPECT_EQ(TokensCreate(NewEnv(false), {"auditor", "again", out_file}),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("refusing to overwrite"));
  // Without --out: printed once, with a warning.
  EXPECT_EQ(TokensCreate(NewEnv(false), {"operator", "x", ""}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("secret: s3cr3t-value"));
  EXPECT_THAT(err_.str(), HasSubstr("warning"));
  EXPECT_EQ(TokensCreate(NewEnv(false), {"root", "x", ""}), kExitUsage);
  // A failed RPC leaves no file behind.
  const std::string other = dir_.path() + "/other.token";
  EXPECT_EQ(TokensCreate(NewEnv(false, "bad"), {"operator", "y", other}),
            kExitFailed);
  EXPECT_NE(::access(other.c_str(), F_OK), 0);
}

// ------------------------------------------------- safety commands

TEST_F(CommandsTest, AuditVerifyExitCodes) {
  EXPECT_EQ(AuditVerify(NewEnv(false)), kExitOk);
  EXPECT_EQ(out_.str(), "audit log OK: 42 records, chain intact\n");
  service_.audit_broken = true;
  EXPECT_EQ(AuditVerify(NewEnv(false)), 1);
  EXPECT_EQ(out_.str(),
            "audit log BROKEN at record 17: hash mismatch (record changed) "
            "(42 records checked)\n");
  EXPECT_EQ(AuditVerify(NewEnv(true)), 1);
  EXPECT_EQ(OutJson()["ok"], false);
  EXPECT_EQ(OutJson()["first_bad_seq"], 17);
  EXPECT_EQ(AuditVerify(NewEnv(false, "bad")), kExitFailed);
  EXPECT_THAT(err_.str(), HasSubstr("VerifyAudit: unknown admin token"));
}

TEST_F(CommandsTest, ReportsListFollowsPages) {
  EXPECT_EQ(ReportsList(NewEnv(true), {"all", 110}), kExitOk);
  EXPECT_EQ(OutJson()["reports"].size(), 110u);
  EXPECT_EQ(OutJson()["reports"][109]["report_id"], "rep-110");
  EXPECT_EQ(OutJson()["reports"][1]["action"], "warn");
  EXPECT_EQ(OutJson()["more"], true);
  EXPECT_EQ(service_.report_list_calls, 3);
  EXPECT_EQ(ReportsList(NewEnv(false), {"open", 1000}), kExitOk);
  EXPECT_THAT(out_.str(),
              HasSubstr("ID       STATUS  SOURCE       REASON      "
                        "CONVERSATION  SEQ  MODE       VERIFIED  CREATED"
                        "               ACTION\n"
                        "rep-1    open    participant  harassment  c_1  "
                        "           5  transport  -         "
                        "2023-11-14T22:13:20Z  -\n"));
  EXPECT_THAT(out_.str(), HasSubstr("\n60 open reports\n"));
  EXPECT_EQ(ReportsList(NewEnv(false), {"closed", 10}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--status: unknown status \"closed\""));
}

TEST_F(CommandsTest, ReportsShow) {
  EXPECT_EQ(ReportsShow(NewEnv(false), "rep-1"), kExitOk);
  EXPECT_THAT(out_.str(),
              HasSubstr("\nVERIFIED by message franking: this is what the "
                        "reporter revealed"));
  EXPECT_EQ(ReportsShow(NewEnv(true), "rep-1"), kExitOk);
  EXPECT_EQ(OutJson()["message"]["content"], "meet me\nalone");
  EXPECT_EQ(ReportsShow(NewEnv(false), "rep-5"), kExitFailed);
  EXPECT_THAT(err_.str(),
              HasSubstr("GetReport: report rep-5 does not exist [NOT_FOUND]"));
  EXPECT_EQ(ReportsShow(NewEnv(false), ""), kExitUsage);
}

TEST_F(CommandsTest, ReportsResolve) {
  EXPECT_EQ(ReportsResolve(NewEnv(false),
                           {"rep-1", "remove-message", "insult, rule 3"}),
            kExitOk);
  EXPECT_EQ(service_.last_resolve.action(), v1::REPORT_ACTION_REMOVE_MESSAGE);
  EXPECT_EQ(service_.last_resolve.note(), "insult, rule 3");
  EXPECT_THAT(out_.str(), HasSubstr("resolved rep-1: remove-message\n"
                                    "report        rep-1 (resolved)\n"));
  EXPECT_THAT(out_.str(), HasSubstr("note          insult, rule 3\n"));
  // Local checks: nothing is sent.
  service_.last_resolve.Clear();
  EXPECT_EQ(ReportsResolve(NewEnv(false), {"rep-1", "ban", "x"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--action: unknown action \"ban\""));
  EXPECT_EQ(ReportsResolve(NewEnv(false), {"rep-1", "warn", " "}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--note: must not be empty"));
  EXPECT_EQ(service_.last_resolve.report_id(), "");
  // The server's refusal: its message, exit 1.
  EXPECT_EQ(ReportsResolve(NewEnv(false), {"rep-2", "dismiss", "ok"}),
            kExitFailed);
  EXPECT_THAT(err_.str(), HasSubstr("ResolveReport: report rep-2 was already "
                                    "resolved [FAILED_PRECONDITION]"));
}

TEST_F(CommandsTest, AccountsSuspendAndUnsuspend) {
  EXPECT_EQ(AccountsSetSuspended(NewEnv(false), {"acc_eve", true, "spam"}),
            kExitOk);
  EXPECT_TRUE(service_.last_suspend.suspended());
  EXPECT_EQ(service_.last_suspend.note(), "spam");
  EXPECT_THAT(out_.str(), HasSubstr("account acc_eve suspended"));
  EXPECT_EQ(AccountsSetSuspended(NewEnv(true), {"acc_eve", false, "appeal"}),
            kExitOk);
  EXPECT_FALSE(service_.last_suspend.suspended());
  EXPECT_EQ(OutJson()["suspended"], false);
  EXPECT_EQ(AccountsSetSuspended(NewEnv(false), {"acc_eve", true, ""}),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--note: must not be empty"));
}

TEST_F(CommandsTest, AccessExportToA0600File) {
  const std::string file = dir_.path() + "/case.json";
  EXPECT_EQ(AccessExport(NewEnv(false), {"c_1", "CASE-7", "2026-11-27T10:00:00Z",
                                         "1795777200000", file}),
            kExitOk);
  EXPECT_EQ(service_.last_export.from_ms(), 1795773600000);
  EXPECT_EQ(service_.last_export.to_ms(), 1795777200000);
  EXPECT_EQ(service_.last_export.case_reference(), "CASE-7");
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto written = ReadFile(file, "export");
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(nlohmann::json::parse(*written)["case_reference"], "CASE-7");
  EXPECT_THAT(out_.str(), HasSubstr("exported conversation c_1 for case "
                                    "\"CASE-7\": 2 messages with content\n"
                                    "written to " + file + " (mode 0600)\n"));
  EXPECT_THAT(err_.str(), HasSubstr("parleyctl: note: 2 history entries"));
  // Never overwrites, and asks nothing of the server then.
  EXPECT_EQ(AccessExport(NewEnv(false), {"c_1", "CASE-7", "", "", file}),
            kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--out: " + file + " exists"));
  EXPECT_EQ(service_.export_calls, 1);
  // A refused export leaves no file.
  const std::string denied = dir_.path() + "/denied.json";
  EXPECT_EQ(AccessExport(NewEnv(false), {"c_denied", "CASE-7", "", "", denied}),
            kExitFailed);
  EXPECT_THAT(err_.str(), HasSubstr("ExportConversation: policy rule default "
                                    "does not allow lawful access "
                                    "[PERMISSION_DENIED]"));
  EXPECT_NE(::access(denied.c_str(), F_OK), 0);
}

TEST_F(CommandsTest, AccessExportE2eeToStdout) {
  EXPECT_EQ(AccessExport(NewEnv(false), {"c_e2ee", "CASE-8", "", "", ""}),
            kExitOk);
  EXPECT_EQ(nlohmann::json::parse(out_.str())["content_included"], false);
  EXPECT_THAT(err_.str(), HasSubstr("parleyctl: end-to-end encrypted: metadata "
                                    "only, no message content\n"));
  EXPECT_THAT(err_.str(), HasSubstr("parleyctl: note: conversation c_e2ee is "
                                    "end-to-end encrypted"));
  EXPECT_EQ(AccessExport(NewEnv(true), {"c_e2ee", "CASE-8", "", "", ""}),
            kExitOk);
  EXPECT_EQ(OutJson()["content_included"], false);
  EXPECT_EQ(OutJson()["warning"],
            "end-to-end encrypted: metadata only, no message content");
  EXPECT_EQ(OutJson()["export"]["format"], "parley.export.v1");
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CommandsTest, AccessExportChecksItsInputsLocally) {
  struct Case {
    ExportArgs args;
    std::string error;
  };
  const std::vector<Case> cases = {
      {{"", "C", "", "", ""}, "--conversation: must not be empty"},
      {{"c 1", "C", "", "", ""}, "--conversation: must not contain spaces"},
      {{"c_1", "", "", "", ""}, "--case: must not be empty"},
      {{"c_1", std::string(129, 'x'), "", "", ""}, "--case: is too long"},
      {{"c_1", "C\x01", "", "", ""}, "--case: must not contain control"},
      {{"c_1", "C", "yesterday", "", ""},
       "--from: invalid time \"yesterday\": not a time (expected RFC 3339"},
      {{"c_1", "C", "", "1795773600", ""},
       "--to: invalid time \"1795773600\": looks like Unix seconds"},
      {{"c_1", "C", "2026-11-28T00:00:00Z", "2026-11-27T00:00:00Z", ""},
       "--from (2026-11-28T00:00:00Z) is later than --to "
       "(2026-11-27T00:00:00Z)"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(AccessExport(NewEnv(false), c.args), kExitUsage) << c.error;
    EXPECT_THAT(err_.str(), HasSubstr(c.error));
    EXPECT_THAT(err_.str(), HasSubstr("[INVALID_ARGUMENT]"));
  }
  EXPECT_EQ(service_.export_calls, 0);
  // No server needed for the checks.
  Env offline(false, &out_, &err_);
  v1::ExportConversationRequest req;
  EXPECT_EQ(CheckExportArgs(offline, {"c_1", "C", "0", "", ""}, &req),
            kExitOk);
  EXPECT_EQ(req.from_ms(), 0);
}

TEST_F(CommandsTest, Retention) {
  EXPECT_EQ(RetentionStatus(NewEnv(false)), kExitOk);
  EXPECT_EQ(out_.str(), FormatRetentionStatus(SampleRetentionStatus()));
  EXPECT_EQ(RetentionRun(NewEnv(false)), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("retention run finished:\n"
                                    "  started       2023-11-14T22:13:20Z\n"));
  service_.retention_error = "IO error: disk full";
  EXPECT_EQ(RetentionRun(NewEnv(true)), kExitFailed);
  EXPECT_EQ(OutJson()["run"]["error"], "IO error: disk full");
  EXPECT_EQ(RetentionStatus(NewEnv(false, "bad")), kExitFailed);
}

TEST_F(CommandsTest, ServerStats) {
  EXPECT_EQ(ServerStats(NewEnv(false)), kExitOk);
  EXPECT_EQ(out_.str(), FormatServerStats(SampleServerStats()));
  service_.writes_stopped = true;
  EXPECT_EQ(ServerStats(NewEnv(true)), kExitFailed);
  EXPECT_EQ(OutJson()["writes_stopped"], true);
  EXPECT_EQ(OutJson()["receive_streams"], 32);
  EXPECT_EQ(ServerStats(NewEnv(false, "bad")), kExitFailed);
  EXPECT_THAT(err_.str(), HasSubstr("parleyctl: GetServerStats: "));
}

TEST_F(CommandsTest, TokensCreateTakesEveryRole) {
  for (const char* role :
       {"operator", "auditor", "moderator", "lawful_access", "lawful-access"}) {
    EXPECT_EQ(TokensCreate(NewEnv(true), {role, "n", ""}), kExitOk) << role;
    EXPECT_EQ(OutJson()["token"]["role"], RoleName(*ParseRole(role)));
  }
}

TEST(ConnectTest, UnreachableServerIsExit1) {
  TempDir dir;
  GlobalOptions g;
  g.server = "127.0.0.1:1";
  g.timeout_s = 5;
  g.ca = dir.Write("ca.pem", kTestCert);
  g.token_file = dir.Write("t", "tok\n");
  std::ostringstream out, err;
  Env env(false, &out, &err);
  ASSERT_EQ(Connect(g, &env), kExitOk);
  EXPECT_EQ(WhoAmI(env), kExitFailed);
  EXPECT_THAT(
      err.str(),
      HasSubstr("parleyctl: cannot reach parleyd admin at 127.0.0.1:1"));
  EXPECT_THAT(err.str(), HasSubstr("[UNAVAILABLE]"));
}

// The whole client path: CA file, TLS with name check, token metadata.
TEST(ConnectTest, TlsWithTheCaFileAndToken) {
  FakeAdmin service;
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({kTestKey, kTestCert});
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl),
                           &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_TRUE(server);
  ASSERT_NE(port, 0);

  TempDir dir;
  GlobalOptions g;
  g.server = "127.0.0.1:" + std::to_string(port);
  g.ca = dir.Write("ca.pem", kTestCert);
  g.token_file = dir.Write("t", "good-token\n");
  std::ostringstream out, err;
  Env env(true, &out, &err);
  ASSERT_EQ(Connect(g, &env), kExitOk);
  EXPECT_EQ(WhoAmI(env), kExitOk) << out.str();
  EXPECT_EQ(nlohmann::json::parse(out.str())["token"]["role"], "operator");
  EXPECT_EQ(service.last_authorization, "Bearer good-token");
  server->Shutdown();
}

TEST(ConnectTest, BadOptionsAreExit2) {
  TempDir dir;
  std::ostringstream out, err;
  Env env(false, &out, &err);
  GlobalOptions g;
  g.server = "nohost";
  EXPECT_EQ(Connect(g, &env), kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("invalid --server"));
  g.server = "127.0.0.1:7444";
  g.ca = dir.path() + "/none.pem";
  EXPECT_EQ(Connect(g, &env), kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("cannot read CA file"));
  g.ca = dir.Write("ca.pem", "not a cert");
  EXPECT_EQ(Connect(g, &env), kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("holds no PEM certificate"));
}

}  // namespace
}  // namespace parley::ctl
