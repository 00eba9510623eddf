// SPDX-License-Identifier: GPL-3.0-or-later
//
// Policy evaluation (Decide), decision rendering (JSON, Explain) and loading.

#include "policy/policy.h"

#include <cstdint>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "policy/policy_internal.h"

namespace parley::policy {

using internal::Append;
using internal::Cat;
using internal::JoinStrings;

// ---------------------------------------------------------------------------
// Names.
// ---------------------------------------------------------------------------

std::string_view SecurityModeName(SecurityMode m) {
  switch (m) {
    case SecurityMode::kE2ee:
      return "E2EE";
    case SecurityMode::kOptIn:
      return "OPT_IN";
    case SecurityMode::kTransport:
      return "TRANSPORT";
    case SecurityMode::kUnspecified:
      break;
  }
  return "UNSPECIFIED";
}

std::string_view ConversationKindName(ConversationKind k) {
  switch (k) {
    case ConversationKind::kDirect:
      return "direct";
    case ConversationKind::kGroup:
      return "group";
    case ConversationKind::kBroadcast:
      return "broadcast";
    case ConversationKind::kBusinessSupport:
      return "business_support";
    case ConversationKind::kUnspecified:
      break;
  }
  return "unspecified";
}

std::string_view AccountKindName(AccountKind k) {
  switch (k) {
    case AccountKind::kBusiness:
      return "business";
    case AccountKind::kCreator:
      return "creator";
    case AccountKind::kBot:
      return "bot";
    case AccountKind::kPersonal:
    case AccountKind::kUnspecified:
      break;
  }
  return "personal";
}

std::string_view AgeBandName(AgeBand a) {
  switch (a) {
    case AgeBand::kMinor:
      return "minor";
    case AgeBand::kAdult:
      return "adult";
    case AgeBand::kUnknown:
    case AgeBand::kUnspecified:
      break;
  }
  return "unknown";
}

std::string_view EnableConsentName(EnableConsent c) {
  switch (c) {
    case EnableConsent::kAnyParticipant:
      return "any";
    case EnableConsent::kAllParticipants:
      return "all";
    case EnableConsent::kNobody:
      break;
  }
  return "nobody";
}

std::string_view DisableConsentName(DisableConsent c) {
  switch (c) {
    case DisableConsent::kAnyParticipant:
      return "any";
    case DisableConsent::kAllParticipants:
      return "all";
    case DisableConsent::kNever:
      break;
  }
  return "never";
}

std::string_view ModerationName(Moderation m) {
  switch (m) {
    case Moderation::kNone:
      return "none";
    case Moderation::kFullReview:
      return "full_review";
    case Moderation::kReports:
      break;
  }
  return "reports";
}

std::string_view AccessNotificationName(AccessNotification n) {
  switch (n) {
    case AccessNotification::kImmediately:
      return "immediately";
    case AccessNotification::kAfterDelay:
      return "after_days";
    case AccessNotification::kNever:
      break;
  }
  return "never";
}

std::string_view AdjustmentName(Adjustment a) {
  switch (a) {
    case Adjustment::kExistingE2eeKept:
      return "existing_e2ee_kept";
    case Adjustment::kDowngradePending:
      return "downgrade_pending";
    case Adjustment::kDowngraded:
      return "downgraded";
    case Adjustment::kParticipantChoiceKept:
      return "participant_choice_kept";
    case Adjustment::kEnabledByParticipants:
      return "enabled_by_participants";
    case Adjustment::kDisabledByParticipants:
      return "disabled_by_participants";
    case Adjustment::kNone:
      break;
  }
  return "none";
}

namespace {

using internal::CompiledPolicy;
using internal::Node;
using internal::NoticeTemplate;
using internal::Op;
using internal::Placeholder;
using internal::Rule;

constexpr int64_t kMsPerDay = 86'400'000;

// Default notices when the rule gives none for the decided mode.
constexpr std::string_view kOptInNotice =
    "This chat is not end-to-end encrypted. End-to-end encryption can be "
    "turned on for this chat.";
constexpr std::string_view kTransportNotice =
    "This chat is not end-to-end encrypted.";
constexpr std::string_view kDowngradeNotice =
    "End-to-end encryption for this chat ends on {effective_date}. Download "
    "anything you want to keep before then.";

constexpr std::string_view AdjustmentReason(Adjustment a) {
  switch (a) {
    case Adjustment::kExistingE2eeKept:
      return "the rule would weaken an existing end-to-end encrypted "
             "conversation; existing E2EE is kept (existing_e2ee: keep)";
    case Adjustment::kDowngradePending:
      return "the rule weakens this end-to-end encrypted conversation after a "
             "notice period; it stays E2EE until the pending change takes "
             "effect";
    case Adjustment::kDowngraded:
      return "the notice period for weakening this end-to-end encrypted "
             "conversation is over (existing_e2ee: downgrade)";
    case Adjustment::kParticipantChoiceKept:
      return "the participants chose the current mode and the rule still "
             "permits that choice";
    case Adjustment::kEnabledByParticipants:
      return "the participants' consent to turn end-to-end encryption on is "
             "complete";
    case Adjustment::kDisabledByParticipants:
      return "the participants' consent to turn end-to-end encryption off is "
             "complete";
    case Adjustment::kNone:
      break;
  }
  return "";
}

// Per-decision evaluation context.
struct Context {
  const CompiledPolicy& policy;
  const Facts& facts;
  uint32_t pairs;  // (account kind, age band) pairs present
};

bool ParticipantMatches(const Context& c, const Node& n,
                        const ParticipantFacts& p) {
  if (!(n.mask & (1u << internal::PairBit(p.account_kind, p.age_band)))) {
    return false;
  }
  if (n.ppred == 0) return true;
  const internal::ParticipantPredicate& pp = c.policy.ppreds[n.ppred - 1];
  if (!pp.regions.empty()) {
    const uint16_t r = internal::PackRegion(p.region_code);
    bool found = false;
    for (uint16_t want : pp.regions) found |= want == r;
    if (!found) return false;
  }
  if (!pp.organizations.empty()) {
    bool found = false;
    for (const std::string& want : pp.organizations) {
      if (want == p.organization) {
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  if (pp.has_organization >= 0 &&
      (pp.has_organization == 1) == p.organization.empty()) {
    return false;
  }
  return true;
}

bool Eval(const Context& c, const Node* n) {
  const Facts& f = c.facts;
  switch (n->op) {
    case Op::kAll: {
      const Node* end = n + n->size;
      for (const Node* child = n + 1; child < end; child += child->size) {
        if (!Eval(c, child)) return false;
      }
      return true;
    }
    case Op::kAny: {
      const Node* end = n + n->size;
      for (const Node* child = n + 1; child < end; child += child->size) {
        if (Eval(c, child)) return true;
      }
      return false;
    }
    case Op::kNot:
      return !Eval(c, n + 1);
    case Op::kKindIn:
      return f.kind != ConversationKind::kUnspecified &&
             ((n->mask >> static_cast<int>(f.kind)) & 1u) != 0;
    case Op::kMemberCount: {
      const int64_t m = f.EffectiveMemberCount();
      return m >= n->lo && m <= n->hi;
    }
    case Op::kCreatedAt:
      return f.created_at_ms >= n->lo && f.created_at_ms <= n->hi;
    case Op::kAnyParticipant:
      if (n->ppred == 0) return (c.pairs & n->mask) != 0;
      for (const ParticipantFacts& p : f.participants) {
        if (ParticipantMatches(c, *n, p)) return true;
      }
      return false;
    case Op::kAllParticipants:
      if (n->ppred == 0) return (c.pairs & ~n->mask) == 0;
      for (const ParticipantFacts& p : f.participants) {
        if (!ParticipantMatches(c, *n, p)) return false;
      }
      return true;
    case Op::kParticipantKinds:
      return internal::KindsInPairs(c.pairs) == n->mask;
    case Op::kSameOrganization: {
      bool same = !f.participants.empty();
      const std::string_view first =
          same ? std::string_view(f.participants.front().organization)
               : std::string_view();
      for (const ParticipantFacts& p : f.participants) {
        if (p.organization.empty() || p.organization != first) {
          same = false;
          break;
        }
      }
      return same == n->flag;
    }
    case Op::kMutualContacts:
      return f.mutual_contacts == n->flag;
    case Op::kNewConversation:
      return !f.current.has_value() == n->flag;
    case Op::kCurrentMode:
      return f.current.has_value() &&
             f.current->mode != SecurityMode::kUnspecified &&
             ((n->mask >> static_cast<int>(f.current->mode)) & 1u) != 0;
    case Op::kE2eeEverEnabled:
      return (f.current.has_value() && f.current->e2ee_ever_enabled) ==
             n->flag;
  }
  return false;
}

const Rule& Match(const Context& c) {
  const std::vector<Rule>& rules = c.policy.rules;
  for (const Rule& r : rules) {
    if (!r.has_condition || Eval(c, &c.policy.nodes[r.cond_begin])) return r;
  }
  return rules.back();  // unreachable: the default rule matches everything
}

bool ConsentReached(uint8_t consent, uint32_t requests, uint32_t members) {
  switch (consent) {
    case 1:  // any
      return requests >= 1;
    case 2:  // all
      return requests >= (members == 0 ? 1 : members);
    default:
      return false;
  }
}

// Organisation named in notices: the first business participant's, else the
// first non-empty one.
std::string_view NoticeOrganization(const Facts& f) {
  std::string_view any;
  for (const ParticipantFacts& p : f.participants) {
    if (p.organization.empty()) continue;
    if (p.account_kind == AccountKind::kBusiness) return p.organization;
    if (any.empty()) any = p.organization;
  }
  return any.empty() ? std::string_view("the business") : any;
}

// Days since 1970-01-01 -> civil date (H. Hinnant's algorithm).
void CivilFromDays(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
}

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

void AppendPadded(std::string& out, int64_t v, int width) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  if (v < 0) out += '-';
  for (int i = static_cast<int>(digits.size()); i < width; ++i) out += '0';
  out += digits;
}

// "2026-05-08" (UTC).
std::string FormatDate(int64_t ms) {
  int64_t y;
  unsigned m, d;
  CivilFromDays(FloorDiv(ms, kMsPerDay), y, m, d);
  std::string out;
  AppendPadded(out, y, 4);
  out += '-';
  AppendPadded(out, m, 2);
  out += '-';
  AppendPadded(out, d, 2);
  return out;
}

// "2026-05-08T12:00:00Z" (UTC, second precision).
std::string FormatTimestamp(int64_t ms) {
  std::string out = FormatDate(ms);
  const int64_t in_day = ms - FloorDiv(ms, kMsPerDay) * kMsPerDay;
  const int64_t secs = in_day / 1000;
  out += 'T';
  AppendPadded(out, secs / 3600, 2);
  out += ':';
  AppendPadded(out, (secs / 60) % 60, 2);
  out += ':';
  AppendPadded(out, secs % 60, 2);
  out += 'Z';
  return out;
}

void Render(const NoticeTemplate& t, const Facts& f, int64_t effective_at_ms,
            std::string& out) {
  if (t.segments.size() == 1 &&
      t.segments[0].placeholder == Placeholder::kNone) {
    out.assign(t.segments[0].literal);
    return;
  }
  out.clear();
  for (const NoticeTemplate::Segment& s : t.segments) {
    out += s.literal;
    switch (s.placeholder) {
      case Placeholder::kOrganization:
        out += NoticeOrganization(f);
        break;
      case Placeholder::kEffectiveDate:
        out += FormatDate(effective_at_ms);
        break;
      case Placeholder::kNone:
        break;
    }
  }
}

// The default downgrade notice, compiled once.
const NoticeTemplate& DefaultDowngradeNotice() {
  static const NoticeTemplate* t = [] {
    auto* n = new NoticeTemplate;
    const std::string_view text = kDowngradeNotice;
    const size_t at = text.find("{effective_date}");
    n->segments.push_back(
        {std::string(text.substr(0, at)), Placeholder::kEffectiveDate});
    n->segments.push_back({std::string(text.substr(at + 16)),
                           Placeholder::kNone});
    return n;
  }();
  return *t;
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<int64_t>::max()
                 : std::numeric_limits<int64_t>::min();
  }
  return r;
}

// ---- JSON -----------------------------------------------------------------
void JsonString(std::string& out, std::string_view s) {
  out += '"';
  size_t run = 0;  // start of the pending unescaped run
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.substr(run, i - run));
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
      }
    }
  }
  out.append(s.substr(run));
  out += '"';
}

