// SPDX-License-Identifier: GPL-3.0-or-later
//
// Policy document parser: YAML (yaml-cpp) -> internal::CompiledPolicy,
// checked against the schema documented in policy/SCHEMA.md.
//
// Every error is "<file>:<line>: <field path>: <message>" with a 1-based line
// taken from yaml-cpp's Mark. yaml-cpp exceptions never leave this file.

#include <algorithm>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "policy/policy_internal.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace parley::policy::internal {
namespace {

// Stop collecting after this many errors (later ones are usually noise).
constexpr size_t kMaxErrors = 50;

constexpr int64_t kMaxDays = 36500;

struct EnumValue {
  std::string_view name;
  int value;
};

constexpr EnumValue kConversationKinds[] = {
    {"direct", 1}, {"group", 2}, {"broadcast", 3}, {"business_support", 4}};
constexpr EnumValue kAccountKinds[] = {
    {"personal", 1}, {"business", 2}, {"creator", 3}, {"bot", 4}};
constexpr EnumValue kAgeBands[] = {{"minor", 2}, {"adult", 3}, {"unknown", 1}};
constexpr EnumValue kModes[] = {{"e2ee", 1}, {"opt_in", 2}, {"transport", 3}};
constexpr EnumValue kEnableConsents[] = {
    {"nobody", 0}, {"any", 1}, {"all", 2}};
constexpr EnumValue kDisableConsents[] = {{"never", 0}, {"any", 1}, {"all", 2}};
constexpr EnumValue kModerations[] = {
    {"none", 0}, {"reports", 1}, {"full_review", 2}};
constexpr EnumValue kNotifications[] = {
    {"never", 0}, {"immediately", 1}, {"after_days", 2}};
constexpr EnumValue kExistingActions[] = {{"keep", 0}, {"downgrade", 1}};

template <size_t N>
std::string ExpectedList(const EnumValue (&values)[N]) {
  std::string out;
  for (size_t i = 0; i < N; ++i) {
    if (i != 0) out += ", ";
    out += values[i].name;
  }
  return out;
}

std::string_view TypeName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing (null)";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

// Is this a plain (unquoted, untagged) scalar? Numbers and booleans must be.
bool IsPlainScalar(const YAML::Node& n) {
  return n.IsScalar() && n.Tag() == "?";
}

// A value in the document together with its path and line.
struct Field {
  YAML::Node node;
  std::string path;
  int line = 1;      // 1-based line of the value
  int key_line = 0;  // line of the key holding it (0: same as line)
  // Where to report a missing member of this mapping: the key introducing it.
  int OwnerLine() const { return key_line != 0 ? key_line : line; }
};

class Compiler {
 public:
  Compiler(std::string_view file, CompiledPolicy& out)
      : file_(file), out_(out) {}

  std::vector<std::string> Run(std::string_view text);

 private:
  // ---- errors -------------------------------------------------------------
  void Error(int line, std::string_view path, std::string_view message) {
    if (errors_.size() >= kMaxErrors) return;
    if (path.empty()) {
      errors_.push_back(Cat(file_, ":", line, ": ", message));
    } else {
      errors_.push_back(Cat(file_, ":", line, ": ", path, ": ",
                                     message));
    }
  }
  void Error(const Field& f, std::string_view message) {
    Error(f.line, f.path, message);
  }

  // Line of `n`, or `fallback` when `n` has no useful mark (null values are
  // marked at the following token, so their key's line is used instead).
  static int LineOf(const YAML::Node& n, int fallback) {
    if (!n.IsDefined() || n.IsNull()) return fallback;
    const int line = n.Mark().line;
    return line >= 0 ? line + 1 : fallback;
  }

  static std::string Join(std::string_view path, std::string_view key) {
    if (path.empty()) return std::string(key);
    return Cat(path, ".", key);
  }

  // ---- generic shapes -----------------------------------------------------
  // Iterates a mapping, reporting non-scalar, duplicate and unknown keys.
  // `fn(key, Field)` is called for each known key.
  template <typename Fn>
  bool ForEachKey(const Field& map,
                  std::initializer_list<std::string_view> allowed, Fn fn) {
    return ForEachKeyIn(map, allowed.begin(), allowed.end(), fn);
  }

