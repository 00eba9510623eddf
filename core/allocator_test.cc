// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/allocator.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

namespace parley::core {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizerAllocator = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitizerAllocator = true;
#else
constexpr bool kSanitizerAllocator = false;
#endif
#else
constexpr bool kSanitizerAllocator = false;
#endif

TEST(AllocatorTest, OperatorsMallocTunablesWin) {
  EXPECT_FALSE(TuneAllocator("glibc.malloc.trim_threshold=131072"));
  EXPECT_FALSE(TuneAllocator("glibc.rtld.nns=2:glibc.malloc.arena_max=1"));
}

// A freed 4 MB block (the size of a RocksDB memtable arena block) stays in
// the heap for the next allocation instead of going back to the kernel.
TEST(AllocatorTest, FreedArenaSizedBlocksStayMappedForReuse) {
  if (kSanitizerAllocator) GTEST_SKIP() << "the sanitizer's allocator ignores mallopt";
  ASSERT_TRUE(TuneAllocator(nullptr));
  ASSERT_TRUE(TuneAllocator("glibc.rtld.nns=2"));  // other tunables: applied
  constexpr size_t kBlock = size_t{4} << 20;
  // This test's thread allocates from glibc's main arena, whose free space at
  // the top of the heap is what mallinfo2's keepcost reports.
  char* block = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  const size_t mmapped_before = mallinfo2().hblkhd;
  std::free(block);
  const struct mallinfo2 after = mallinfo2();
  // Not an mmap of its own (hblkhd did not drop by 4 MB) and kept, not
  // trimmed: the top of the heap holds at least the block.
  EXPECT_LT(mmapped_before, kBlock);
  EXPECT_GE(after.keepcost, kBlock);
}

}  // namespace
}  // namespace parley::core