void JsonKey(std::string& out, std::string_view key) {
  if (out.back() != '{') out += ',';
  JsonString(out, key);
  out += ':';
}

}  // namespace

// ---------------------------------------------------------------------------
// Policy.
// ---------------------------------------------------------------------------

namespace internal {
const CompiledPolicy& Compiled(const Policy& p) { return *p.impl_; }
}  // namespace internal

Policy::Policy(std::shared_ptr<const internal::CompiledPolicy> impl)
    : impl_(std::move(impl)) {}
Policy::~Policy() = default;

std::string_view Policy::revision() const { return impl_->revision; }
std::string_view Policy::name() const { return impl_->name; }

std::vector<std::string_view> Policy::rule_ids() const {
  std::vector<std::string_view> ids;
  ids.reserve(impl_->rules.size());
  for (const Rule& r : impl_->rules) ids.push_back(r.id);
  return ids;
}

absl::StatusOr<Policy> ParsePolicy(std::string_view yaml_text,
                                   std::string_view file_name_for_errors,
                                   std::string revision) {
  auto compiled = std::make_shared<internal::CompiledPolicy>();
  std::vector<std::string> errors =
      internal::CompilePolicy(yaml_text, file_name_for_errors, *compiled);
  if (!errors.empty()) {
    return absl::InvalidArgumentError(JoinStrings(errors, "\n"));
  }
  compiled->revision = std::move(revision);
  return Policy(std::move(compiled));
}

