// Adapts the policy engine to the server's SecurityDecider hook.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Thread-safe: the returned decider holds an immutable Policy.
#ifndef PARLEY_CORE_POLICY_DECIDER_H_
#define PARLEY_CORE_POLICY_DECIDER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/service.h"
#include "policy/policy.h"

namespace parley::core {

// Loads a policy document; its revision is "sha256:" + the first 16 hex
// digits of the SHA-256 of the file's bytes. Errors name file:line:field.
absl::StatusOr<std::shared_ptr<const policy::Policy>> LoadPolicy(const std::string& path);

// Decides the initial security state of new conversations with `p`.
SecurityDecider MakePolicyDecider(std::shared_ptr<const policy::Policy> p);

}  // namespace parley::core

#endif  // PARLEY_CORE_POLICY_DECIDER_H_
