// SPDX-License-Identifier: GPL-3.0-or-later
//
// Parley conversation security policy engine.
//
// A Policy is an ordered list of rules read from a YAML document (see
// policy/SCHEMA.md). Decide() matches the facts of one conversation against the
// rules (first match wins) and returns a Decision: the conversation's security
// mode, the transitions participants may make, staff access while content is
// server-readable, the notice users must see, and why.
//
// Contract:
//  * Pure and deterministic. Decide() reads no clock, does no I/O and has no
//    hidden state: the same Policy and Facts always give the same Decision.
//    Time enters only through Facts::now_ms and Facts::policy_applied_at_ms.
//  * Threading. A Policy is immutable after ParsePolicy() returns; it may be
//    shared between threads and Decide() may be called concurrently on it
//    without synchronisation. Copying a Policy is cheap (shared immutable
//    representation).
//  * Lifetime. The std::string_view members of a Decision point into the
//    Policy's immutable storage (or into static storage). They stay valid as
//    long as the Policy that produced the Decision, or any copy of it, is
//    alive.
//  * Errors are absl::Status values; no exception crosses this interface.
//    Document errors are kInvalidArgument and name the file, the 1-based line
//    and the field path, one error per line of the message.
//  * Dependencies: yaml-cpp and Abseil only. This library does not depend on
//    the API (protobuf/gRPC) targets; the enums below mirror
//    api/parley/v1/common.proto value for value so callers can static_cast.
#ifndef PARLEY_POLICY_POLICY_H_
#define PARLEY_POLICY_POLICY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace parley::policy {

// ---------------------------------------------------------------------------
// Enums. Numeric values are identical to parley.v1 in common.proto.
// ---------------------------------------------------------------------------

// Mirrors parley.v1.SecurityMode.
enum class SecurityMode : int {
  kUnspecified = 0,  // SECURITY_MODE_UNSPECIFIED
  kE2ee = 1,         // SECURITY_MODE_E2EE: only participants' devices read.
  kOptIn = 2,        // SECURITY_MODE_OPT_IN: transport now, E2EE on request.
  kTransport = 3,    // SECURITY_MODE_TRANSPORT: transport only.
};

// Mirrors parley.v1.ConversationKind.
enum class ConversationKind : int {
  kUnspecified = 0,      // CONVERSATION_KIND_UNSPECIFIED (matches no kind)
  kDirect = 1,           // CONVERSATION_KIND_DIRECT
  kGroup = 2,            // CONVERSATION_KIND_GROUP
  kBroadcast = 3,        // CONVERSATION_KIND_BROADCAST (channel)
  kBusinessSupport = 4,  // CONVERSATION_KIND_BUSINESS_SUPPORT
};

// Mirrors parley.v1.AccountKind. kUnspecified is treated as kPersonal.
enum class AccountKind : int {
  kUnspecified = 0,
  kPersonal = 1,
  kBusiness = 2,
  kCreator = 3,
  kBot = 4,
};

// Mirrors parley.v1.AgeBand. kUnspecified is treated as kUnknown.
enum class AgeBand : int {
  kUnspecified = 0,
  kUnknown = 1,
  kMinor = 2,
  kAdult = 3,
};

// Who may turn E2EE on in a conversation that is not (yet) E2EE.
enum class EnableConsent : uint8_t {
  kNobody = 0,
  kAnyParticipant = 1,   // one participant's request suffices
  kAllParticipants = 2,  // every member must request it
};

// Whether E2EE may be turned off again, and by whose consent.
enum class DisableConsent : uint8_t {
  kNever = 0,
  kAnyParticipant = 1,
  kAllParticipants = 2,
};

// What staff moderation may see while content is server-readable.
enum class Moderation : uint8_t {
  kNone = 0,        // no staff review of content
  kReports = 1,     // only messages a participant reports
  kFullReview = 2,  // staff may review any message
};

// Whether participants are told when staff read their content.
enum class AccessNotification : uint8_t {
  kNever = 0,
  kImmediately = 1,
  kAfterDelay = 2,  // after StaffAccess::notify_after_days days
};

