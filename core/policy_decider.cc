// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/policy_decider.h"

#include "absl/strings/escaping.h"
#include "core/ids.h"
#include "core/status_macros.h"
#include "core/tls.h"

namespace parley::core {

absl::StatusOr<std::shared_ptr<const policy::Policy>> LoadPolicy(const std::string& path) {
  PARLEY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::string revision = "sha256:" + absl::BytesToHexString(Sha256(text)).substr(0, 16);
  PARLEY_ASSIGN_OR_RETURN(policy::Policy p, policy::ParsePolicy(text, path, revision));
  return std::make_shared<const policy::Policy>(std::move(p));
}

SecurityDecider MakePolicyDecider(std::shared_ptr<const policy::Policy> p) {
  return [p](const storage::ConversationRecord& conv, const std::vector<storage::AccountRecord>& members,
             int64_t now_ms) {
    policy::Facts f;
    f.kind = static_cast<policy::ConversationKind>(conv.kind);
    f.member_count = static_cast<uint32_t>(conv.members.size());
    for (const auto& m : members) {
      policy::ParticipantFacts pf;
      pf.account_kind = static_cast<policy::AccountKind>(m.kind);
      pf.age_band = static_cast<policy::AgeBand>(m.age_band);
      pf.region_code = m.region_code;
      pf.organization = m.organization;
      f.participants.push_back(std::move(pf));
    }
    f.now_ms = now_ms;
    f.created_at_ms = conv.created_at_ms;
    policy::Decision d = policy::Decide(*p, f);
    storage::SecurityStateRecord s;
    s.mode = static_cast<int>(d.mode);
    s.epoch = 1;
    s.policy_revision = std::string(d.policy_revision);
    s.rule_id = std::string(d.rule_id);
    s.reason = std::string(d.reason);
    s.effective_at_ms = now_ms;
    s.e2ee_ever_enabled = d.mode == policy::SecurityMode::kE2ee;
    s.locked = d.locked;
    return s;
  };
}

}  // namespace parley::core