  template <typename Fn>
  bool ForEachKeyIn(const Field& map, const std::string_view* allowed_begin,
                    const std::string_view* allowed_end, Fn fn) {
    if (!map.node.IsMap()) {
      Error(map, Cat("expected a mapping, got ", TypeName(map.node)));
      return false;
    }
    absl::flat_hash_map<std::string, int> seen;
    for (auto it = map.node.begin(); it != map.node.end(); ++it) {
      const YAML::Node key = it->first;
      const int key_line = LineOf(key, map.line);
      if (!key.IsScalar()) {
        Error(key_line, map.path, "mapping keys must be plain words");
        continue;
      }
      const std::string name = key.Scalar();
      const std::string path = Join(map.path, name);
      auto [pos, inserted] = seen.emplace(name, key_line);
      if (!inserted) {
        Error(key_line, path,
              Cat("duplicate key (first given at line ", pos->second,
                           ")"));
        continue;
      }
      if (std::find(allowed_begin, allowed_end, name) == allowed_end) {
        std::vector<std::string_view> names(allowed_begin, allowed_end);
        Error(key_line, path,
              Cat("unknown key (expected one of: ",
                           JoinStrings(names, ", "), ")"));
        continue;
      }
      fn(name, Field{it->second, path, LineOf(it->second, key_line), key_line});
    }
    return true;
  }

  std::optional<std::string> String(const Field& f) {
    if (!f.node.IsScalar()) {
      Error(f, Cat("expected a string, got ", TypeName(f.node)));
      return std::nullopt;
    }
    return f.node.Scalar();
  }

  std::optional<std::string> NonEmptyString(const Field& f) {
    auto s = String(f);
    if (s && s->empty()) {
      Error(f, "must not be empty");
      return std::nullopt;
    }
    return s;
  }

  std::optional<bool> Bool(const Field& f) {
    if (IsPlainScalar(f.node)) {
      if (f.node.Scalar() == "true") return true;
      if (f.node.Scalar() == "false") return false;
    }
    Error(f, Cat("expected true or false, got ", Describe(f.node)));
    return std::nullopt;
  }

  std::optional<int64_t> Int(const Field& f, int64_t min, int64_t max) {
    int64_t v = 0;
    if (!IsPlainScalar(f.node) || !absl::SimpleAtoi(f.node.Scalar(), &v)) {
      Error(f, Cat("expected an integer, got ", Describe(f.node)));
      return std::nullopt;
    }
    if (v < min || v > max) {
      Error(f, Cat("value ", v, " out of range [", min, ", ", max,
                            "]"));
      return std::nullopt;
    }
    return v;
  }

  static std::string Describe(const YAML::Node& n) {
    if (n.IsScalar()) {
      return Cat(IsPlainScalar(n) ? "" : "string ", "\"", n.Scalar(),
                          "\"");
    }
    return std::string(TypeName(n));
  }

  template <size_t N>
  std::optional<int> Enum(const Field& f, const EnumValue (&values)[N]) {
    if (!f.node.IsScalar()) {
      Error(f, Cat("expected one of ", ExpectedList(values), ", got ",
                            TypeName(f.node)));
      return std::nullopt;
    }
    for (const EnumValue& v : values) {
      if (v.name == f.node.Scalar()) return v.value;
    }
    Error(f, Cat("unknown value \"", f.node.Scalar(), "\" (expected ",
                          ExpectedList(values), ")"));
    return std::nullopt;
  }

  // Calls fn(Field) for a scalar or for each element of a non-empty list.
  template <typename Fn>
  bool ForEachElement(const Field& f, Fn fn) {
    if (f.node.IsScalar()) {
      fn(f);
      return true;
    }
    if (!f.node.IsSequence()) {
      Error(f, Cat("expected a value or a list of values, got ",
                            TypeName(f.node)));
      return false;
    }
    if (f.node.size() == 0) {
      Error(f, "list must not be empty");
      return false;
    }
    for (size_t i = 0; i < f.node.size(); ++i) {
      const YAML::Node el = f.node[i];
      fn(Field{el, Cat(f.path, "[", i, "]"), LineOf(el, f.line)});
    }
    return true;
  }

  // A scalar or list of enum values -> bit mask (bit = enum value).
  template <size_t N>
  std::optional<uint32_t> EnumSet(const Field& f,
                                  const EnumValue (&values)[N]) {
    uint32_t mask = 0;
    bool ok = true;
    const bool shaped = ForEachElement(f, [&](const Field& el) {
      auto v = Enum(el, values);
      if (v) {
        mask |= 1u << *v;
      } else {
        ok = false;
      }
    });
    if (!shaped || !ok) return std::nullopt;
    return mask;
  }