// Why the decided mode differs from the matched rule's mode (if it does).
enum class Adjustment : uint8_t {
  kNone = 0,                // the rule's mode applies as written
  kExistingE2eeKept = 1,    // rule would weaken E2EE; existing_e2ee: keep
  kDowngradePending = 2,    // stays E2EE until Decision::pending takes effect
  kDowngraded = 3,          // notice period over; the rule's weaker mode
  kParticipantChoiceKept = 4,  // participants' earlier choice is respected
  kEnabledByParticipants = 5,  // enough participants requested E2EE on
  kDisabledByParticipants = 6, // enough participants requested E2EE off
};

std::string_view SecurityModeName(SecurityMode m);          // "E2EE", ...
std::string_view ConversationKindName(ConversationKind k);  // "direct", ...
std::string_view AccountKindName(AccountKind k);            // "personal", ...
std::string_view AgeBandName(AgeBand a);                    // "minor", ...
std::string_view EnableConsentName(EnableConsent c);        // "nobody", ...
std::string_view DisableConsentName(DisableConsent c);      // "never", ...
std::string_view ModerationName(Moderation m);              // "full_review"
std::string_view AccessNotificationName(AccessNotification n);
std::string_view AdjustmentName(Adjustment a);  // "existing_e2ee_kept", ...

// ---------------------------------------------------------------------------
// Facts: everything Decide() may look at. Plain data filled by the caller.
// ---------------------------------------------------------------------------

struct ParticipantFacts {
  AccountKind account_kind = AccountKind::kPersonal;
  AgeBand age_band = AgeBand::kUnknown;
  std::string region_code;   // ISO 3166-1 alpha-2, upper case, or empty
  std::string organization;  // operator-assigned; empty for most accounts.
                             // For business accounts: the provider that
                             // operates the account (shown in notices).
};

// The conversation's current security state (absent for a new conversation).
struct CurrentSecurity {
  SecurityMode mode = SecurityMode::kUnspecified;  // kE2ee: currently E2EE
  uint64_t epoch = 0;
  bool e2ee_ever_enabled = false;
  // The current mode was set by participants' consent (they turned E2EE on
  // or off), not by policy. Such choices are respected while the matched
  // rule still permits them.
  bool set_by_participants = false;
};

// Requests pending from participants (distinct participants, not requests).
struct PendingRequests {
  uint32_t enable_e2ee = 0;
  uint32_t disable_e2ee = 0;
};

struct Facts {
  ConversationKind kind = ConversationKind::kUnspecified;
  // Number of members. 0 means "use participants.size()".
  uint32_t member_count = 0;
  // Attributes of the members. Should list every member; for very large
  // conversations a caller may pass a subset, and participant predicates then
  // apply to that subset.
  std::vector<ParticipantFacts> participants;
  // Every participant is a mutual contact of every other participant (for a
  // direct conversation: the two accounts are mutual contacts). Unknown must
  // be passed as false.
  bool mutual_contacts = false;
  // Current state; std::nullopt for a conversation being created.
  std::optional<CurrentSecurity> current;
  PendingRequests requests;
  int64_t now_ms = 0;         // Unix epoch milliseconds
  int64_t created_at_ms = 0;  // conversation creation time
  // When the policy revision being evaluated was applied to this deployment.
  // Used to compute downgrade effective times (applied + notice_days). If
  // absent, now_ms is used, i.e. the notice period never elapses: existing
  // E2EE stays E2EE until the caller supplies this fact.
  std::optional<int64_t> policy_applied_at_ms;

  uint32_t EffectiveMemberCount() const {
    return member_count != 0 ? member_count
                             : static_cast<uint32_t>(participants.size());
  }
};

// ---------------------------------------------------------------------------
// Decision.
// ---------------------------------------------------------------------------

// Value of StaffAccess::retention_days meaning "kept until participants
// delete it".
inline constexpr int32_t kRetainUntilDeleted = -1;

