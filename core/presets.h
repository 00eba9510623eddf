// The policy presets shipped in policy/presets/, compiled into parleyd.
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_CORE_PRESETS_H_
#define PARLEY_CORE_PRESETS_H_

#include <string>
#include <vector>

namespace parley::core {

struct BuiltinPreset {
  const char* name;     // "signal", "messenger-2016", ...
  const char* content;  // the YAML document
};

// Every preset, in a fixed order (generated from policy/presets/*.yaml).
const std::vector<BuiltinPreset>& BuiltinPresets();

// The policy a fresh deployment starts with when no --policy is given:
// opt-in E2EE per 1:1 conversation (Messenger 2016-2023), see
// policy/presets/messenger-2016.yaml.
inline constexpr const char* kDefaultPreset = "messenger-2016";

// The preset named `name`, or nullptr.
const BuiltinPreset* FindPreset(const std::string& name);

}  // namespace parley::core

#endif  // PARLEY_CORE_PRESETS_H_