  std::optional<std::vector<std::string>> StringList(const Field& f) {
    std::vector<std::string> out;
    bool ok = true;
    const bool shaped = ForEachElement(f, [&](const Field& el) {
      auto s = NonEmptyString(el);
      if (s) {
        out.push_back(*std::move(s));
      } else {
        ok = false;
      }
    });
    if (!shaped || !ok) return std::nullopt;
    return out;
  }

  std::optional<std::vector<uint16_t>> RegionList(const Field& f) {
    std::vector<uint16_t> out;
    bool ok = true;
    const bool shaped = ForEachElement(f, [&](const Field& el) {
      if (!el.node.IsScalar()) {
        Error(el, Cat("expected a region code, got ",
                               TypeName(el.node)));
        ok = false;
        return;
      }
      const std::string& s = el.node.Scalar();
      if (s.size() != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' ||
          s[1] > 'Z') {
        Error(el, Cat("invalid region code \"", s,
                               "\" (expected ISO 3166-1 alpha-2, upper case, "
                               "e.g. DE)"));
        ok = false;
        return;
      }
      out.push_back(PackRegion(s));
    });
    if (!shaped || !ok) return std::nullopt;
    return out;
  }

  // {min: N, max: N} -> [lo, hi].
  bool Range(const Field& f, int64_t min_allowed, int64_t max_allowed,
             Node& node) {
    node.lo = std::numeric_limits<int64_t>::min();
    node.hi = std::numeric_limits<int64_t>::max();
    bool any = false;
    bool ok = true;
    const bool shaped = ForEachKey(
        f, {"min", "max"}, [&](const std::string& key, const Field& v) {
          auto n = Int(v, min_allowed, max_allowed);
          if (!n) {
            ok = false;
            return;
          }
          any = true;
          (key == "min" ? node.lo : node.hi) = *n;
        });
    if (!shaped) return false;
    if (ok && !any) {
      Error(f.OwnerLine(), f.path, "expected at least one of min, max");
      return false;
    }
    if (ok && node.lo > node.hi) {
      Error(f, Cat("min (", node.lo, ") is greater than max (",
                            node.hi, ")"));
      return false;
    }
    return ok;
  }

  // ---- notices --------------------------------------------------------------
  std::optional<NoticeTemplate> Notice(const Field& f, bool allow_date) {
    auto text = NonEmptyString(f);
    if (!text) return std::nullopt;
    NoticeTemplate t;
    std::string literal;
    size_t i = 0;
    while (i < text->size()) {
      const char c = (*text)[i];
      if (c == '}') {
        Error(f, "unmatched \"}\" in notice");
        return std::nullopt;
      }
      if (c != '{') {
        literal += c;
        ++i;
        continue;
      }
      const size_t close = text->find('}', i);
      if (close == std::string::npos) {
        Error(f, "unterminated placeholder \"{\" in notice");
        return std::nullopt;
      }
      const std::string name = text->substr(i + 1, close - i - 1);
      Placeholder p = Placeholder::kNone;
      if (name == "organization") {
        p = Placeholder::kOrganization;
      } else if (name == "effective_date" && allow_date) {
        p = Placeholder::kEffectiveDate;
      } else {
        Error(f, Cat("unknown placeholder {", name, "} (expected ",
                              allow_date ? "{organization}, {effective_date}"
                                         : "{organization}",
                              ")"));
        return std::nullopt;
      }
      t.segments.push_back({std::move(literal), p});
      literal.clear();
      i = close + 1;
    }
    if (!literal.empty() || t.segments.empty()) {
      t.segments.push_back({std::move(literal), Placeholder::kNone});
    }
    return t;
  }

  // ---- conditions -------------------------------------------------------------
  static constexpr std::string_view kConditionKeys[] = {
      "all",          "any",              "not",
      "kind",         "member_count",     "created_at_ms",
      "any_participant", "all_participants", "participant_kinds",
      "region",       "organization",     "same_organization",
      "mutual_contacts", "new_conversation", "current_mode",
      "e2ee_ever_enabled"};

