// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/compact.h"

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"

namespace parley::bench {

absl::Status CompactRocksDb(const std::string& path) {
  std::vector<std::string> names;
  rocksdb::DBOptions db_opts;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_opts, path, &names);
  if (!s.ok())
    return absl::UnavailableError(
        absl::StrCat("compact ", path, ": ", s.ToString()));
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const auto& n : names)
    descs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  s = rocksdb::DB::Open(db_opts, path, descs, &handles, &raw);
  if (!s.ok())
    return absl::UnavailableError(
        absl::StrCat("compact ", path, ": ", s.ToString()));
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::CompactRangeOptions co;
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  absl::Status result;
  for (auto* h : handles) {
    s = db->CompactRange(co, h, nullptr, nullptr);
    if (!s.ok() && result.ok()) {
      result = absl::UnavailableError(
          absl::StrCat("compact ", path, ": ", s.ToString()));
    }
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  s = db->Close();
  if (!s.ok() && result.ok()) result = absl::UnavailableError(s.ToString());
  return result;
}

}  // namespace parley::bench