absl::StatusOr<Policy> LoadPolicyFile(const std::string& path,
                                      std::string revision) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(Cat(path, ": cannot open policy file"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::UnavailableError(Cat(path, ": read error"));
  }
  return ParsePolicy(text.str(), path, std::move(revision));
}

// ---------------------------------------------------------------------------
// Decide.
// ---------------------------------------------------------------------------

Decision Decide(const Policy& policy, const Facts& f) {
  const CompiledPolicy& cp = internal::Compiled(policy);
  uint32_t pairs = 0;
  for (const ParticipantFacts& p : f.participants) {
    pairs |= 1u << internal::PairBit(p.account_kind, p.age_band);
  }
  const Context ctx{cp, f, pairs};
  const Rule& r = Match(ctx);

  Decision d;
  d.rule_id = r.id;
  d.policy_revision = cp.revision;
  d.reason = r.reason;
  d.locked = r.locked;
  d.enable_e2ee = r.enable;
  d.disable_e2ee = r.disable;
  d.staff_access = r.access;

  const bool exists = f.current.has_value();
  const SecurityMode current =
      exists ? f.current->mode : SecurityMode::kUnspecified;
  const bool by_participants = exists && f.current->set_by_participants;
  const uint32_t members = f.EffectiveMemberCount();
  // The mode participants get when they turn E2EE off under this rule.
  const SecurityMode off_mode =
      r.mode != SecurityMode::kE2ee ? r.mode
      : r.enable != EnableConsent::kNobody ? SecurityMode::kOptIn
                                           : SecurityMode::kTransport;

  SecurityMode mode = r.mode;
  Adjustment adj = Adjustment::kNone;
  int64_t effective_at = 0;
  if (current == SecurityMode::kE2ee && r.mode != SecurityMode::kE2ee) {
    // The rule would weaken an E2EE conversation.
    if (r.mode == SecurityMode::kOptIn && by_participants) {
      mode = SecurityMode::kE2ee;  // their choice; opt_in allows E2EE on
      adj = Adjustment::kParticipantChoiceKept;
    } else if (r.existing == internal::ExistingE2ee::kKeep) {
      mode = SecurityMode::kE2ee;
      adj = Adjustment::kExistingE2eeKept;
    } else {
      const int64_t applied = f.policy_applied_at_ms.value_or(f.now_ms);
      effective_at =
          SaturatingAdd(applied, int64_t{r.downgrade_notice_days} * kMsPerDay);
      if (f.now_ms < effective_at) {
        mode = SecurityMode::kE2ee;
        adj = Adjustment::kDowngradePending;
      } else {
        adj = Adjustment::kDowngraded;
      }
    }
  } else if (exists && current != SecurityMode::kE2ee &&
             current != SecurityMode::kUnspecified &&
             r.mode == SecurityMode::kE2ee && by_participants &&
             f.current->e2ee_ever_enabled &&
             r.disable != DisableConsent::kNever) {
    // Participants turned E2EE off and this rule lets them.
    mode = off_mode;
    adj = Adjustment::kParticipantChoiceKept;
  }

  // Pending participant requests.
  if (!r.locked) {
    if (mode == SecurityMode::kE2ee) {
      if (ConsentReached(static_cast<uint8_t>(r.disable),
                         f.requests.disable_e2ee, members)) {
        mode = off_mode;
        adj = Adjustment::kDisabledByParticipants;
      }
    } else if (ConsentReached(static_cast<uint8_t>(r.enable),
                              f.requests.enable_e2ee, members)) {
      mode = SecurityMode::kE2ee;
      adj = Adjustment::kEnabledByParticipants;
    }
  }

  d.mode = mode;
  d.adjustment = adj;
  d.adjustment_reason = AdjustmentReason(adj);
  d.changes_mode = exists && current != mode;
  d.staff_access.applies = mode != SecurityMode::kE2ee;

  if (adj == Adjustment::kDowngradePending) {
    d.pending = PendingChange{r.mode, effective_at};
    Render(r.downgrade_notice.present() ? r.downgrade_notice
                                        : DefaultDowngradeNotice(),
           f, effective_at, d.notice);
  } else if (mode == r.mode && r.notice.present()) {
    Render(r.notice, f, 0, d.notice);
  } else if (mode == SecurityMode::kOptIn) {
    d.notice.assign(kOptInNotice);
  } else if (mode == SecurityMode::kTransport) {
    d.notice.assign(kTransportNotice);
  }
  return d;
}