  // Compiles one condition (a mapping; several keys are ANDed).
  bool Condition(const Field& f) {
    if (!f.node.IsMap()) {
      Error(f, Cat("expected a condition (a mapping), got ",
                            TypeName(f.node)));
      return false;
    }
    if (f.node.size() == 0) {
      Error(f, "empty condition");
      return false;
    }
    const size_t begin = out_.nodes.size();
    const bool several = f.node.size() > 1;
    if (several) out_.nodes.push_back(Node{Op::kAll});
    bool ok = true;
    const bool shaped = ForEachKeyIn(
        f, std::begin(kConditionKeys), std::end(kConditionKeys), [&](const std::string& key, const Field& v) {
          if (!Leaf(key, v)) ok = false;
        });
    if (several) Close(begin);
    return shaped && ok;
  }

  void Close(size_t begin) {
    out_.nodes[begin].size =
        static_cast<uint32_t>(out_.nodes.size() - begin);
  }

  bool Leaf(const std::string& key, const Field& v) {
    Node node;
    if (key == "all" || key == "any") {
      if (!v.node.IsSequence()) {
        Error(v, Cat("expected a list of conditions, got ",
                              TypeName(v.node)));
        return false;
      }
      if (v.node.size() == 0) {
        Error(v, "list must not be empty");
        return false;
      }
      const size_t begin = out_.nodes.size();
      out_.nodes.push_back(Node{key == "all" ? Op::kAll : Op::kAny});
      bool ok = true;
      for (size_t i = 0; i < v.node.size(); ++i) {
        const YAML::Node el = v.node[i];
        if (!Condition(Field{el, Cat(v.path, "[", i, "]"),
                             LineOf(el, v.line)})) {
          ok = false;
        }
      }
      Close(begin);
      return ok;
    }
    if (key == "not") {
      const size_t begin = out_.nodes.size();
      out_.nodes.push_back(Node{Op::kNot});
      const bool ok = Condition(v);
      Close(begin);
      return ok;
    }
    if (key == "kind") {
      auto mask = EnumSet(v, kConversationKinds);
      if (!mask) return false;
      node.op = Op::kKindIn;
      node.mask = *mask;
    } else if (key == "member_count") {
      node.op = Op::kMemberCount;
      if (!Range(v, 0, std::numeric_limits<uint32_t>::max(), node)) {
        return false;
      }
    } else if (key == "created_at_ms") {
      node.op = Op::kCreatedAt;
      if (!Range(v, 0, std::numeric_limits<int64_t>::max(), node)) {
        return false;
      }
    } else if (key == "any_participant" || key == "all_participants") {
      node.op = key == "any_participant" ? Op::kAnyParticipant
                                         : Op::kAllParticipants;
      if (!Participant(v, node)) return false;
    } else if (key == "participant_kinds") {
      auto mask = EnumSet(v, kAccountKinds);
      if (!mask) return false;
      node.op = Op::kParticipantKinds;
      node.mask = *mask;
    } else if (key == "region" || key == "organization") {
      // Shorthand for any_participant: {region: ...} / {organization: ...}.
      ParticipantPredicate pp;
      if (key == "region") {
        auto regions = RegionList(v);
        if (!regions) return false;
        pp.regions = *std::move(regions);
      } else {
        auto orgs = StringList(v);
        if (!orgs) return false;
        pp.organizations = *std::move(orgs);
      }
      node.op = Op::kAnyParticipant;
      node.mask = kAllPairs;
      if (!AddPredicate(v, std::move(pp), node)) return false;
    } else if (key == "current_mode") {
      auto mask = EnumSet(v, kModes);
      if (!mask) return false;
      node.op = Op::kCurrentMode;
      node.mask = *mask;
    } else {
      auto b = Bool(v);
      if (!b) return false;
      node.flag = *b;
      if (key == "same_organization") {
        node.op = Op::kSameOrganization;
      } else if (key == "mutual_contacts") {
        node.op = Op::kMutualContacts;
      } else if (key == "new_conversation") {
        node.op = Op::kNewConversation;
      } else {
        node.op = Op::kE2eeEverEnabled;
      }
    }
    out_.nodes.push_back(node);
    return true;
  }

  bool AddPredicate(const Field& f, ParticipantPredicate pp, Node& node) {
    if (out_.ppreds.size() >= std::numeric_limits<uint16_t>::max()) {
      Error(f, "too many participant predicates");
      return false;
    }
    out_.ppreds.push_back(std::move(pp));
    node.ppred = static_cast<uint16_t>(out_.ppreds.size());
    return true;
  }

