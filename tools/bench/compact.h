// Offline compaction of a stopped server's RocksDB store (for bytes on disk).
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TOOLS_BENCH_COMPACT_H_
#define PARLEY_TOOLS_BENCH_COMPACT_H_

#include <string>

#include "absl/status/status.h"

namespace parley::bench {

// Opens the RocksDB database at `path` (every column family, default
// options: the store uses no custom comparator or merge operator), compacts
// every column family down to the bottommost level, and closes it. The
// server must not be running.
absl::Status CompactRocksDb(const std::string& path);

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_COMPACT_H_
