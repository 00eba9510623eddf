// RocksDB backend of the Parley storage interfaces.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Threading: the returned Storage is safe for concurrent use. Ownership: the
// caller owns the Storage; destroying it closes the database.
#ifndef PARLEY_STORAGE_ROCKSDB_STORAGE_H_
#define PARLEY_STORAGE_ROCKSDB_STORAGE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "storage/storage.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace parley::storage {

struct RocksDbOptions {
  // Directory of the database; created (with parents) if missing.
  std::string path;
  // false (default): every write goes to the write-ahead log before it is
  // acknowledged, so acknowledged writes survive kill -9 of the process but
  // may be lost on power failure or kernel crash.
  // true: every write is fsync'ed before it is acknowledged (power-loss
  // durable). Appends are group-committed: written without fsync under
  // their locks, then acknowledged once a shared SyncWAL covers them (one
  // fsync for every append waiting at that moment); other writes fsync
  // themselves. A message may be delivered to a reader shortly before it is
  // durable; its sender is only answered once it is. See BENCHMARKS.md.
  bool sync = false;
  // Without `sync`: true (default): a Send's append (AppendRequest::
  // defer_durability) leaves its write-ahead-log record in RocksDB's buffer,
  // and Storage::WhenDurable writes the buffer to the log file once for every
  // append waiting at that moment, then calls back from the store's
  // committer thread (one write(2) per batch instead of one per Send:
  // BENCHMARKS.md, eleventh round). The guarantee is the same as false's:
  // nothing is acknowledged or readable through ReadQueue / ReadHistory
  // before its record is in the log file (readers write the buffer out
  // before they return), so acknowledged and delivered messages survive
  // kill -9. Every other write is in the log file when it returns. Disk
  // full: a failed log write fails the waiting Sends (RESOURCE_EXHAUSTED)
  // and every later log write until the store has resumed on a new log
  // (after space is freed); readers still return what they read then, and
  // the records whose log write failed reach a table file when the store
  // resumes (lost only if the process dies before).
  // false: every write goes to the log file before it returns.
  // Ignored with `sync` (appends are group-committed by SyncWAL instead).
  bool batch_wal_writes = true;
  // Size of the block cache shared by all column families, in bytes.
  size_t block_cache_bytes = 64 << 20;
  // Memtable size per column family, in bytes.
  size_t write_buffer_bytes = 32 << 20;
  // Memtables use Parley's skip list (storage/memtable_rep.h), whose inserts
  // skip the assertion checks Debian's RocksDB build runs on every insert into
  // its own (storage_bench: acks 2.2x, ReadQueue+Ack 1.3x faster; BENCHMARKS.md
  // nineteenth round); it also turns RocksDB's concurrent memtable writes off,
  // which it does not support. false: RocksDB's own skip list, as before.
  // Memory only: either choice opens a database written under the other.
  bool finger_skip_list = true;
  // The file system RocksDB uses; nullptr (default): rocksdb::Env::Default().
  // For tests that inject file errors (e.g. a full disk). Not owned; must
  // outlive the Storage.
  rocksdb::Env* env = nullptr;
};

// Opens (creating if needed) the database at options.path.
absl::StatusOr<std::unique_ptr<Storage>> OpenRocksDbStorage(
    const RocksDbOptions& options);

}  // namespace parley::storage

#endif  // PARLEY_STORAGE_ROCKSDB_STORAGE_H_