  bool Participant(const Field& f, Node& node) {
    uint32_t kinds = 0b11110;  // all account kinds (bits 1..4)
    uint32_t ages = 0b1110;    // all age bands (bits 1..3)
    ParticipantPredicate pp;
    bool generic = false;
    bool ok = true;
    bool any = false;
    const bool shaped = ForEachKey(
        f, {"account_kind", "age_band", "region", "organization",
            "has_organization"},
        [&](const std::string& key, const Field& v) {
          any = true;
          if (key == "account_kind") {
            auto m = EnumSet(v, kAccountKinds);
            if (m) kinds = *m; else ok = false;
          } else if (key == "age_band") {
            auto m = EnumSet(v, kAgeBands);
            if (m) ages = *m; else ok = false;
          } else if (key == "region") {
            auto r = RegionList(v);
            if (r) pp.regions = *std::move(r); else ok = false;
            generic = true;
          } else if (key == "organization") {
            auto o = StringList(v);
            if (o) pp.organizations = *std::move(o); else ok = false;
            generic = true;
          } else {
            auto b = Bool(v);
            if (b) pp.has_organization = *b ? 1 : 0; else ok = false;
            generic = true;
          }
        });
    if (!shaped || !ok) return false;
    if (!any) {
      Error(f, "empty participant predicate (expected account_kind, "
               "age_band, region, organization or has_organization)");
      return false;
    }
    node.mask = 0;
    for (int k = 1; k <= 4; ++k) {
      if (!(kinds & (1u << k))) continue;
      for (int a = 1; a <= 3; ++a) {
        if (!(ages & (1u << a))) continue;
        node.mask |= 1u << PairBit(static_cast<AccountKind>(k),
                                   static_cast<AgeBand>(a));
      }
    }
    if (generic) return AddPredicate(f, std::move(pp), node);
    return true;
  }

  // ---- rules ----------------------------------------------------------------
  bool Transport(const Field& f, StaffAccess& access) {
    bool ok = true;
    bool have_retention = false;
    bool have_moderation = false;
    int delay_line = 0;
    std::string delay_path;
    const bool shaped = ForEachKey(
        f,
        {"retention_days", "moderation", "automated_scanning", "lawful_access",
         "notify_access", "notify_after_days"},
        [&](const std::string& key, const Field& v) {
          if (key == "retention_days") {
            have_retention = true;
            if (v.node.IsScalar() && v.node.Scalar() == "unlimited") {
              access.retention_days = kRetainUntilDeleted;
              return;
            }
            if (!IsPlainScalar(v.node)) {
              Error(v, Cat("expected an integer or unlimited, got ",
                                    Describe(v.node)));
              ok = false;
              return;
            }
            auto n = Int(v, 0, kMaxDays);
            if (n) access.retention_days = static_cast<int32_t>(*n);
            else ok = false;
          } else if (key == "moderation") {
            have_moderation = true;
            auto m = Enum(v, kModerations);
            if (m) access.moderation = static_cast<Moderation>(*m);
            else ok = false;
          } else if (key == "automated_scanning" || key == "lawful_access") {
            auto b = Bool(v);
            if (!b) {
              ok = false;
            } else if (key == "automated_scanning") {
              access.automated_scanning = *b;
            } else {
              access.lawful_access = *b;
            }
          } else if (key == "notify_access") {
            auto m = Enum(v, kNotifications);
            if (m) access.notify_participants =
                       static_cast<AccessNotification>(*m);
            else ok = false;
          } else {
            delay_line = v.line;
            delay_path = v.path;
            auto n = Int(v, 1, kMaxDays);
            if (n) access.notify_after_days = static_cast<int32_t>(*n);
            else ok = false;
          }
        });
    if (!shaped || !ok) return false;
    if (!have_retention) {
      Error(f.OwnerLine(), Join(f.path, "retention_days"), "required");
      ok = false;
    }
    if (!have_moderation) {
      Error(f.OwnerLine(), Join(f.path, "moderation"), "required");
      ok = false;
    }
    const bool delayed =
        access.notify_participants == AccessNotification::kAfterDelay;
    if (delayed && delay_line == 0) {
      Error(f.OwnerLine(), Join(f.path, "notify_after_days"),
            "required when notify_access is after_days");
      ok = false;
    } else if (!delayed && delay_line != 0) {
      Error(delay_line, delay_path,
            "only allowed when notify_access is after_days");
      ok = false;
    }
    return ok;
  }

