// SPDX-License-Identifier: GPL-3.0-or-later
//
// Decision cost per conversation for each preset (goal: < 1 us/decision).
// Facts are built once; the loop measures Decide() only (plus the Decision's
// notice string).

#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "policy/policy.h"

namespace parley::policy {
namespace {

Policy Load(const std::string& preset) {
  absl::StatusOr<Policy> p = LoadPolicyFile(
      std::string(PARLEY_PRESETS_DIR) + "/" + preset + ".yaml", preset);
  if (!p.ok()) {
    fprintf(stderr, "%s\n", std::string(p.status().message()).c_str());
    std::abort();
  }
  return *std::move(p);
}

ParticipantFacts P(AccountKind k, AgeBand a, std::string org = "") {
  return ParticipantFacts{k, a, "DE", std::move(org)};
}

// A typical mix: direct chats, a group, a business-support chat, a
// minor/adult chat and an existing E2EE chat under a downgrade.
std::vector<Facts> Workload() {
  std::vector<Facts> out;
  Facts direct;
  direct.kind = ConversationKind::kDirect;
  direct.participants = {P(AccountKind::kPersonal, AgeBand::kAdult),
                         P(AccountKind::kPersonal, AgeBand::kAdult)};
  direct.now_ms = 1'778'198'400'000;
  out.push_back(direct);

  Facts group = direct;
  group.kind = ConversationKind::kGroup;
  for (int i = 0; i < 6; ++i) {
    group.participants.push_back(P(AccountKind::kPersonal, AgeBand::kAdult));
  }
  group.current = CurrentSecurity{SecurityMode::kE2ee, 3, true, false};
  out.push_back(group);

  Facts support = direct;
  support.kind = ConversationKind::kBusinessSupport;
  support.participants[1] =
      P(AccountKind::kBusiness, AgeBand::kAdult, "Acme Cloud");
  out.push_back(support);

  Facts minor = direct;
  minor.participants[0].age_band = AgeBand::kMinor;
  minor.current = CurrentSecurity{SecurityMode::kOptIn, 1, false, false};
  minor.requests.enable_e2ee = 1;
  out.push_back(minor);

  Facts downgrade = direct;
  downgrade.current = CurrentSecurity{SecurityMode::kE2ee, 7, true, true};
  downgrade.policy_applied_at_ms = direct.now_ms - 5 * 86'400'000LL;
  out.push_back(downgrade);
  return out;
}

void BM_Decide(benchmark::State& state, const std::string& preset,
               int only) {
  const Policy policy = Load(preset);
  std::vector<Facts> facts = Workload();
  if (only >= 0) facts = {facts[only]};
  size_t i = 0;
  for (auto _ : state) {
    Decision d = Decide(policy, facts[i]);
    benchmark::DoNotOptimize(d);
    if (++i == facts.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_DecisionToJson(benchmark::State& state) {
  const Policy policy = Load("instagram-2026");
  const Decision d = Decide(policy, Workload()[4]);
  for (auto _ : state) benchmark::DoNotOptimize(DecisionToJson(d));
}

void Register() {
  const char* presets[] = {"signal",         "whatsapp", "messenger-2016",
                           "telegram",       "instagram-2026", "tiktok",
                           "protect-minors"};
  const char* cases[] = {"direct", "group8", "business", "minor_optin",
                         "e2ee_downgrade"};
  for (const char* p : presets) {
    benchmark::RegisterBenchmark((std::string("Decide/") + p + "/mix").c_str(),
                                 BM_Decide, std::string(p), -1);
    for (int c = 0; c < 5; ++c) {
      benchmark::RegisterBenchmark(
          (std::string("Decide/") + p + "/" + cases[c]).c_str(), BM_Decide,
          std::string(p), c);
    }
  }
  benchmark::RegisterBenchmark("DecisionToJson", BM_DecisionToJson);
}

}  // namespace
}  // namespace parley::policy

int main(int argc, char** argv) {
  parley::policy::Register();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
