// SPDX-License-Identifier: GPL-3.0-or-later
//
// Helpers shared by the policy tests: a Facts builder and preset loading.
#ifndef PARLEY_POLICY_POLICY_TEST_UTIL_H_
#define PARLEY_POLICY_POLICY_TEST_UTIL_H_

#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "policy/policy.h"

namespace parley::policy::testing {

inline constexpr int64_t kDayMs = 86'400'000;

// Fluent builder for Facts.
class FactsBuilder {
 public:
  explicit FactsBuilder(ConversationKind kind) { f_.kind = kind; }

  FactsBuilder& Add(AccountKind kind, AgeBand age, std::string org = "",
                    std::string region = "") {
    f_.participants.push_back(
        ParticipantFacts{kind, age, std::move(region), std::move(org)});
    return *this;
  }
  // `n` personal adults.
  FactsBuilder& Adults(int n) {
    for (int i = 0; i < n; ++i) Add(AccountKind::kPersonal, AgeBand::kAdult);
    return *this;
  }
  FactsBuilder& Members(uint32_t n) {
    f_.member_count = n;
    return *this;
  }
  FactsBuilder& Contacts(bool mutual = true) {
    f_.mutual_contacts = mutual;
    return *this;
  }
  FactsBuilder& State(SecurityMode mode, bool by_participants = false,
                      bool ever_e2ee = false) {
    CurrentSecurity s;
    s.mode = mode;
    s.epoch = 1;
    s.e2ee_ever_enabled = ever_e2ee || mode == SecurityMode::kE2ee;
    s.set_by_participants = by_participants;
    f_.current = s;
    return *this;
  }
  FactsBuilder& Requests(uint32_t enable, uint32_t disable) {
    f_.requests.enable_e2ee = enable;
    f_.requests.disable_e2ee = disable;
    return *this;
  }
  FactsBuilder& Now(int64_t now_ms) {
    f_.now_ms = now_ms;
    return *this;
  }
  FactsBuilder& Applied(int64_t at_ms) {
    f_.policy_applied_at_ms = at_ms;
    return *this;
  }
  FactsBuilder& Created(int64_t at_ms) {
    f_.created_at_ms = at_ms;
    return *this;
  }
  Facts Build() const { return f_; }
  operator Facts() const { return f_; }  // NOLINT: builder convenience

 private:
  Facts f_;
};

inline FactsBuilder Direct() { return FactsBuilder(ConversationKind::kDirect); }
inline FactsBuilder Group() { return FactsBuilder(ConversationKind::kGroup); }
inline FactsBuilder Broadcast() {
  return FactsBuilder(ConversationKind::kBroadcast);
}
inline FactsBuilder Support() {
  return FactsBuilder(ConversationKind::kBusinessSupport);
}

inline std::string PresetPath(const std::string& name) {
  return std::string(PARLEY_PRESETS_DIR) + "/" + name + ".yaml";
}

// Loads a preset; fails the current test on error.
inline Policy LoadPreset(const std::string& name) {
  absl::StatusOr<Policy> p = LoadPolicyFile(PresetPath(name), "rev-" + name);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) std::abort();
  return *std::move(p);
}

// Parses an inline document; fails the current test on error.
inline Policy MustParse(std::string_view yaml) {
  absl::StatusOr<Policy> p = ParsePolicy(yaml, "inline.yaml", "rev-inline");
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) std::abort();
  return *std::move(p);
}

}  // namespace parley::policy::testing

#endif  // PARLEY_POLICY_POLICY_TEST_UTIL_H_