  bool ExistingE2eeBlock(const Field& f, Rule& rule) {
    bool ok = true;
    bool have_action = false;
    int days_line = 0, notice_line = 0;
    std::string days_path, notice_path;
    const bool shaped = ForEachKey(
        f, {"action", "notice_days", "notice"},
        [&](const std::string& key, const Field& v) {
          if (key == "action") {
            have_action = true;
            auto a = Enum(v, kExistingActions);
            if (a) rule.existing = static_cast<ExistingE2ee>(*a);
            else ok = false;
          } else if (key == "notice_days") {
            days_line = v.line;
            days_path = v.path;
            auto n = Int(v, 0, kMaxDays);
            if (n) rule.downgrade_notice_days = static_cast<int32_t>(*n);
            else ok = false;
          } else {
            notice_line = v.line;
            notice_path = v.path;
            auto t = Notice(v, /*allow_date=*/true);
            if (t) rule.downgrade_notice = *std::move(t);
            else ok = false;
          }
        });
    if (!shaped || !ok) return false;
    if (!have_action) {
      Error(f.OwnerLine(), Join(f.path, "action"), "required");
      return false;
    }
    if (rule.existing == ExistingE2ee::kDowngrade) {
      if (days_line == 0) {
        Error(f.OwnerLine(), Join(f.path, "notice_days"),
              "required when action is downgrade");
        ok = false;
      }
    } else {
      if (days_line != 0) {
        Error(days_line, days_path, "only allowed when action is downgrade");
        ok = false;
      }
      if (notice_line != 0) {
        Error(notice_line, notice_path,
              "only allowed when action is downgrade");
        ok = false;
      }
    }
    return ok;
  }

