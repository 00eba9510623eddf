// libFuzzer target: parleyctl's input handling.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Input: one selector byte, then the payload.
//   0  a policy file: `parleyctl policy validate FILE` (human and --json
//      output) on the payload written to a file.
//   1  `policy diff`: the payload is two documents separated by the first NUL
//      byte (none: split in the middle); UnifiedDiff of the two, the edit
//      script checked against both texts, and both parsed as policies (as
//      PolicyDiff does to compare rule ids).
//   2  command-line words and token files: ParseRevisionRef, ParseMode,
//      ParseRole, Sanitize, DisplayWidth, EmbeddedJson, ReadTokenFile.
//   3  what parleyd answers, rendered: a serialized PolicyPlan (FormatPlan,
//      PlanJson), ListPolicyRevisionsResponse, TailAuditResponse,
//      ListTokensResponse, AdminListConversationsResponse (the selector's
//      high bits pick the message).
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.h"
#include "google/protobuf/stubs/logging.h"
#include "tests/fuzz/fuzz_util.h"
#include "tools/parleyctl/commands.h"
#include "tools/parleyctl/diff.h"
#include "tools/parleyctl/format.h"

namespace {

using parley::fuzz::Check;
namespace ctl = parley::ctl;
namespace v1 = parley::v1;

const std::string& ScratchFile() {
  static const std::string path = parley::fuzz::ProcessTempDir() + "/input";
  return path;
}

bool WriteScratch(std::string_view bytes) {
  FILE* f = std::fopen(ScratchFile().c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}


void PolicyFile(std::string_view payload) {
  if (!WriteScratch(payload)) return;
  for (bool json : {false, true}) {
    std::ostringstream out, err;
    ctl::Env env(json, &out, &err);
    const int rc = ctl::PolicyValidate(env, ScratchFile());
    Check(rc == ctl::kExitOk || rc == ctl::kExitUsage, "policy validate exits 0 or 2");
    if (json) Check(!out.str().empty() && out.str().front() == '{', "--json prints one object");
  }
}

void Diff(std::string_view payload, uint8_t context) {
  size_t cut = payload.find('\0');
  std::string_view a, b;
  if (cut == std::string_view::npos) {
    cut = payload.size() / 2;
    a = payload.substr(0, cut);
    b = payload.substr(cut);
  } else {
    a = payload.substr(0, cut);
    b = payload.substr(cut + 1);
  }
  const std::vector<std::string_view> la = ctl::SplitLines(a), lb = ctl::SplitLines(b);
  const std::vector<ctl::Edit> edits = ctl::DiffLines(la, lb);
  // The edit script must turn a into b, visiting every line once, in order.
  size_t ia = 0, ib = 0;
  for (const ctl::Edit& e : edits) {
    switch (e.kind) {
      case ctl::EditKind::kEqual:
        Check(e.a_index == ia && e.b_index == ib, "equal edit in order");
        Check(ia < la.size() && ib < lb.size() && la[ia] == lb[ib], "equal lines are equal");
        ++ia;
        ++ib;
        break;
      case ctl::EditKind::kDelete:
        Check(e.a_index == ia && ia < la.size(), "delete in order");
        ++ia;
        break;
      case ctl::EditKind::kInsert:
        Check(e.b_index == ib && ib < lb.size(), "insert in order");
        ++ib;
        break;
    }
  }
  Check(ia == la.size() && ib == lb.size(), "edit script covers both texts");
  const std::string diff = ctl::UnifiedDiff(a, b, "current (r1-00000000)", "new.yaml", context % 8);
  Check(diff.empty() == (a == b), "empty diff iff equal texts");
  // PolicyDiff compares the rule ids of both documents.
  for (std::string_view doc : {a, b}) {
    absl::StatusOr<parley::policy::Policy> p = parley::policy::ParsePolicy(doc, "diff", "r1");
    if (p.ok()) (void)p->rule_ids();
  }
}

void Words(std::string_view text) {
  if (std::optional<ctl::RevisionRef> r = ctl::ParseRevisionRef(text)) {
    Check(r->number >= 1, "revision number >= 1");
  }
  if (std::optional<v1::SecurityMode> m = ctl::ParseMode(text)) {
    Check(ctl::ParseMode(ctl::ModeName(*m)) == m, "mode name round trip");
  }
  if (std::optional<v1::AdminRole> r = ctl::ParseRole(text)) {
    Check(ctl::ParseRole(ctl::RoleName(*r)) == r, "role name round trip");
  }
  const std::string s = ctl::Sanitize(text), ml = ctl::Sanitize(text, true);
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    Check(u >= 0x20 && u != 0x7f, "Sanitize leaves no C0 control character or DEL");
  }
  (void)ctl::DisplayWidth(text);
  (void)ctl::JsonText(ctl::EmbeddedJson(std::string(text)));
  (void)ctl::Hex(text);
  ctl::Table t({"A", std::string(text)});
  t.AlignRight(1);
  t.AddRow({std::string(text), "x"});
  (void)t.Render("  ");
  (void)ctl::JoinSamples({std::string(text), "b", "c"}, text.size() % 4);
  if (WriteScratch(text)) {
    absl::StatusOr<std::string> tok = ctl::ReadTokenFile(ScratchFile());
    if (tok.ok()) {
      Check(!tok->empty(), "a token is not empty");
      Check(tok->find_first_of(" \t\r\n") == std::string::npos, "a token has no blanks");
    }
  }
}

void ServerAnswer(uint8_t which, std::string_view payload) {
  const int size = static_cast<int>(payload.size());
  switch (which % 5) {
    case 0: {
      v1::PolicyPlan plan;
      if (!plan.ParseFromArray(payload.data(), size)) return;
      (void)ctl::FormatPlan(plan);
      (void)ctl::FormatTransitions(plan);
      (void)ctl::JsonText(ctl::PlanJson(plan));
      break;
    }
    case 1: {
      v1::ListPolicyRevisionsResponse r;
      if (!r.ParseFromArray(payload.data(), size)) return;
      (void)ctl::FormatHistory(r);
      for (const v1::PolicyRevision& rev : r.revisions()) {
        (void)ctl::RevisionHeader(rev);
        (void)ctl::JsonText(ctl::RevisionJson(rev));
      }
      break;
    }
    case 2: {
      v1::TailAuditResponse r;
      if (!r.ParseFromArray(payload.data(), size)) return;
      for (const v1::AuditRecord& a : r.records()) (void)ctl::JsonText(ctl::AuditJson(a));
      break;
    }
    case 3: {
      v1::ListTokensResponse r;
      if (!r.ParseFromArray(payload.data(), size)) return;
      for (const v1::AdminToken& t : r.tokens()) (void)ctl::JsonText(ctl::TokenJson(t));
      break;
    }
    case 4: {
      v1::AdminListConversationsResponse r;
      if (!r.ParseFromArray(payload.data(), size)) return;
      for (const v1::ConversationSummary& c : r.conversations()) {
        (void)ctl::JsonText(ctl::ConversationJson(c));
        (void)ctl::DescribeState(c.security());
        (void)ctl::JsonText(ctl::StateJson(c.security()));
      }
      break;
    }
  }
}

void WriteSeeds(const std::string& dir) {
  using parley::fuzz::WriteSeed;
  WriteSeed(dir, "words-revision", 2, "r12-ABCdef01");
  WriteSeed(dir, "words-mode", 2, "Opt-In");
  WriteSeed(dir, "words-role", 2, "lawful-access");
  WriteSeed(dir, "words-json", 2, "{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\"}");
  WriteSeed(dir, "words-token", 2, "  pt_0123456789abcdef\n");
  WriteSeed(dir, "words-control", 2, "a\x1b[31mred\x7f\xc2\x9b\tz\xff");
  v1::PolicyPlan plan;
  plan.set_conversations(10);
  plan.set_unchanged(6);
  auto* t = plan.add_transitions();
  t->set_from_mode(v1::SECURITY_MODE_OPT_IN);
  t->set_to_mode(v1::SECURITY_MODE_E2EE);
  t->set_count(3);
  t->add_sample_conversation_ids("c_1");
  auto* d = plan.add_downgrades();
  d->set_effective_at_ms(1767225600000);
  d->set_count(1);
  auto* r = plan.add_rules();
  r->set_rule_id("direct-opt-in");
  r->set_count(4);
  WriteSeed(dir, "answer-plan", 3 + 8 * 0, plan.SerializeAsString());
  v1::ListPolicyRevisionsResponse revs;
  auto* rev = revs.add_revisions();
  rev->set_number(2);
  rev->set_revision_id("r2-1a2b3c4d");
  rev->set_author("operator");
  rev->set_comment("tighten \x1b[2J");
  rev->set_current(true);
  WriteSeed(dir, "answer-history", 3 + 8 * 1, revs.SerializeAsString());
  v1::TailAuditResponse audit;
  auto* a = audit.add_records();
  a->set_seq(1);
  a->set_actor("parleyd");
  a->set_action("policy.apply");
  a->set_details_json("{\"revision\":\"r1-00000000\"}");
  a->set_time_ms(1767225600000);
  WriteSeed(dir, "answer-audit", 3 + 8 * 2, audit.SerializeAsString());
  v1::ListTokensResponse toks;
  toks.add_tokens()->set_token_id("t_1");
  WriteSeed(dir, "answer-tokens", 3 + 8 * 3, toks.SerializeAsString());
  v1::AdminListConversationsResponse convs;
  auto* c = convs.add_conversations();
  c->set_conversation_id("c_1");
  c->mutable_security()->set_mode(v1::SECURITY_MODE_E2EE);
  c->mutable_security()->set_epoch(3);
  c->mutable_security()->mutable_pending()->set_new_mode(v1::SECURITY_MODE_TRANSPORT);
  WriteSeed(dir, "answer-conversations", 3 + 8 * 4, convs.SerializeAsString());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  parley::fuzz::WriteSeedsIfAsked(WriteSeeds);
  // Invalid UTF-8 in string fields is logged by protobuf: expected here.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 16 * 1024) return -1;
  const uint8_t selector = data[0];
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (selector % 4) {
    case 0:
      PolicyFile(payload);
      break;
    case 1:
      Diff(payload, selector >> 2);
      break;
    case 2:
      Words(payload);
      break;
    case 3:
      ServerAnswer(selector >> 3, payload);
      break;
  }
  return 0;
}
