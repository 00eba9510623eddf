// SPDX-License-Identifier: GPL-3.0-or-later
//
// Decide() semantics: conditions, transitions, existing E2EE (keep vs
// downgrade and its timing), participants' choices, notices, JSON, Explain.

#include <string>

#include "policy/policy_internal.h"
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
using ::parley::policy::testing::MustParse;
using ::parley::policy::testing::Support;
using ::testing::HasSubstr;

constexpr auto kE2ee = SecurityMode::kE2ee;
constexpr auto kOptIn = SecurityMode::kOptIn;
constexpr auto kTransport = SecurityMode::kTransport;
constexpr auto kPersonal = AccountKind::kPersonal;
constexpr auto kBusiness = AccountKind::kBusiness;
constexpr auto kBot = AccountKind::kBot;
constexpr auto kMinor = AgeBand::kMinor;
constexpr auto kAdult = AgeBand::kAdult;

constexpr int64_t kApplied = 1'700'000'000'000;

std::string TransportPolicy(std::string_view existing) {
  return internal::Cat(R"yaml(version: 1
rules:
  - id: default
    mode: transport
    transport: {retention_days: 30, moderation: reports}
    reason: Transport only.
)yaml",
                      existing);
}

TEST(policy_decide, EnumValuesMirrorTheApi) {
  // Values of api/parley/v1/common.proto.
  EXPECT_EQ(static_cast<int>(SecurityMode::kE2ee), 1);
  EXPECT_EQ(static_cast<int>(SecurityMode::kOptIn), 2);
  EXPECT_EQ(static_cast<int>(SecurityMode::kTransport), 3);
  EXPECT_EQ(static_cast<int>(ConversationKind::kBusinessSupport), 4);
  EXPECT_EQ(static_cast<int>(AccountKind::kBot), 4);
  EXPECT_EQ(static_cast<int>(AgeBand::kUnknown), 1);
  EXPECT_EQ(static_cast<int>(AgeBand::kMinor), 2);
  EXPECT_EQ(static_cast<int>(AgeBand::kAdult), 3);
}

TEST(policy_downgrade, KeepIsTheDefault) {
  const Policy p = MustParse(TransportPolicy(""));
  const Decision d = Decide(p, Direct().Adults(2).State(kE2ee).Now(kApplied));
  EXPECT_EQ(d.mode, kE2ee);
  EXPECT_EQ(d.adjustment, Adjustment::kExistingE2eeKept);
  EXPECT_FALSE(d.pending.has_value());
  EXPECT_FALSE(d.changes_mode);
  EXPECT_THAT(d.adjustment_reason, HasSubstr("existing E2EE is kept"));
  // A new conversation gets the rule's mode.
  EXPECT_EQ(Decide(p, Direct().Adults(2)).mode, kTransport);
  // A transport conversation that was E2EE once is not E2EE now: transport.
  EXPECT_EQ(Decide(p, Direct().Adults(2).State(kOptIn, false, true)).mode,
            kTransport);
}

TEST(policy_downgrade, ExplicitKeep) {
  const Policy p = MustParse(TransportPolicy("    existing_e2ee: {action: keep}\n"));
  EXPECT_EQ(Decide(p, Group().Adults(3).State(kE2ee)).mode, kE2ee);
}