// ---------------------------------------------------------------------------
// Rendering.
// ---------------------------------------------------------------------------

std::string DecisionToJson(const Decision& d) {
  std::string out;
  out.reserve(768);
  out += '{';
  JsonKey(out, "mode");
  JsonString(out, SecurityModeName(d.mode));
  JsonKey(out, "rule_id");
  JsonString(out, d.rule_id);
  JsonKey(out, "policy_revision");
  JsonString(out, d.policy_revision);
  JsonKey(out, "reason");
  JsonString(out, d.reason);
  JsonKey(out, "adjustment");
  JsonString(out, AdjustmentName(d.adjustment));
  JsonKey(out, "adjustment_reason");
  JsonString(out, d.adjustment_reason);
  JsonKey(out, "changes_mode");
  out += d.changes_mode ? "true" : "false";
  JsonKey(out, "locked");
  out += d.locked ? "true" : "false";
  JsonKey(out, "transitions");
  out += '{';
  JsonKey(out, "enable_e2ee");
  JsonString(out, EnableConsentName(d.enable_e2ee));
  JsonKey(out, "disable_e2ee");
  JsonString(out, DisableConsentName(d.disable_e2ee));
  out += '}';
  JsonKey(out, "staff_access");
  out += '{';
  const StaffAccess& a = d.staff_access;
  JsonKey(out, "applies");
  out += a.applies ? "true" : "false";
  JsonKey(out, "retention_days");
  if (a.retention_days == kRetainUntilDeleted) {
    JsonString(out, "unlimited");
  } else {
    out += std::to_string(a.retention_days);
  }
  JsonKey(out, "moderation");
  JsonString(out, ModerationName(a.moderation));
  JsonKey(out, "automated_scanning");
  out += a.automated_scanning ? "true" : "false";
  JsonKey(out, "lawful_access");
  out += a.lawful_access ? "true" : "false";
  JsonKey(out, "notify_participants");
  JsonString(out, AccessNotificationName(a.notify_participants));
  if (a.notify_participants == AccessNotification::kAfterDelay) {
    JsonKey(out, "notify_after_days");
    out += std::to_string(a.notify_after_days);
  }
  out += '}';
  JsonKey(out, "notice");
  JsonString(out, d.notice);
  JsonKey(out, "pending");
  if (d.pending) {
    out += '{';
    JsonKey(out, "new_mode");
    JsonString(out, SecurityModeName(d.pending->new_mode));
    JsonKey(out, "effective_at_ms");
    out += std::to_string(d.pending->effective_at_ms);
    JsonKey(out, "effective_at");
    JsonString(out, FormatTimestamp(d.pending->effective_at_ms));
    out += '}';
  } else {
    out += "null";
  }
  out += '}';
  return out;
}

