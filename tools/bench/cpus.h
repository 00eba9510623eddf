// CPU pinning for parley-bench and the servers it spawns (Linux affinity).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// On a small machine the load generator and the server compete for the same
// vCPUs; pinning each to its own (--bench-cpus, --server-cpus) measures the
// server without the generator's threads queued beside it (BENCHMARKS.md,
// sixteenth round). CPU numbers are the kernel's, as in taskset -c.
//
// Pure functions except AvailableCpus and PinCallingThread, which call
// sched_getaffinity / sched_setaffinity for the calling thread only (threads
// it starts afterwards inherit the mask). Thread-safe.
#ifndef PARLEY_TOOLS_BENCH_CPUS_H_
#define PARLEY_TOOLS_BENCH_CPUS_H_

#include <sched.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::bench {

// The CPUs the calling thread may run on, ascending.
std::vector<int> AvailableCpus();

// Parses "0", "1,3", "0-1" or "0-1,3" into ascending CPU numbers without
// repeats. Every CPU must be in `available`; an error names `flag`, the bad
// part and the available CPUs.
absl::StatusOr<std::vector<int>> ParseCpuList(
    absl::string_view flag, absl::string_view text,
    const std::vector<int>& available);

// "0-1,3" for {0, 1, 3}; "" for none.
std::string FormatCpuList(const std::vector<int>& cpus);

// The kernel's set of `cpus` (each below CPU_SETSIZE).
absl::StatusOr<cpu_set_t> ToCpuSet(const std::vector<int>& cpus);

// Restricts the calling thread (and the threads it starts afterwards) to
// `cpus` (non-empty, each below CPU_SETSIZE).
absl::Status PinCallingThread(const std::vector<int>& cpus);

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_CPUS_H_
