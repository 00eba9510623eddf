// Test helper: facts about the test process and its subprocesses.
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TESTS_SUPPORT_TEST_ENV_H_
#define PARLEY_TESTS_SUPPORT_TEST_ENV_H_

#include <sys/types.h>

#include <fstream>
#include <string>

namespace parley::testing {

// True in the AddressSanitizer build (cmake -DPARLEY_SANITIZE=ON): tests
// scale their load down there (ASan is several times slower and its RSS
// includes shadow memory and quarantine).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitizerBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitizerBuild = true;
#else
inline constexpr bool kSanitizerBuild = false;
#endif
#else
inline constexpr bool kSanitizerBuild = false;
#endif

// A field of /proc/<pid>/status in kB (e.g. "VmRSS", "VmHWM"); -1 when the
// process or the field is gone.
inline long ProcStatusKb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      try {
        return std::stol(line.substr(field.size() + 1));
      } catch (...) {
        return -1;
      }
    }
  }
  return -1;
}

}  // namespace parley::testing

#endif  // PARLEY_TESTS_SUPPORT_TEST_ENV_H_