  void ParseRule(const Field& f, size_t index, size_t count,
                 absl::flat_hash_map<std::string, int>& ids) {
    Rule rule;
    rule.line = f.line;
    bool ok = true;
    // Lines of optional fields (0: absent) for cross-field checks.
    int when_line = 0, enable_line = 0, disable_line = 0, transport_line = 0,
        existing_line = 0, locked_line = 0, id_line = 0;
    std::string transitions_path;
    bool have_mode = false, mode_invalid = false, have_reason = false;
    bool enable_given = false;
    const bool shaped = ForEachKey(
        f,
        {"id", "description", "when", "mode", "locked", "transitions",
         "transport", "notice", "reason", "existing_e2ee"},
        [&](const std::string& key, const Field& v) {
          if (key == "id") {
            id_line = v.line;
            auto s = NonEmptyString(v);
            if (!s) {
              ok = false;
              return;
            }
            if (!ValidId(*s)) {
              Error(v, Cat("invalid rule id \"", *s,
                                    "\" (expected lower-case letters, digits, "
                                    "'-', '_' or '.', starting with a letter "
                                    "or digit, at most 64 characters)"));
              ok = false;
              return;
            }
            auto [pos, inserted] = ids.emplace(*s, v.line);
            if (!inserted) {
              Error(v, Cat("duplicate rule id \"", *s,
                                    "\" (first defined at line ", pos->second,
                                    ")"));
              ok = false;
              return;
            }
            rule.id = *std::move(s);
          } else if (key == "description") {
            auto s = String(v);
            if (s) rule.description = *std::move(s); else ok = false;
          } else if (key == "reason") {
            have_reason = true;
            auto s = NonEmptyString(v);
            if (s) rule.reason = *std::move(s); else ok = false;
          } else if (key == "when") {
            when_line = v.line;
            rule.has_condition = true;
            rule.cond_begin = static_cast<uint32_t>(out_.nodes.size());
            if (!Condition(v)) ok = false;
          } else if (key == "mode") {
            auto m = Enum(v, kModes);
            if (m) {
              rule.mode = static_cast<SecurityMode>(*m);
              have_mode = true;
            } else {
              mode_invalid = true;
              ok = false;
            }
          } else if (key == "locked") {
            locked_line = v.line;
            auto b = Bool(v);
            if (b) rule.locked = *b; else ok = false;
          } else if (key == "transitions") {
            transitions_path = v.path;
            ForEachKey(v, {"enable", "disable"},
                       [&](const std::string& tkey, const Field& tv) {
                         if (tkey == "enable") {
                           enable_line = tv.line;
                           enable_given = true;
                           auto c = Enum(tv, kEnableConsents);
                           if (c) rule.enable = static_cast<EnableConsent>(*c);
                           else ok = false;
                         } else {
                           disable_line = tv.line;
                           auto c = Enum(tv, kDisableConsents);
                           if (c) rule.disable =
                                      static_cast<DisableConsent>(*c);
                           else ok = false;
                         }
                       });
            if (!v.node.IsMap()) ok = false;
          } else if (key == "transport") {
            transport_line = v.line;
            if (!Transport(v, rule.access)) ok = false;
          } else if (key == "notice") {
            auto t = Notice(v, /*allow_date=*/false);
            if (t) rule.notice = *std::move(t); else ok = false;
          } else {
            existing_line = v.line;
            if (!ExistingE2eeBlock(v, rule)) ok = false;
          }
        });
    if (!shaped) return;

    const std::string& p = f.path;
    if (id_line == 0) {
      Error(f.line, Join(p, "id"), "required");
      ok = false;
    }
    if (!have_mode && !mode_invalid) {
      Error(f.line, Join(p, "mode"), "required");
      ok = false;
    }
    if (!have_reason) {
      Error(f.line, Join(p, "reason"), "required");
      ok = false;
    }
    // The default rule: last, and matches everything.
    const bool last = index + 1 == count;
    if (id_line != 0 && rule.id == "default") {
      if (!last) {
        Error(id_line, Join(p, "id"),
              "the default rule must be the last rule");
        ok = false;
      }
      if (when_line != 0) {
        Error(when_line, Join(p, "when"),
              "the default rule matches everything and must not have a "
              "condition");
        ok = false;
      }
    } else if (last && id_line != 0) {
      Error(f.line, p,
            Cat("the last rule must be the default rule (id: "
                         "default, no when); got id \"",
                         rule.id, "\""));
      ok = false;
    } else if (!last && id_line != 0 && when_line == 0) {
      Error(f.line, Join(p, "when"),
            "required (only the default rule matches everything)");
      ok = false;
    }
    if (!have_mode) return;

    // Transitions by mode (defaults, then consistency).
    const std::string enable_path = Join(transitions_path, "enable");
    const std::string disable_path = Join(transitions_path, "disable");
    switch (rule.mode) {
      case SecurityMode::kTransport:
        if (rule.enable != EnableConsent::kNobody) {
          Error(enable_line, enable_path,
                "must be nobody when mode is transport (use mode: opt_in to "
                "let participants turn E2EE on)");
          ok = false;
        }
        break;
      case SecurityMode::kOptIn:
        if (!enable_given) {
          rule.enable = EnableConsent::kAnyParticipant;
        } else if (rule.enable == EnableConsent::kNobody) {
          Error(enable_line, enable_path,
                "must be any or all when mode is opt_in (use mode: transport "
                "if nobody may turn E2EE on)");
          ok = false;
        }
        if (locked_line != 0 && rule.locked) {
          Error(locked_line, Join(p, "locked"),
                "an opt_in conversation cannot be locked (participants may "
                "turn E2EE on)");
          ok = false;
        }
        break;
      default:  // e2ee
        if (!enable_given) {
          rule.enable = rule.locked ? EnableConsent::kNobody
                                    : EnableConsent::kAnyParticipant;
        }
        break;
    }
    if (rule.locked) {
      if (enable_given && rule.enable != EnableConsent::kNobody &&
          rule.mode != SecurityMode::kOptIn) {
        Error(enable_line, enable_path,
              "must be nobody when the rule is locked");
        ok = false;
      }
      if (rule.disable != DisableConsent::kNever) {
        Error(disable_line, disable_path,
              "must be never when the rule is locked");
        ok = false;
      }
    }
    // Staff access exists exactly when content can be server-readable.
    const bool readable = rule.mode != SecurityMode::kE2ee ||
                          rule.disable != DisableConsent::kNever;
    if (readable && transport_line == 0) {
      Error(f.line, Join(p, "transport"),
            rule.mode != SecurityMode::kE2ee
                ? Cat("required when mode is ",
                               rule.mode == SecurityMode::kOptIn ? "opt_in"
                                                                 : "transport")
                : std::string("required when E2EE may be turned off "
                              "(transitions.disable is not never)"));
      ok = false;
    } else if (!readable && transport_line != 0) {
      Error(transport_line, Join(p, "transport"),
            "not allowed: content is never server-readable under this rule "
            "(mode e2ee, disable never)");
      ok = false;
    }
    if (existing_line != 0 && rule.mode == SecurityMode::kE2ee) {
      Error(existing_line, Join(p, "existing_e2ee"),
            "only allowed when mode is opt_in or transport (an e2ee rule "
            "never weakens a conversation)");
      ok = false;
    }
    if (ok) out_.rules.push_back(std::move(rule));
  }