namespace {
std::string_view ModeDescription(SecurityMode m) {
  switch (m) {
    case SecurityMode::kE2ee:
      return "end-to-end encrypted (only participants' devices can read)";
    case SecurityMode::kOptIn:
      return "transport encryption, server-readable; participants may turn "
             "on end-to-end encryption";
    case SecurityMode::kTransport:
      return "transport encryption only, server-readable";
    case SecurityMode::kUnspecified:
      break;
  }
  return "unspecified";
}

std::string_view WhoText(uint8_t consent, bool disable) {
  switch (consent) {
    case 1:
      return "any participant";
    case 2:
      return "all participants together";
    default:
      return disable ? "never" : "nobody";
  }
}
}  // namespace

std::string Explain(const Decision& d) {
  std::string out;
  Append(&out, "Mode: ", SecurityModeName(d.mode), " - ",
                  ModeDescription(d.mode), "\n");
  Append(&out, "Rule: ", d.rule_id, " (policy revision ",
                  d.policy_revision.empty() ? "unset" : d.policy_revision,
                  ")\n");
  Append(&out, "Reason: ", d.reason, "\n");
  if (d.adjustment != Adjustment::kNone) {
    Append(&out, "Adjusted: ", d.adjustment_reason, "\n");
  }
  if (d.pending) {
    Append(&out, "Pending: becomes ",
                    SecurityModeName(d.pending->new_mode), " at ",
                    FormatTimestamp(d.pending->effective_at_ms), "\n");
  }
  if (d.locked) {
    Append(&out,
                    "Participants: locked - participants cannot change the "
                    "mode\n");
  } else {
    Append(
        &out, "Participants: turn E2EE on: ",
        WhoText(static_cast<uint8_t>(d.enable_e2ee), false),
        "; turn E2EE off: ",
        WhoText(static_cast<uint8_t>(d.disable_e2ee), true), "\n");
  }
  const StaffAccess& a = d.staff_access;
  if (a.applies) {
    Append(&out, "Staff access: retention ",
                    a.retention_days == kRetainUntilDeleted
                        ? std::string("until deleted")
                        : Cat(a.retention_days, " days"),
                    "; moderation ", ModerationName(a.moderation),
                    "; automated scanning ",
                    a.automated_scanning ? "on" : "off", "; lawful access ",
                    a.lawful_access ? "allowed" : "not allowed",
                    "; participants told of access: ",
                    a.notify_participants == AccessNotification::kAfterDelay
                        ? Cat("after ", a.notify_after_days, " days")
                        : std::string(
                              AccessNotificationName(a.notify_participants)),
                    "\n");
  } else {
    Append(&out,
                    "Staff access: none to content (reported messages only, "
                    "verified by message franking)\n");
  }
  Append(&out, "Notice: ",
                  d.notice.empty() ? std::string("(none)")
                                   : Cat("\"", d.notice, "\""),
                  "\n");
  return out;
}

}  // namespace parley::policy
