// SPDX-License-Identifier: GPL-3.0-or-later
//
// Table-driven tests for every preset in policy/presets, and randomized
// property tests (fixed seed) over all presets.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/policy.h"
#include "policy/policy_test_util.h"

namespace parley::policy {
namespace {

using ::parley::policy::testing::Broadcast;
using ::parley::policy::testing::Direct;
using ::parley::policy::testing::FactsBuilder;
using ::parley::policy::testing::Group;
using ::parley::policy::testing::kDayMs;
using ::parley::policy::testing::LoadPreset;
using ::parley::policy::testing::Support;
using ::testing::HasSubstr;

constexpr auto kE2ee = SecurityMode::kE2ee;
constexpr auto kOptIn = SecurityMode::kOptIn;
constexpr auto kTransport = SecurityMode::kTransport;
constexpr auto kPersonal = AccountKind::kPersonal;
constexpr auto kBusiness = AccountKind::kBusiness;
constexpr auto kCreator = AccountKind::kCreator;
constexpr auto kBot = AccountKind::kBot;
constexpr auto kMinor = AgeBand::kMinor;
constexpr auto kAdult = AgeBand::kAdult;
constexpr auto kUnknownAge = AgeBand::kUnknown;

const std::vector<std::string> kPresets = {
    "signal",         "whatsapp", "messenger-2016", "telegram",
    "instagram-2026", "tiktok",   "protect-minors"};

struct Case {
  std::string name;
  Facts facts;
  SecurityMode mode;
  std::string rule;
  EnableConsent enable;
  DisableConsent disable;
  bool locked;
  Adjustment adjustment = Adjustment::kNone;
  std::string notice_contains = "";
};

void RunCases(const std::string& preset, const std::vector<Case>& cases) {
  const Policy policy = LoadPreset(preset);
  for (const Case& c : cases) {
    SCOPED_TRACE(preset + "/" + c.name);
    const Decision d = Decide(policy, c.facts);
    EXPECT_EQ(d.mode, c.mode) << Explain(d);
    EXPECT_EQ(d.rule_id, c.rule);
    EXPECT_EQ(d.enable_e2ee, c.enable);
    EXPECT_EQ(d.disable_e2ee, c.disable);
    EXPECT_EQ(d.locked, c.locked);
    EXPECT_EQ(d.adjustment, c.adjustment) << Explain(d);
    EXPECT_EQ(d.policy_revision, "rev-" + preset);
    EXPECT_FALSE(d.reason.empty());
    EXPECT_EQ(d.staff_access.applies, d.mode != kE2ee);
    if (!c.notice_contains.empty()) {
      EXPECT_THAT(d.notice, HasSubstr(c.notice_contains));
    }
  }
}

constexpr auto kNobody = EnableConsent::kNobody;
constexpr auto kAny = EnableConsent::kAnyParticipant;
constexpr auto kNever = DisableConsent::kNever;

TEST(policy_preset, Signal) {
  RunCases(
      "signal",
      {
          {"new direct", Direct().Adults(2), kE2ee, "default", kNobody, kNever,
           true},
          {"group of 40", Group().Adults(40), kE2ee, "default", kNobody,
           kNever, true},
          {"provider business chat",
           Support().Adults(1).Add(kBusiness, kAdult, "Acme Cloud"), kE2ee,
           "default", kNobody, kNever, true},
          {"existing transport chat is upgraded",
           Direct().Adults(2).State(kTransport), kE2ee, "default", kNobody,
           kNever, true},
          {"everyone asks to disable: locked",
           Group().Adults(3).State(kE2ee).Requests(0, 3), kE2ee, "default",
           kNobody, kNever, true},
      });
  const Decision d =
      Decide(LoadPreset("signal"), Direct().Adults(2).State(kTransport));
  EXPECT_TRUE(d.changes_mode);
  EXPECT_EQ(d.notice, "");
}

TEST(policy_preset, WhatsApp) {
  RunCases(
      "whatsapp",
      {
          {"personal direct", Direct().Adults(2), kE2ee, "default", kNobody,
           kNever, true},
          {"group", Group().Adults(12), kE2ee, "default", kNobody, kNever,
           true},
          {"business via provider",
           Support().Adults(1).Add(kBusiness, kAdult, "Acme Cloud"),
           kTransport, "business-provider", kNobody, kNever, true,
           Adjustment::kNone, "read by the Acme Cloud provider"},
          {"business without provider",
           Support().Adults(1).Add(kBusiness, kAdult), kE2ee, "default",
           kNobody, kNever, true},
          {"business in a group chat",
           Group().Adults(3).Add(kBusiness, kAdult, "Acme Cloud"), kE2ee,
           "default", kNobody, kNever, true},
          {"existing E2EE business chat moves to a provider: kept",
           Support().Adults(1).Add(kBusiness, kAdult, "Acme Cloud").State(
               kE2ee),
           kE2ee, "business-provider", kNobody, kNever, true,
           Adjustment::kExistingE2eeKept},
      });
}

TEST(policy_preset, Messenger2016) {
  const auto kDisableNever = kNever;
  RunCases(
      "messenger-2016",
      {
          {"new direct is opt-in", Direct().Adults(2), kOptIn,
           "direct-opt-in", kAny, kDisableNever, false, Adjustment::kNone,
           "secret conversation"},
          {"one participant turns E2EE on",
           Direct().Adults(2).State(kOptIn).Requests(1, 0), kE2ee,
           "direct-opt-in", kAny, kDisableNever, false,
           Adjustment::kEnabledByParticipants},
          {"secret conversation stays E2EE",
           Direct().Adults(2).State(kE2ee, /*by_participants=*/true), kE2ee,
           "direct-opt-in", kAny, kDisableNever, false,
           Adjustment::kParticipantChoiceKept},
          {"cannot be turned off",
           Direct().Adults(2).State(kE2ee, true).Requests(0, 2), kE2ee,
           "direct-opt-in", kAny, kDisableNever, false,
           Adjustment::kParticipantChoiceKept},
          {"group is transport", Group().Adults(5), kTransport, "default",
           kNobody, kDisableNever, false},
          {"group cannot opt in", Group().Adults(5).Requests(5, 0),
           kTransport, "default", kNobody, kDisableNever, false},
      });
}

TEST(policy_preset, Telegram) {
  RunCases(
      "telegram",
      {
          {"direct cloud chat", Direct().Adults(2), kOptIn,
           "direct-secret-chat", kAny, kNever, false, Adjustment::kNone,
           "Cloud chat"},
          {"secret chat requested", Direct().Adults(2).Requests(1, 0), kE2ee,
           "direct-secret-chat", kAny, kNever, false,
           Adjustment::kEnabledByParticipants},
          {"secret chat stays secret",
           Direct().Adults(2).State(kE2ee, true).Requests(0, 1), kE2ee,
           "direct-secret-chat", kAny, kNever, false,
           Adjustment::kParticipantChoiceKept},
          {"group", Group().Adults(200), kTransport, "default", kNobody,
           kNever, true},
          {"group cannot opt in", Group().Adults(3).Requests(3, 0),
           kTransport, "default", kNobody, kNever, true},
          {"channel", Broadcast().Adults(1).Members(100000), kTransport,
           "default", kNobody, kNever, true},
      });
  const Decision d = Decide(LoadPreset("telegram"), Group().Adults(2));
  EXPECT_EQ(d.staff_access.retention_days, kRetainUntilDeleted);
  EXPECT_TRUE(d.staff_access.lawful_access);
}

TEST(policy_preset, Instagram2026) {
  constexpr int64_t kApplied = 1778198400000;  // 2026-05-08T00:00:00Z
  RunCases(
      "instagram-2026",
      {
          {"new direct", Direct().Adults(2).Now(kApplied).Applied(kApplied),
           kTransport, "default", kNobody, kNever, true},
          {"existing opt-in chat", Direct().Adults(2).State(kOptIn),
           kTransport, "default", kNobody, kNever, true},
          {"existing E2EE during notice",
           Direct().Adults(2).State(kE2ee, true).Applied(kApplied).Now(
               kApplied + 3 * kDayMs),
           kE2ee, "default", kNobody, kNever, true,
           Adjustment::kDowngradePending, "Download your chats"},
          {"existing E2EE after notice",
           Direct().Adults(2).State(kE2ee, true).Applied(kApplied).Now(
               kApplied + 30 * kDayMs),
           kTransport, "default", kNobody, kNever, true,
           Adjustment::kDowngraded, "not end-to-end encrypted"},
          {"group E2EE after notice",
           Group().Adults(4).State(kE2ee).Applied(kApplied).Now(
               kApplied + 45 * kDayMs),
           kTransport, "default", kNobody, kNever, true,
           Adjustment::kDowngraded},
      });
  const Decision d = Decide(LoadPreset("instagram-2026"),
                            Direct().Adults(2).State(kE2ee).Applied(kApplied)
                                .Now(kApplied + kDayMs));
  ASSERT_TRUE(d.pending.has_value());
  EXPECT_EQ(d.pending->new_mode, kTransport);
  EXPECT_EQ(d.pending->effective_at_ms, kApplied + 30 * kDayMs);
  EXPECT_THAT(d.notice, HasSubstr("ends on 2026-06-07."));
  EXPECT_FALSE(d.staff_access.applies);
}

TEST(policy_preset, TikTok) {
  RunCases("tiktok",
           {
               {"direct", Direct().Adults(2), kTransport, "default", kNobody,
                kNever, true},
               {"group with creator",
                Group().Adults(3).Add(kCreator, kAdult), kTransport, "default",
                kNobody, kNever, true},
               {"cannot opt in", Direct().Adults(2).Requests(2, 0),
                kTransport, "default", kNobody, kNever, true},
               {"existing E2EE kept by default (rule 3)",
                Direct().Adults(2).State(kE2ee), kE2ee, "default", kNobody,
                kNever, true, Adjustment::kExistingE2eeKept},
           });
  const Decision d = Decide(LoadPreset("tiktok"), Direct().Adults(2));
  EXPECT_EQ(d.staff_access.moderation, Moderation::kFullReview);
  EXPECT_TRUE(d.staff_access.automated_scanning);
  EXPECT_TRUE(d.staff_access.lawful_access);
  EXPECT_EQ(d.staff_access.notify_participants, AccessNotification::kNever);
}

TEST(policy_preset, ProtectMinors) {
  RunCases(
      "protect-minors",
      {
          {"two minors", Direct().Add(kPersonal, kMinor).Add(kPersonal, kMinor),
           kE2ee, "default", kNobody, kNever, true},
          {"minor and adult stranger",
           Direct().Add(kPersonal, kMinor).Add(kPersonal, kAdult),
           kTransport, "minor-adult-stranger", kNobody, kNever, true,
           Adjustment::kNone, "young person"},
          {"minor and adult contact",
           Direct().Add(kPersonal, kMinor).Add(kPersonal, kAdult).Contacts(),
           kE2ee, "default", kNobody, kNever, true},
          {"minor and unknown-age stranger",
           Direct().Add(kPersonal, kMinor).Add(kBot, kUnknownAge), kTransport,
           "minor-adult-stranger", kNobody, kNever, true},
          {"minor and teacher of the same school",
           Direct()
               .Add(kPersonal, kMinor, "school.example")
               .Add(kPersonal, kAdult, "school.example"),
           kTransport, "school", kNobody, kNever, true, Adjustment::kNone,
           "read by school.example"},
          {"two adult strangers", Direct().Adults(2), kE2ee, "default",
           kNobody, kNever, true},
          {"group of minors with one adult stranger",
           Group()
               .Add(kPersonal, kMinor)
               .Add(kPersonal, kMinor)
               .Add(kPersonal, kAdult),
           kTransport, "minor-adult-stranger", kNobody, kNever, true},
          {"existing E2EE chat keeps E2EE",
           Direct().Add(kPersonal, kMinor).Add(kPersonal, kAdult).State(kE2ee),
           kE2ee, "minor-adult-stranger", kNobody, kNever, true,
           Adjustment::kExistingE2eeKept},
      });
  const Decision d =
      Decide(LoadPreset("protect-minors"),
             Direct().Add(kPersonal, kMinor).Add(kPersonal, kAdult));
  EXPECT_EQ(d.staff_access.notify_participants,
            AccessNotification::kImmediately);
  EXPECT_TRUE(d.staff_access.automated_scanning);
}

TEST(policy_preset, AllPresetsParseAndEndWithDefault) {
  for (const std::string& name : kPresets) {
    SCOPED_TRACE(name);
    const Policy p = LoadPreset(name);
    EXPECT_EQ(p.name(), name);
    ASSERT_FALSE(p.rule_ids().empty());
    EXPECT_EQ(p.rule_ids().back(), "default");
  }
}

// ---------------------------------------------------------------------------
// Randomized properties (fixed seed, bounded count).
// ---------------------------------------------------------------------------

Facts RandomFacts(std::mt19937_64& rng) {
  auto pick = [&](int n) {
    return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(rng));
  };
  static const char* const kRegions[] = {"", "DE", "US", "FR", "x"};
  static const char* const kOrgs[] = {"", "", "", "school.example",
                                      "Acme Cloud"};
  Facts f;
  f.kind = static_cast<ConversationKind>(pick(5));  // incl. unspecified
  const int n = f.kind == ConversationKind::kDirect ? 2 : 1 + pick(12);
  for (int i = 0; i < n; ++i) {
    ParticipantFacts p;
    p.account_kind = static_cast<AccountKind>(pick(5));
    p.age_band = static_cast<AgeBand>(pick(4));
    p.region_code = kRegions[pick(5)];
    p.organization = kOrgs[pick(5)];
    f.participants.push_back(p);
  }
  f.member_count = pick(4) == 0 ? 0 : static_cast<uint32_t>(n + pick(3));
  f.mutual_contacts = pick(2) == 1;
  if (pick(3) != 0) {
    CurrentSecurity s;
    s.mode = static_cast<SecurityMode>(pick(4));
    s.epoch = 1 + pick(10);
    s.e2ee_ever_enabled = s.mode == SecurityMode::kE2ee || pick(2) == 1;
    s.set_by_participants = pick(2) == 1;
    f.current = s;
  }
  f.requests.enable_e2ee = pick(3) == 0 ? static_cast<uint32_t>(pick(n + 1)) : 0;
  f.requests.disable_e2ee =
      pick(3) == 0 ? static_cast<uint32_t>(pick(n + 1)) : 0;
  const int64_t base = 1'700'000'000'000;
  f.now_ms = base + pick(90) * kDayMs + pick(1000);
  f.created_at_ms = base - pick(1000) * kDayMs;
  if (pick(4) != 0) f.policy_applied_at_ms = base + pick(60) * kDayMs;
  return f;
}

TEST(policy_random, EveryDecisionNamesARuleAndIsDeterministic) {
  std::mt19937_64 rng(20260508);
  constexpr int kPerPreset = 3000;
  for (const std::string& name : kPresets) {
    SCOPED_TRACE(name);
    const Policy policy = LoadPreset(name);
    const Policy copy = policy;  // NOLINT: copies share the representation
    const std::vector<std::string_view> ids = policy.rule_ids();
    for (int i = 0; i < kPerPreset; ++i) {
      const Facts f = RandomFacts(rng);
      const Decision a = Decide(policy, f);
      const Decision b = Decide(copy, f);
      ASSERT_FALSE(a.rule_id.empty());
      ASSERT_NE(std::find(ids.begin(), ids.end(), a.rule_id), ids.end());
      ASSERT_NE(a.mode, SecurityMode::kUnspecified);
      ASSERT_EQ(DecisionToJson(a), DecisionToJson(b));
      ASSERT_EQ(Explain(a), Explain(b));
      ASSERT_EQ(a.policy_revision, "rev-" + name);
      ASSERT_EQ(a.staff_access.applies, a.mode != SecurityMode::kE2ee);
      ASSERT_EQ(a.pending.has_value(),
                a.adjustment == Adjustment::kDowngradePending);
      if (a.pending) {
        ASSERT_GT(a.pending->effective_at_ms, f.now_ms);
      }
      ASSERT_EQ(a.changes_mode,
                f.current.has_value() && f.current->mode != a.mode);
      // No silent weakening: only instagram-2026 downgrades existing E2EE,
      // and no preset lets participants turn E2EE off.
      if (f.current && f.current->mode == SecurityMode::kE2ee &&
          name != "instagram-2026") {
        ASSERT_EQ(a.mode, SecurityMode::kE2ee) << DecisionToJson(a);
      }
      // Locked decisions ignore requests: same decision without them.
      if (a.locked) {
        Facts no_requests = f;
        no_requests.requests = {};
        ASSERT_EQ(DecisionToJson(Decide(policy, no_requests)),
                  DecisionToJson(a));
      }
    }
  }
}

TEST(policy_random, DecisionDoesNotDependOnParticipantOrder) {
  std::mt19937_64 rng(7);
  for (const std::string& name : kPresets) {
    SCOPED_TRACE(name);
    const Policy policy = LoadPreset(name);
    for (int i = 0; i < 500; ++i) {
      Facts f = RandomFacts(rng);
      const Decision a = Decide(policy, f);
      std::shuffle(f.participants.begin(), f.participants.end(), rng);
      const Decision b = Decide(policy, f);
      ASSERT_EQ(a.mode, b.mode);
      ASSERT_EQ(a.rule_id, b.rule_id);
      // Notices naming an organisation may pick another participant's
      // organisation only when several differ; the mode never changes.
    }
  }
}

}  // namespace
}  // namespace parley::policy
