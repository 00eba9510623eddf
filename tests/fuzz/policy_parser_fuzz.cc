// libFuzzer target: the policy document parser and the decision engine.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// The input is a policy document (YAML). When it parses, it is decided for a
// few fixed fact sets (a new direct chat, an existing E2EE group with pending
// requests, a business chat with a minor, ...) and for fact sets derived
// from the input bytes themselves, and every decision is rendered with
// DecisionToJson and Explain. Only crashes and sanitizer reports matter; the
// harness also checks two documented invariants (a decision names a rule and
// carries the revision given to ParsePolicy).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.h"

namespace {

using namespace parley::policy;  // NOLINT

constexpr int64_t kNow = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "policy_parser_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

void DecideAndRender(const Policy& p, const Facts& f) {
  const Decision d = Decide(p, f);
  Check(!d.rule_id.empty(), "a decision names its rule");
  Check(d.policy_revision == p.revision(), "a decision carries the policy revision");
  const std::string json = DecisionToJson(d);
  const std::string text = Explain(d);
  Check(!json.empty() && json.front() == '{', "DecisionToJson returns an object");
  (void)text;
}

ParticipantFacts Participant(AccountKind k, AgeBand a, std::string region, std::string org) {
  ParticipantFacts p;
  p.account_kind = k;
  p.age_band = a;
  p.region_code = std::move(region);
  p.organization = std::move(org);
  return p;
}

std::vector<Facts> FixedFacts() {
  std::vector<Facts> out;
  {  // a new direct chat between two adults, mutual contacts
    Facts f;
    f.kind = ConversationKind::kDirect;
    f.participants = {Participant(AccountKind::kPersonal, AgeBand::kAdult, "DE", ""),
                      Participant(AccountKind::kPersonal, AgeBand::kAdult, "FR", "")};
    f.mutual_contacts = true;
    f.now_ms = kNow;
    f.created_at_ms = kNow;
    out.push_back(f);
  }
  {  // an existing E2EE group with a pending disable request
    Facts f;
    f.kind = ConversationKind::kGroup;
    f.member_count = 40;
    f.participants = {Participant(AccountKind::kCreator, AgeBand::kUnknown, "US", ""),
                      Participant(AccountKind::kPersonal, AgeBand::kMinor, "", "")};
    f.current = CurrentSecurity{SecurityMode::kE2ee, 7, true, true};
    f.requests.disable_e2ee = 1;
    f.now_ms = kNow;
    f.created_at_ms = kNow - 86'400'000LL * 400;
    f.policy_applied_at_ms = kNow - 86'400'000LL * 45;
    out.push_back(f);
  }
  {  // a business support chat with a minor, currently transport
    Facts f;
    f.kind = ConversationKind::kBusinessSupport;
    f.participants = {Participant(AccountKind::kBusiness, AgeBand::kAdult, "GB", "Acme Support"),
                      Participant(AccountKind::kPersonal, AgeBand::kMinor, "GB", "")};
    f.current = CurrentSecurity{SecurityMode::kTransport, 2, false, false};
    f.requests.enable_e2ee = 1;
    f.now_ms = kNow;
    f.created_at_ms = kNow - 1000;
    f.policy_applied_at_ms = kNow;
    out.push_back(f);
  }
  {  // a broadcast channel of bots, opt-in, enable requested by everyone
    Facts f;
    f.kind = ConversationKind::kBroadcast;
    f.participants = {Participant(AccountKind::kBot, AgeBand::kUnspecified, "BR", "x"),
                      Participant(AccountKind::kBot, AgeBand::kAdult, "BR", "x")};
    f.current = CurrentSecurity{SecurityMode::kOptIn, 1, false, false};
    f.requests.enable_e2ee = 2;
    f.now_ms = kNow;
    out.push_back(f);
  }
  return out;
}

// Facts drawn from the input bytes (consumed from the end of the input, so
// mostly from the document's last bytes).
Facts DerivedFacts(FuzzedDataProvider& fdp) {
  Facts f;
  f.kind = static_cast<ConversationKind>(fdp.ConsumeIntegralInRange<int>(0, 5));
  f.member_count = fdp.ConsumeBool() ? 0 : fdp.ConsumeIntegral<uint32_t>();
  const int n = fdp.ConsumeIntegralInRange<int>(0, 4);
  static const char* const kRegions[] = {"", "DE", "US", "GB", "BR", "zz"};
  static const char* const kOrgs[] = {"", "Acme Support", "{organization}", "x"};
  for (int i = 0; i < n; ++i) {
    f.participants.push_back(Participant(
        static_cast<AccountKind>(fdp.ConsumeIntegralInRange<int>(0, 5)),
        static_cast<AgeBand>(fdp.ConsumeIntegralInRange<int>(0, 4)),
        kRegions[fdp.ConsumeIntegralInRange<int>(0, 5)], kOrgs[fdp.ConsumeIntegralInRange<int>(0, 3)]));
  }
  f.mutual_contacts = fdp.ConsumeBool();
  if (fdp.ConsumeBool()) {
    CurrentSecurity c;
    c.mode = static_cast<SecurityMode>(fdp.ConsumeIntegralInRange<int>(0, 4));
    c.epoch = fdp.ConsumeIntegral<uint64_t>();
    c.e2ee_ever_enabled = fdp.ConsumeBool();
    c.set_by_participants = fdp.ConsumeBool();
    f.current = c;
  }
  f.requests.enable_e2ee = fdp.ConsumeIntegralInRange<uint32_t>(0, 5);
  f.requests.disable_e2ee = fdp.ConsumeIntegralInRange<uint32_t>(0, 5);
  // Extreme times too: notice periods are added to these.
  f.now_ms = fdp.ConsumeBool() ? kNow : fdp.ConsumeIntegral<int64_t>();
  f.created_at_ms = fdp.ConsumeIntegral<int64_t>();
  if (fdp.ConsumeBool()) f.policy_applied_at_ms = fdp.ConsumeIntegral<int64_t>();
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return -1;  // policy documents are small
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Policy> p = ParsePolicy(text, "fuzz.yaml", "r");
  if (!p.ok()) {
    Check(!p.status().message().empty(), "a parse error has a message");
    return 0;
  }
  Check(p->revision() == "r", "revision kept");
  Check(!p->rule_ids().empty() && p->rule_ids().back() == "default", "last rule is default");
  (void)p->name();

  static const std::vector<Facts> fixed = FixedFacts();
  for (const Facts& f : fixed) DecideAndRender(*p, f);
  FuzzedDataProvider fdp(data, size);
  for (int i = 0; i < 4; ++i) DecideAndRender(*p, DerivedFacts(fdp));
  // A copy shares the compiled policy; decisions through it must work after
  // the original is gone.
  Policy copy = *p;
  p = absl::InternalError("dropped");
  DecideAndRender(copy, fixed[1]);
  return 0;
}
