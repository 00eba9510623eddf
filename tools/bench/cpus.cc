// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/cpus.h"

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace parley::bench {

std::vector<int> AvailableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

absl::StatusOr<std::vector<int>> ParseCpuList(
    absl::string_view flag, absl::string_view text,
    const std::vector<int>& available) {
  auto bad = [&](absl::string_view part, absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", part, "\" ", why,
                     " (available CPUs: ", FormatCpuList(available), ")"));
  };
  std::vector<int> cpus;
  if (absl::StripAsciiWhitespace(text).empty()) {
    return bad(text, "is empty: give CPU numbers such as 0 or 0-1,3");
  }
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    std::vector<absl::string_view> ends = absl::StrSplit(part, '-');
    int lo = 0;
    int hi = 0;
    if (ends.size() > 2 || !absl::SimpleAtoi(ends[0], &lo) ||
        !absl::SimpleAtoi(ends.back(), &hi) || ends[0].empty() ||
        ends.back().empty() || lo < 0) {
      return bad(part, "is not a CPU number or range (such as 1 or 0-1)");
    }
    if (hi < lo) return bad(part, "is a range that runs backwards");
    for (int c = lo; c <= hi; ++c) {
      if (!std::binary_search(available.begin(), available.end(), c)) {
        return bad(part, absl::StrCat("names CPU ", c,
                                      ", which this process may not use"));
      }
      cpus.push_back(c);
    }
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::string FormatCpuList(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ",";
    absl::StrAppend(&out, cpus[i]);
    if (j > i) absl::StrAppend(&out, "-", cpus[j]);
    i = j + 1;
  }
  return out;
}

absl::StatusOr<cpu_set_t> ToCpuSet(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) {
    if (c < 0 || c >= CPU_SETSIZE) {
      return absl::InvalidArgumentError(
          absl::StrCat("CPU ", c, " out of range"));
    }
    CPU_SET(c, &set);
  }
  return set;
}

absl::Status PinCallingThread(const std::vector<int>& cpus) {
  if (cpus.empty()) return absl::InvalidArgumentError("no CPUs to pin to");
  absl::StatusOr<cpu_set_t> set = ToCpuSet(cpus);
  if (!set.ok()) return set.status();
  if (::sched_setaffinity(0, sizeof(*set), &*set) != 0) {
    return absl::InternalError(absl::StrCat("sched_setaffinity(",
                                            FormatCpuList(cpus),
                                            "): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace parley::bench