// Staff access to content. Meaningful only while content is server-readable
// (`applies`): in E2EE mode only reported messages (message franking) are
// visible, whatever the rule says.
struct StaffAccess {
  bool applies = false;  // decided mode is OPT_IN or TRANSPORT
  int32_t retention_days = 0;  // 0: deleted once delivered; or -1
  Moderation moderation = Moderation::kReports;
  bool automated_scanning = false;
  bool lawful_access = false;
  AccessNotification notify_participants = AccessNotification::kNever;
  int32_t notify_after_days = 0;  // with kAfterDelay
};

// A change announced in advance (mirrors parley.v1.PendingSecurityChange).
struct PendingChange {
  SecurityMode new_mode = SecurityMode::kUnspecified;
  int64_t effective_at_ms = 0;
};

struct Decision {
  SecurityMode mode = SecurityMode::kUnspecified;
  // Transitions participants may make (from the matched rule).
  EnableConsent enable_e2ee = EnableConsent::kNobody;
  DisableConsent disable_e2ee = DisableConsent::kNever;
  bool locked = false;  // participants may not change the mode
  StaffAccess staff_access;
  // What users must be shown (banner / system message). May be empty (e.g.
  // plain E2EE). Rendered: placeholders are already substituted.
  std::string notice;
  std::optional<PendingChange> pending;  // set with kDowngradePending
  Adjustment adjustment = Adjustment::kNone;
  // true when the conversation exists and `mode` differs from its mode.
  bool changes_mode = false;
  // Views into the Policy (see "Lifetime" above) or static text.
  std::string_view rule_id;
  std::string_view policy_revision;
  std::string_view reason;             // the rule's reason
  std::string_view adjustment_reason;  // why `adjustment`; empty for kNone
};

// ---------------------------------------------------------------------------
// Policy.
// ---------------------------------------------------------------------------

class Policy;
namespace internal {
struct CompiledPolicy;
const CompiledPolicy& Compiled(const Policy& p);
}  // namespace internal

class Policy {
 public:
  Policy(const Policy&) = default;
  Policy& operator=(const Policy&) = default;
  Policy(Policy&&) = default;
  Policy& operator=(Policy&&) = default;
  ~Policy();

  // A moved-from Policy may only be assigned to or destroyed.

  // The revision given to ParsePolicy (e.g. a content hash).
  std::string_view revision() const;
  // `name:` of the document (may be empty).
  std::string_view name() const;
  // The rule ids in evaluation order; the last one is "default".
  std::vector<std::string_view> rule_ids() const;

 private:
  friend absl::StatusOr<Policy> ParsePolicy(std::string_view, std::string_view,
                                            std::string);
  friend const internal::CompiledPolicy& internal::Compiled(const Policy& p);
  explicit Policy(std::shared_ptr<const internal::CompiledPolicy> impl);
  std::shared_ptr<const internal::CompiledPolicy> impl_;
};

// Parses and validates a policy document. `file_name_for_errors` prefixes
// every error ("<file>:<line>: <field path>: <message>"); `revision` is
// carried into every Decision.
absl::StatusOr<Policy> ParsePolicy(std::string_view yaml_text,
                                   std::string_view file_name_for_errors,
                                   std::string revision);

// Reads `path` and calls ParsePolicy(text, path, revision). The only function
// of this library that does I/O.
absl::StatusOr<Policy> LoadPolicyFile(const std::string& path,
                                      std::string revision);

// Decides the security of one conversation. Pure, deterministic, no I/O, no
// clock reads; allocates only to render Decision::notice. Typical cost is
// tens of nanoseconds (see policy_bench).
Decision Decide(const Policy& policy, const Facts& facts);

// The decision as a JSON object (stable key names; see SCHEMA.md).
std::string DecisionToJson(const Decision& decision);

// A multi-line explanation for humans (operators, support staff).
std::string Explain(const Decision& decision);

}  // namespace parley::policy

#endif  // PARLEY_POLICY_POLICY_H_
