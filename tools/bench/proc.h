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

struct ProcessMemory {
  int64_t vm_hwm_kb = -1;  // peak resident set
  int64_t vm_rss_kb = -1;
  int64_t threads = -1;
};
// From /proc/<pid>/status. pid 0: this process.
absl::StatusOr<ProcessMemory> ReadProcessMemory(pid_t pid);

// Parses the text of /proc/<pid>/stat (the command name may hold spaces and
// parentheses); returns utime + stime in clock ticks.
absl::StatusOr<int64_t> ParseStatTicks(const std::string& stat);
// Parses the text of /proc/<pid>/status.
ProcessMemory ParseStatus(const std::string& status);

// Bytes allocated on disk under `path` (like `du -s --block-size=1`).
absl::StatusOr<int64_t> DiskUsage(const std::string& path);

// The first three fields of /proc/loadavg ("1.02 0.80 0.55").
std::string LoadAverage();

// Raises this process's open-file limit to its hard limit (children inherit).
void RaiseFileLimit();

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_PROC_H_
