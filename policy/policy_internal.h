// SPDX-License-Identifier: GPL-3.0-or-later
//
// Internal, compiled representation of a policy. Not part of the public API:
// included only by policy/*.cc and tests.
//
// Conditions are compiled into one flat array of Nodes in pre-order: a node's
// first child (if any) is the next node, and each node records the size of
// its subtree, so siblings are found by skipping `size` nodes. Participant
// predicates over account kind and age band only are reduced to a 12-bit mask
// of (account kind, age band) pairs, compared against the pairs present in the
// conversation (computed once per decision), so most rules never loop over
// participants.
#ifndef PARLEY_POLICY_POLICY_INTERNAL_H_
#define PARLEY_POLICY_POLICY_INTERNAL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "policy/policy.h"

namespace parley::policy::internal {

// String concatenation for std::string_view pieces. (Debian's Abseil is built
// with its own absl::string_view, so absl::StrCat does not take
// std::string_view.)
inline void AppendPiece(std::string& out, std::string_view s) { out.append(s); }
template <typename T>
  requires std::is_integral_v<T> && (!std::is_same_v<T, char>) &&
           (!std::is_same_v<T, bool>)
void AppendPiece(std::string& out, T v) {
  out.append(std::to_string(v));
}
template <typename... Args>
void Append(std::string* out, const Args&... args) {
  (AppendPiece(*out, args), ...);
}
template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (AppendPiece(out, args), ...);
  return out;
}
template <typename Range>
std::string JoinStrings(const Range& parts, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& p : parts) {
    if (!first) out.append(sep);
    first = false;
    out.append(std::string_view(p));
  }
  return out;
}

// Bit of an (account kind, age band) pair; unspecified values are normalised
// (kind -> personal, age -> unknown) as common.proto documents.
inline int PairBit(AccountKind kind, AgeBand age) {
  int k = static_cast<int>(kind);
  int a = static_cast<int>(age);
  if (k < 1 || k > 4) k = 1;
  if (a < 1 || a > 3) a = 1;
  return (k - 1) * 3 + (a - 1);
}
inline constexpr uint32_t kAllPairs = 0xFFF;

// Mask of the account kinds in a pair mask (bit = AccountKind value).
inline uint32_t KindsInPairs(uint32_t pairs) {
  uint32_t kinds = 0;
  for (int k = 0; k < 4; ++k) {
    if (pairs & (0x7u << (k * 3))) kinds |= 1u << (k + 1);
  }
  return kinds;
}

// Two-letter region code packed into 16 bits; 0 if not two characters.
inline uint16_t PackRegion(std::string_view code) {
  if (code.size() != 2) return 0;
  return static_cast<uint16_t>((static_cast<unsigned char>(code[0]) << 8) |
                               static_cast<unsigned char>(code[1]));
}

enum class Op : uint8_t {
  kAll,                // children all true (empty: true)
  kAny,                // some child true
  kNot,                // one child
  kKindIn,             // mask over ConversationKind values
  kMemberCount,        // lo <= member count <= hi
  kCreatedAt,          // lo <= created_at_ms <= hi
  kAnyParticipant,     // pair mask, plus ppred (if index != 0)
  kAllParticipants,    // idem
  kParticipantKinds,   // set of account kinds present == mask
  kSameOrganization,   // == flag
  kMutualContacts,     // == flag
  kNewConversation,    // == flag
  kCurrentMode,        // existing conversation whose mode is in mask
  kE2eeEverEnabled,    // == flag
};

struct Node {
  Op op = Op::kAll;
  bool flag = false;
  uint16_t ppred = 0;  // 1-based index into CompiledPolicy::ppreds; 0: none
  uint32_t mask = 0;
  uint32_t size = 1;  // nodes in this subtree, including this one
  int64_t lo = 0;
  int64_t hi = 0;
};

// A participant predicate that needs more than the pair mask.
struct ParticipantPredicate {
  std::vector<uint16_t> regions;         // empty: any region
  std::vector<std::string> organizations;  // empty: any organisation
  int8_t has_organization = -1;          // -1: any; 0: must be empty; 1: set
};

enum class Placeholder : uint8_t { kNone, kOrganization, kEffectiveDate };

// A notice text split at its placeholders.
struct NoticeTemplate {
  struct Segment {
    std::string literal;
    Placeholder placeholder = Placeholder::kNone;  // appended after literal
  };
  std::vector<Segment> segments;  // empty: no notice given
  bool present() const { return !segments.empty(); }
};

enum class ExistingE2ee : uint8_t { kKeep, kDowngrade };

struct Rule {
  std::string id;
  std::string description;
  std::string reason;
  int line = 0;  // line of the rule in the document
  // Condition: nodes[cond_begin, cond_begin + nodes[cond_begin].size).
  // has_condition false: matches everything.
  bool has_condition = false;
  uint32_t cond_begin = 0;
  SecurityMode mode = SecurityMode::kTransport;
  bool locked = false;
  EnableConsent enable = EnableConsent::kNobody;
  DisableConsent disable = DisableConsent::kNever;
  StaffAccess access;  // `applies` is decided per decision
  NoticeTemplate notice;
  ExistingE2ee existing = ExistingE2ee::kKeep;
  int32_t downgrade_notice_days = 0;
  NoticeTemplate downgrade_notice;
};

struct CompiledPolicy {
  std::string file;
  std::string revision;
  std::string name;
  std::string description;
  std::vector<Rule> rules;  // last is "default"
  std::vector<Node> nodes;
  std::vector<ParticipantPredicate> ppreds;
};

// Parses `yaml_text` into `out`; returns all errors (empty on success), each
// formatted "<file>:<line>: <path>: <message>".
std::vector<std::string> CompilePolicy(std::string_view yaml_text,
                                       std::string_view file,
                                       CompiledPolicy& out);

}  // namespace parley::policy::internal

#endif  // PARLEY_POLICY_POLICY_INTERNAL_H_
