// Process and file-system figures from /proc and the file system.
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TOOLS_BENCH_PROC_H_
#define PARLEY_TOOLS_BENCH_PROC_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace parley::bench {

// utime + stime of `pid` in seconds (/proc/<pid>/stat). pid 0: this process.
absl::StatusOr<double> ProcessCpuSeconds(pid_t pid);

// Counters of a whole process, read at the start and the end of a window.
struct ProcessCounters {
  double cpu_s = 0;          // utime + stime, every thread
  int64_t minor_faults = 0;  // minflt, every thread (/proc/<pid>/stat)
  // Voluntary + involuntary context switches summed over the threads alive
  // at the moment of reading (/proc/<pid>/task/*/status); a thread that
  // exits takes its count with it. -1: not readable.
  int64_t context_switches = -1;
};
// pid 0: this process.
absl::StatusOr<ProcessCounters> ReadProcessCounters(pid_t pid);

struct ProcessMemory {
  int64_t vm_hwm_kb = -1;  // peak resident set
  int64_t vm_rss_kb = -1;
  int64_t threads = -1;
};
// From /proc/<pid>/status. pid 0: this process.
absl::StatusOr<ProcessMemory> ReadProcessMemory(pid_t pid);

// Fields of /proc/<pid>/stat.
struct StatFields {
  int64_t ticks = 0;         // utime + stime, in clock ticks
  int64_t minor_faults = 0;  // minflt
};
// Parses the text of /proc/<pid>/stat (the command name may hold spaces and
// parentheses).
absl::StatusOr<StatFields> ParseStat(const std::string& stat);
// Parses the text of /proc/<pid>/status.
ProcessMemory ParseStatus(const std::string& status);
// voluntary_ctxt_switches + nonvoluntary_ctxt_switches from the text of a
// /proc/<pid>/task/<tid>/status; -1 if either line is missing.
int64_t ParseContextSwitches(const std::string& status);

// Bytes allocated on disk under `path` (like `du -s --block-size=1`).
absl::StatusOr<int64_t> DiskUsage(const std::string& path);

// The first three fields of /proc/loadavg ("1.02 0.80 0.55").
std::string LoadAverage();

// Raises this process's open-file limit to its hard limit (children inherit).
void RaiseFileLimit();

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_PROC_H_