  static bool ValidId(std::string_view id) {
    if (id.empty() || id.size() > 64) return false;
    for (size_t i = 0; i < id.size(); ++i) {
      const char c = id[i];
      const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      if (alnum) continue;
      if (i != 0 && (c == '-' || c == '_' || c == '.')) continue;
      return false;
    }
    return true;
  }

  std::string_view file_;
  CompiledPolicy& out_;
  std::vector<std::string> errors_;
};

namespace {

// Records where documents start; ignores everything else.
class DocumentCounter : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

std::vector<std::string> Compiler::Run(std::string_view text) {
  // yaml-cpp 0.7.0 (Debian 12) loops forever in YAML::LoadAll on some inputs
  // (e.g. a lone ","; upstream issue #1040): documents are counted with a
  // bounded loop, and only the first is loaded.
  std::vector<YAML::Node> docs;
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    DocumentCounter counter;
    for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
    }
    if (counter.starts.size() > 1) {
      const YAML::Mark& first = counter.starts[0];
      const YAML::Mark& second = counter.starts[1];
      if (second.pos == first.pos) {
        Error(second.line + 1, "", "invalid YAML: the document cannot be parsed here");
      } else {
        Error(second.line + 1, "", "more than one YAML document (expected exactly one)");
      }
      return errors_;
    }
    docs.push_back(YAML::Load(std::string(text)));
  } catch (const YAML::Exception& e) {
    const int line = e.mark.line >= 0 ? e.mark.line + 1 : 1;
    Error(line, "", Cat("invalid YAML: ", e.msg));
    return errors_;
  } catch (const std::exception& e) {
    Error(1, "", Cat("invalid YAML: ", e.what()));
    return errors_;
  }
  if (docs.empty() || !docs[0].IsDefined() || docs[0].IsNull()) {
    Error(1, "", "empty document (expected a mapping with version and rules)");
    return errors_;
  }
  try {
    const Field root{docs[0], "", LineOf(docs[0], 1)};
    bool have_version = false;
    Field rules_field;
    bool have_rules = false;
    const bool shaped = ForEachKey(
        root, {"version", "name", "description", "rules"},
        [&](const std::string& key, const Field& v) {
          if (key == "version") {
            have_version = true;
            if (IsPlainScalar(v.node) && v.node.Scalar() == "1") return;
            Error(v, Cat("unsupported version ", Describe(v.node),
                                  " (expected 1)"));
          } else if (key == "name") {
            auto s = String(v);
            if (s) out_.name = *std::move(s);
          } else if (key == "description") {
            auto s = String(v);
            if (s) out_.description = *std::move(s);
          } else {
            have_rules = true;
            rules_field = v;
          }
        });
    if (!shaped) return errors_;
    if (!have_version) Error(root.line, "version", "required");
    if (!have_rules) {
      Error(root.line, "rules", "required");
      return errors_;
    }
    if (!rules_field.node.IsSequence()) {
      Error(rules_field, Cat("expected a list of rules, got ",
                                      TypeName(rules_field.node)));
      return errors_;
    }
    const size_t count = rules_field.node.size();
    if (count == 0) {
      Error(rules_field, "at least one rule (the default rule) is required");
      return errors_;
    }
    absl::flat_hash_map<std::string, int> ids;
    for (size_t i = 0; i < count; ++i) {
      const YAML::Node r = rules_field.node[i];
      ParseRule(Field{r, Cat("rules[", i, "]"),
                      LineOf(r, rules_field.line)},
                i, count, ids);
    }
  } catch (const YAML::Exception& e) {
    const int line = e.mark.line >= 0 ? e.mark.line + 1 : 1;
    Error(line, "", Cat("invalid document: ", e.msg));
  } catch (const std::exception& e) {
    Error(1, "", Cat("invalid document: ", e.what()));
  }
  if (errors_.empty() &&
      (out_.rules.empty() || out_.rules.back().id != "default")) {
    Error(1, "rules", "a default rule (id: default) is required");
  }
  return errors_;
}

}  // namespace

std::vector<std::string> CompilePolicy(std::string_view yaml_text,
                                       std::string_view file,
                                       CompiledPolicy& out) {
  out.file = std::string(file);
  Compiler compiler(file, out);
  return compiler.Run(yaml_text);
}

}  // namespace parley::policy::internal