TEST(policy_downgrade, NoticeTiming) {
  const Policy p = MustParse(TransportPolicy(R"yaml(    existing_e2ee:
      action: downgrade
      notice_days: 10
)yaml"));
  const int64_t effective = kApplied + 10 * kDayMs;
  auto at = [&](int64_t now) {
    return Decide(p, Direct().Adults(2).State(kE2ee).Applied(kApplied).Now(now));
  };

  for (int64_t now : {kApplied, kApplied + 9 * kDayMs, effective - 1}) {
    SCOPED_TRACE(now);
    const Decision d = at(now);
    EXPECT_EQ(d.mode, kE2ee);
    EXPECT_EQ(d.adjustment, Adjustment::kDowngradePending);
    ASSERT_TRUE(d.pending.has_value());
    EXPECT_EQ(d.pending->new_mode, kTransport);
    EXPECT_EQ(d.pending->effective_at_ms, effective);
    EXPECT_FALSE(d.changes_mode);
    EXPECT_FALSE(d.staff_access.applies);
    // Default downgrade notice with the effective date (2023-11-24).
    EXPECT_EQ(d.notice,
              "End-to-end encryption for this chat ends on 2023-11-24. "
              "Download anything you want to keep before then.");
  }
  for (int64_t now : {effective, effective + 1, effective + 400 * kDayMs}) {
    SCOPED_TRACE(now);
    const Decision d = at(now);
    EXPECT_EQ(d.mode, kTransport);
    EXPECT_EQ(d.adjustment, Adjustment::kDowngraded);
    EXPECT_FALSE(d.pending.has_value());
    EXPECT_TRUE(d.changes_mode);
    EXPECT_TRUE(d.staff_access.applies);
    EXPECT_EQ(d.notice, "This chat is not end-to-end encrypted.");
  }
}

TEST(policy_downgrade, WithoutApplicationTimeNeverElapses) {
  const Policy p = MustParse(TransportPolicy(R"yaml(    existing_e2ee:
      action: downgrade
      notice_days: 10
)yaml"));
  const Decision d = Decide(p, Direct().Adults(2).State(kE2ee).Now(kApplied));
  EXPECT_EQ(d.mode, kE2ee);
  ASSERT_TRUE(d.pending.has_value());
  EXPECT_EQ(d.pending->effective_at_ms, kApplied + 10 * kDayMs);
}

TEST(policy_downgrade, ZeroNoticeDowngradesAtOnce) {
  const Policy p = MustParse(TransportPolicy(R"yaml(    existing_e2ee:
      action: downgrade
      notice_days: 0
)yaml"));
  const Decision d = Decide(
      p, Direct().Adults(2).State(kE2ee).Applied(kApplied).Now(kApplied));
  EXPECT_EQ(d.mode, kTransport);
  EXPECT_EQ(d.adjustment, Adjustment::kDowngraded);
}

TEST(policy_downgrade, ForcedTransportOverridesParticipantsChoice) {
  const Policy p = MustParse(TransportPolicy(R"yaml(    existing_e2ee:
      action: downgrade
      notice_days: 5
)yaml"));
  const Decision d =
      Decide(p, Direct().Adults(2).State(kE2ee, /*by_participants=*/true)
                    .Applied(kApplied).Now(kApplied + 6 * kDayMs));
  EXPECT_EQ(d.mode, kTransport);
}

constexpr std::string_view kOptInPolicy = R"yaml(version: 1
rules:
  - id: default
    mode: opt_in
    transitions: {enable: all}
    transport: {retention_days: 7, moderation: reports}
    existing_e2ee: {action: downgrade, notice_days: 3, notice: "Bye {organization} on {effective_date}"}
    reason: Opt-in.
)yaml";

TEST(policy_decide, OptInKeepsParticipantsE2eeChoice) {
  const Policy p = MustParse(kOptInPolicy);
  // Participants switched this conversation to E2EE: their choice.
  Decision d = Decide(p, Direct().Adults(2).State(kE2ee, true).Applied(kApplied)
                             .Now(kApplied + 100 * kDayMs));
  EXPECT_EQ(d.mode, kE2ee);
  EXPECT_EQ(d.adjustment, Adjustment::kParticipantChoiceKept);
  // E2EE set by an earlier policy: the rule's downgrade applies (to OPT_IN).
  d = Decide(p, Direct().Adults(2).State(kE2ee).Applied(kApplied).Now(kApplied));
  EXPECT_EQ(d.mode, kE2ee);
  ASSERT_TRUE(d.pending.has_value());
  EXPECT_EQ(d.pending->new_mode, kOptIn);
  EXPECT_EQ(d.notice, "Bye the business on 2023-11-17");
  d = Decide(p, Direct().Adults(2).State(kE2ee).Applied(kApplied)
                    .Now(kApplied + 3 * kDayMs));
  EXPECT_EQ(d.mode, kOptIn);
}

TEST(policy_decide, ConsentOfAllToEnable) {
  const Policy p = MustParse(kOptInPolicy);
  EXPECT_EQ(Decide(p, Group().Adults(3).State(kOptIn).Requests(2, 0)).mode,
            kOptIn);
  const Decision d = Decide(p, Group().Adults(3).State(kOptIn).Requests(3, 0));
  EXPECT_EQ(d.mode, kE2ee);
  EXPECT_EQ(d.adjustment, Adjustment::kEnabledByParticipants);
  EXPECT_TRUE(d.changes_mode);
  // member_count overrides the participant list's size.
  EXPECT_EQ(
      Decide(p, Group().Adults(3).Members(5).State(kOptIn).Requests(3, 0)).mode,
      kOptIn);
}

constexpr std::string_view kE2eeOffPolicy = R"yaml(version: 1
rules:
  - id: groups
    when: {kind: group}
    mode: e2ee
    transitions: {enable: any, disable: all}
    transport: {retention_days: 0, moderation: none}
    reason: Groups may agree to turn E2EE off.
  - id: default
    mode: e2ee
    transitions: {enable: nobody, disable: any}
    transport: {retention_days: 0, moderation: none}
    notice: "E2EE."
    reason: Anyone may turn E2EE off, for good.
)yaml";

TEST(policy_decide, ConsentToDisable) {
  const Policy p = MustParse(kE2eeOffPolicy);
  EXPECT_EQ(Decide(p, Group().Adults(3).State(kE2ee).Requests(0, 2)).mode,
            kE2ee);
  Decision d = Decide(p, Group().Adults(3).State(kE2ee).Requests(0, 3));
  EXPECT_EQ(d.mode, kOptIn);  // enable is allowed again: opt-in
  EXPECT_EQ(d.adjustment, Adjustment::kDisabledByParticipants);
  EXPECT_EQ(d.notice,
            "This chat is not end-to-end encrypted. End-to-end encryption can "
            "be turned on for this chat.");
  d = Decide(p, Direct().Adults(2).State(kE2ee).Requests(0, 1));
  EXPECT_EQ(d.mode, kTransport);  // enable: nobody -> transport
  EXPECT_EQ(d.notice, "This chat is not end-to-end encrypted.");
  d = Decide(p, Direct().Adults(2));
  EXPECT_EQ(d.mode, kE2ee);
  EXPECT_EQ(d.notice, "E2EE.");
}

TEST(policy_decide, ParticipantsTurnedE2eeOffIsRespected) {
  const Policy p = MustParse(kE2eeOffPolicy);
  // They turned it off earlier: stays off while the rule permits it.
  Decision d = Decide(p, Group().Adults(3).State(kOptIn, true, true));
  EXPECT_EQ(d.mode, kOptIn);
  EXPECT_EQ(d.adjustment, Adjustment::kParticipantChoiceKept);
  // ... and they can turn it on again.
  d = Decide(p, Group().Adults(3).State(kOptIn, true, true).Requests(1, 0));
  EXPECT_EQ(d.mode, kE2ee);
  // A transport conversation not chosen by participants is upgraded.
  d = Decide(p, Group().Adults(3).State(kTransport));
  EXPECT_EQ(d.mode, kE2ee);
  EXPECT_TRUE(d.changes_mode);
  // Under a rule that never allows turning off, upgraded as well.
  const Policy locked = MustParse(R"yaml(version: 1
rules:
  - id: default
    mode: e2ee
    locked: true
    reason: r
)yaml");
  d = Decide(locked, Group().Adults(3).State(kOptIn, true, true));
  EXPECT_EQ(d.mode, kE2ee);
  EXPECT_EQ(d.adjustment, Adjustment::kNone);
}

TEST(policy_decide, Conditions) {
  const Policy p = MustParse(R"yaml(version: 1
rules:
  - id: small-direct
    when: {kind: direct, member_count: {max: 2}, region: [DE, FR]}
    mode: e2ee
    reason: r
  - id: exact-kinds
    when: {participant_kinds: [personal, business]}
    mode: e2ee
    reason: r
  - id: org
    when:
      any:
        - organization: acme
        - all_participants: {region: US, has_organization: false}
    mode: e2ee
    reason: r
  - id: same-org
    when: {same_organization: true}
    mode: e2ee
    reason: r
  - id: not-adults
    when:
      not:
        all_participants: {age_band: adult}
    mode: e2ee
    reason: r
  - id: old-e2ee
    when: {current_mode: [e2ee, opt_in], e2ee_ever_enabled: true}
    mode: e2ee
    reason: r
  - id: early
    when: {created_at_ms: {max: 1000}, new_conversation: false}
    mode: e2ee
    reason: r
  - id: contacts
    when: {mutual_contacts: true}
    mode: e2ee
    reason: r
  - id: bots
    when: {any_participant: {account_kind: bot, age_band: [unknown, adult]}}
    mode: e2ee
    reason: r
  - id: default
    mode: e2ee
    reason: r
)yaml");
  auto rule = [&](const Facts& f) { return std::string(Decide(p, f).rule_id); };
  auto adult = [](std::string region, std::string org = "") {
    return ParticipantFacts{kPersonal, kAdult, std::move(region),
                            std::move(org)};
  };
  Facts f = Direct();
  f.participants = {adult("DE"), adult("US")};
  EXPECT_EQ(rule(f), "small-direct");
  f.member_count = 3;
  EXPECT_NE(rule(f), "small-direct");
  f = Group().Add(kPersonal, kAdult).Add(kBusiness, kAdult);
  EXPECT_EQ(rule(f), "exact-kinds");
  f = Group().Add(kPersonal, kAdult).Add(kBusiness, kAdult).Add(kBot, kAdult);
  EXPECT_NE(rule(f), "exact-kinds");
  f = Group();
  f.participants = {adult("GB", "acme"), adult("GB")};
  EXPECT_EQ(rule(f), "org");
  f.participants = {adult("US"), adult("US")};
  EXPECT_EQ(rule(f), "org");
  f.participants = {adult("US"), adult("US", "x")};
  EXPECT_EQ(rule(f), "default");
  f.participants = {adult("GB", "x"), adult("GB", "x")};
  EXPECT_EQ(rule(f), "same-org");
  f = Group().Add(kPersonal, kMinor).Add(kPersonal, kAdult);
  EXPECT_EQ(rule(f), "not-adults");
  // Unspecified age counts as unknown: not all adults.
  f = Group().Add(kPersonal, AgeBand::kUnspecified).Adults(1);
  EXPECT_EQ(rule(f), "not-adults");
  f = Group().Adults(2).State(kOptIn, false, true);
  EXPECT_EQ(rule(f), "old-e2ee");
  f = Group().Adults(2).State(kTransport).Created(999);
  EXPECT_EQ(rule(f), "early");
  f = Group().Adults(2).Created(999);  // new conversation
  EXPECT_EQ(rule(f), "default");
  f = Group().Adults(2).Contacts();
  EXPECT_EQ(rule(f), "contacts");
  f = Group().Adults(1).Add(kBot, kAdult);
  EXPECT_EQ(rule(f), "bots");
  // Unspecified account kind counts as personal.
  f = Group().Add(AccountKind::kUnspecified, kAdult).Add(kBusiness, kAdult);
  EXPECT_EQ(rule(f), "exact-kinds");
  // Unspecified conversation kind matches no kind list.
  f = FactsBuilder(ConversationKind::kUnspecified).Adults(2);
  EXPECT_EQ(rule(f), "default");
}

TEST(policy_decide, NoticePlaceholders) {
  const Policy p = MustParse(R"yaml(version: 1
rules:
  - id: default
    mode: transport
    transport: {retention_days: unlimited, moderation: full_review, notify_access: after_days, notify_after_days: 30}
    notice: "Read by {organization}."
    reason: r
)yaml");
  EXPECT_EQ(Decide(p, Support().Adults(1).Add(kPersonal, kAdult, "friend")
                          .Add(kBusiness, kAdult, "Hoster"))
                .notice,
            "Read by Hoster.");
  EXPECT_EQ(Decide(p, Support().Adults(1).Add(kPersonal, kAdult, "friend"))
                .notice,
            "Read by friend.");
  EXPECT_EQ(Decide(p, Support().Adults(2)).notice, "Read by the business.");
  const Decision d = Decide(p, Broadcast().Adults(1));
  EXPECT_EQ(d.staff_access.retention_days, kRetainUntilDeleted);
  EXPECT_EQ(d.staff_access.notify_participants, AccessNotification::kAfterDelay);
  EXPECT_EQ(d.staff_access.notify_after_days, 30);
}

TEST(policy_render, JsonAndExplain) {
  const Policy p = MustParse(TransportPolicy(R"yaml(    existing_e2ee:
      action: downgrade
      notice_days: 10
      notice: "Say \"bye\"\n{effective_date}"
)yaml"));
  const Decision d = Decide(
      p, Direct().Adults(2).State(kE2ee).Applied(kApplied).Now(kApplied));
  EXPECT_EQ(
      DecisionToJson(d),
      R"({"mode":"E2EE","rule_id":"default","policy_revision":"rev-inline",)"
      R"("reason":"Transport only.","adjustment":"downgrade_pending",)"
      R"("adjustment_reason":"the rule weakens this end-to-end encrypted )"
      R"(conversation after a notice period; it stays E2EE until the pending )"
      R"(change takes effect","changes_mode":false,"locked":false,)"
      R"("transitions":{"enable_e2ee":"nobody","disable_e2ee":"never"},)"
      R"("staff_access":{"applies":false,"retention_days":30,)"
      R"("moderation":"reports","automated_scanning":false,)"
      R"("lawful_access":false,"notify_participants":"never"},)"
      R"("notice":"Say \"bye\"\n2023-11-24",)"
      R"("pending":{"new_mode":"TRANSPORT","effective_at_ms":1700864000000,)"
      R"("effective_at":"2023-11-24T22:13:20Z"}})");
  const std::string text = Explain(d);
  EXPECT_THAT(text, HasSubstr("Mode: E2EE"));
  EXPECT_THAT(text, HasSubstr("Rule: default (policy revision rev-inline)"));
  EXPECT_THAT(text, HasSubstr("Pending: becomes TRANSPORT at "
                              "2023-11-24T22:13:20Z"));
  EXPECT_THAT(text, HasSubstr("Staff access: none to content"));
  const std::string later = Explain(Decide(
      p, Direct().Adults(2).State(kE2ee).Applied(kApplied).Now(kApplied +
                                                               11 * kDayMs)));
  EXPECT_THAT(later, HasSubstr("Staff access: retention 30 days; moderation "
                               "reports; automated scanning off; lawful "
                               "access not allowed; participants told of "
                               "access: never"));
  EXPECT_THAT(later, HasSubstr("Notice: \"This chat is not end-to-end "
                               "encrypted.\""));
}

}  // namespace
}  // namespace parley::policy
