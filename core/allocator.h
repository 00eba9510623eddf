// Allocator settings for a long-running server process (glibc malloc).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Why: RocksDB fills each new memtable into freshly allocated 4 MB arena
// blocks and frees them when the memtable is flushed. With glibc's defaults
// the freed memory at the top of a heap is given back to the kernel at once
// (trim threshold 128 KB, adjusted upwards only while no threshold was set),
// so every page of the next memtable is faulted in again: under a 1:1 load
// that was 300+ minor page faults per 1,000 deliveries and about 4% of
// parleyd's CPU, much of it in the hypervisor on this project's VM
// (BENCHMARKS.md, eleventh round). Keeping freed memory mapped for reuse
// removes most of them; the price is that the process keeps its heap's
// high-water mark (RSS does not shrink after a burst).
//
// Contract:
// - Call once at the start of main(), before threads exist. Process-wide:
//   for binaries (parleyd), never for libraries or from a Server.
// - The operator's glibc tunables win: if `glibc_tunables` (the value of the
//   GLIBC_TUNABLES environment variable, may be null) names any
//   `glibc.malloc.` tunable, nothing is changed.
// - Not thread-safe (mallopt is process-wide).
#ifndef PARLEY_CORE_ALLOCATOR_H_
#define PARLEY_CORE_ALLOCATOR_H_

#include <cstddef>

namespace parley::core {

struct AllocatorTuning {
  // Allocations below this come from the heap (and are reused after free)
  // instead of their own mmap: 32 MB, glibc's upper bound for it, so
  // RocksDB's arena blocks (write_buffer_size / 8) stay in the heap.
  size_t mmap_threshold = size_t{32} << 20;
  // Free memory at the top of a heap is returned to the kernel only beyond
  // this: 256 MB, above parleyd's memtable budget.
  size_t trim_threshold = size_t{256} << 20;
  // Extra memory asked of the kernel whenever a heap grows (fewer growth
  // system calls): 16 MB.
  size_t top_pad = size_t{16} << 20;
};

// Applies `tuning` with mallopt. Returns true when applied; false, changing
// nothing, when `glibc_tunables` names a glibc.malloc tunable, and false
// when the allocator refuses (a sanitizer's allocator in a test build).
bool TuneAllocator(const char* glibc_tunables,
                   const AllocatorTuning& tuning = AllocatorTuning());

}  // namespace parley::core

#endif  // PARLEY_CORE_ALLOCATOR_H_
