// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/proc.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace parley::bench {
namespace {

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ProcPath(pid_t pid, const char* file) {
  return pid == 0 ? absl::StrCat("/proc/self/", file)
                  : absl::StrCat("/proc/", pid, "/", file);
}

}  // namespace

absl::StatusOr<StatFields> ParseStat(const std::string& stat) {
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) {
    return absl::InvalidArgumentError("stat: no command name");
  }
  // After ") ": field 3 (state) is index 0, so minflt (10) is index 7 and
  // utime (14) index 11.
  std::vector<absl::string_view> f = absl::StrSplit(
      absl::string_view(stat).substr(close + 1), ' ', absl::SkipEmpty());
  int64_t utime = 0, stime = 0;
  if (f.size() < 13 || !absl::SimpleAtoi(f[11], &utime) ||
      !absl::SimpleAtoi(f[12], &stime)) {
    return absl::InvalidArgumentError("stat: malformed utime/stime");
  }
  StatFields out;
  out.ticks = utime + stime;
  if (!absl::SimpleAtoi(f[7], &out.minor_faults)) {
    return absl::InvalidArgumentError("stat: malformed minflt");
  }
  return out;
}

int64_t ParseContextSwitches(const std::string& status) {
  int64_t voluntary = -1, involuntary = -1;
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    std::vector<absl::string_view> kv =
        absl::StrSplit(line, absl::ByAnyChar(": \t"), absl::SkipEmpty());
    if (kv.size() < 2) continue;
    if (kv[0] == "voluntary_ctxt_switches") {
      if (!absl::SimpleAtoi(kv[1], &voluntary)) return -1;
    } else if (kv[0] == "nonvoluntary_ctxt_switches") {
      if (!absl::SimpleAtoi(kv[1], &involuntary)) return -1;
    }
  }
  if (voluntary < 0 || involuntary < 0) return -1;
  return voluntary + involuntary;
}

ProcessMemory ParseStatus(const std::string& status) {
  ProcessMemory m;
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    std::vector<absl::string_view> kv =
        absl::StrSplit(line, absl::ByAnyChar(": \t"), absl::SkipEmpty());
    if (kv.size() < 2) continue;
    int64_t v = 0;
    if (!absl::SimpleAtoi(kv[1], &v)) continue;
    if (kv[0] == "VmHWM") m.vm_hwm_kb = v;
    if (kv[0] == "VmRSS") m.vm_rss_kb = v;
    if (kv[0] == "Threads") m.threads = v;
  }
  return m;
}

namespace {

absl::StatusOr<StatFields> ReadStat(pid_t pid) {
  auto text = ReadAll(ProcPath(pid, "stat"));
  if (!text.ok()) return text.status();
  return ParseStat(*text);
}

double TicksToSeconds(int64_t ticks) {
  return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

absl::StatusOr<double> ProcessCpuSeconds(pid_t pid) {
  auto stat = ReadStat(pid);
  if (!stat.ok()) return stat.status();
  return TicksToSeconds(stat->ticks);
}

absl::StatusOr<ProcessCounters> ReadProcessCounters(pid_t pid) {
  auto stat = ReadStat(pid);
  if (!stat.ok()) return stat.status();
  ProcessCounters c;
  c.cpu_s = TicksToSeconds(stat->ticks);
  c.minor_faults = stat->minor_faults;
  std::error_code ec;
  int64_t switches = 0;
  bool any = false;
  for (auto it = std::filesystem::directory_iterator(ProcPath(pid, "task"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    auto status = ReadAll((it->path() / "status").string());
    if (!status.ok()) continue;  // the thread exited meanwhile
    const int64_t n = ParseContextSwitches(*status);
    if (n < 0) continue;
    switches += n;
    any = true;
  }
  if (!ec && any) c.context_switches = switches;
  return c;
}

absl::StatusOr<ProcessMemory> ReadProcessMemory(pid_t pid) {
  auto text = ReadAll(ProcPath(pid, "status"));
  if (!text.ok()) return text.status();
  return ParseStatus(*text);
}

absl::StatusOr<int64_t> DiskUsage(const std::string& path) {
  std::error_code ec;
  int64_t total = 0;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("cannot stat ", path));
  }
  total += static_cast<int64_t>(st.st_blocks) * 512;
  for (auto it = std::filesystem::recursive_directory_iterator(
           path, std::filesystem::directory_options::skip_permission_denied,
           ec);
       !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0) {
      total += static_cast<int64_t>(st.st_blocks) * 512;
    }
  }
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("du ", path, ": ", ec.message()));
  return total;
}

std::string LoadAverage() {
  auto text = ReadAll("/proc/loadavg");
  if (!text.ok()) return "?";
  std::vector<absl::string_view> f =
      absl::StrSplit(*text, ' ', absl::SkipEmpty());
  if (f.size() < 3) return "?";
  return absl::StrCat(f[0], " ", f[1], " ", f[2]);
}

void RaiseFileLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace parley::bench
