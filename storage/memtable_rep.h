// SPDX-License-Identifier: GPL-3.0-or-later
// Parley's memtable representation for RocksDB: a skip list of the memtable's
// entries, plugged in through RocksDB's public MemTableRepFactory interface
// (ColumnFamilyOptions::memtable_factory).
//
// Why not RocksDB's own skip list: Debian's librocksdb 7.8 is built with its
// assertions on, and after every insert its InlineSkipList checks the whole
// insert path against its neighbours (two to four key comparisons per level,
// about twelve levels), so even an insert its hint places at once costs 25-45
// comparisons. This one does the same job without the checks, and starts
// each insert from a finger: where the previous insert with the same hint
// went (RocksDB's memtable_insert_with_hint_prefix_extractor) or, without a
// hint, the previous insert of the memtable. An append after the finger
// costs two comparisons. BENCHMARKS.md, nineteenth round.
//
// Contract (what RocksDB requires of a MemTableRep):
// - Threading: inserts come from one thread at a time (the DB must run with
//   DBOptions::allow_concurrent_memtable_write = false; RocksDB refuses to open
//   otherwise, since the factory does not claim concurrent inserts). Reads
//   (Get, iterators) run at any time, without locks, beside the writer: a node
//   is fully written before it is published with a release store.
// - Memory: entries, nodes and fingers come from the memtable's arena and
//   live as long as the memtable; nothing is freed one by one. Iterators come
//   from the arena RocksDB passes, or the heap when it passes none.
// - Entries are never removed or changed once inserted (RocksDB's memtables
//   only grow); duplicate (key, sequence) pairs are not detected
//   (CanHandleDuplicatedKey() is false, as RocksDB expects by default).
// - Errors: none at run time. The code reads two RocksDB internals that the
//   public interface leaves opaque (the layout of LookupKey and of the
//   allocator behind Arena); the build checks the RocksDB version they were
//   read from and fails on any other, so an upgrade has to look at them again.
#ifndef PARLEY_STORAGE_MEMTABLE_REP_H_
#define PARLEY_STORAGE_MEMTABLE_REP_H_

#include <memory>

#include "rocksdb/memtablerep.h"

namespace parley::storage {

// A factory for ColumnFamilyOptions::memtable_factory. Thread-safe; one
// factory may serve every column family.
std::shared_ptr<rocksdb::MemTableRepFactory> NewFingerSkipListFactory();

}  // namespace parley::storage

#endif  // PARLEY_STORAGE_MEMTABLE_REP_H_
