// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/allocator.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace parley::core {

bool TuneAllocator(const char* glibc_tunables, const AllocatorTuning& tuning) {
  if (glibc_tunables != nullptr &&
      std::strstr(glibc_tunables, "glibc.malloc.") != nullptr) {
    return false;
  }
  // mallopt returns 1 on success. A sanitizer's allocator (ASan) takes the
  // call and refuses it: the process runs with that allocator's defaults.
  return mallopt(M_MMAP_THRESHOLD, static_cast<int>(tuning.mmap_threshold)) ==
             1 &&
         mallopt(M_TRIM_THRESHOLD, static_cast<int>(tuning.trim_threshold)) ==
             1 &&
         mallopt(M_TOP_PAD, static_cast<int>(tuning.top_pad)) == 1;
}

}  // namespace parley::core
