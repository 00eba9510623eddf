// A search of what a stopped server left on disk, for tests that prove a
// string is (or is not) stored: every file as raw bytes, and every record of
// every RocksDB database among them read back decoded.
//
// Why both: RocksDB compresses table blocks, so a string the server did store
// may not appear in any file's bytes (a search for it would miss it, and a
// test that a secret is absent would pass for the wrong reason). The records
// read back through RocksDB are what the server stored, whatever the files'
// encoding.
//
// Contract: the databases must be closed (the server stopped); one that
// cannot be opened read-only is reported with ADD_FAILURE and scanned as
// files only. Test-only: everything is read into memory (test data
// directories hold a few megabytes).
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TESTS_SUPPORT_DATA_SCAN_H_
#define PARLEY_TESTS_SUPPORT_DATA_SCAN_H_

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/db.h"

namespace parley::testing {

class DataScan {
 public:
  // Reads every regular file under each of `paths` (a directory, searched
  // recursively, or a single file), and every record of every RocksDB
  // database found there (a directory holding a CURRENT file).
  static DataScan Read(const std::vector<std::string>& paths) {
    DataScan scan;
    std::vector<std::string> databases;
    for (const std::string& p : paths) {
      if (std::filesystem::is_regular_file(p)) {
        scan.AddFile(p);
        continue;
      }
      if (!std::filesystem::is_directory(p)) {
        ADD_FAILURE() << "data scan: " << p << " is neither file nor directory";
        continue;
      }
      if (std::filesystem::exists(std::filesystem::path(p) / "CURRENT")) {
        databases.push_back(p);
      }
      for (const auto& e : std::filesystem::recursive_directory_iterator(p)) {
        if (e.is_regular_file()) {
          scan.AddFile(e.path().string());
        } else if (e.is_directory() &&
                   std::filesystem::exists(e.path() / "CURRENT")) {
          databases.push_back(e.path().string());
        }
      }
    }
    // After the files: opening a database may add or rotate its info log.
    for (const std::string& db : databases) scan.AddDatabase(db);
    return scan;
  }

  // Where `needle` is: file paths (raw bytes), and "records of <database>
  // (column family <name>)" for records whose key or value holds it.
  std::vector<std::string> WhereIs(const std::string& needle) const {
    std::vector<std::string> hits = FilesHolding(needle);
    for (std::string& r : RecordsHolding(needle)) hits.push_back(std::move(r));
    return hits;
  }
  // Only the files whose raw bytes hold `needle`.
  std::vector<std::string> FilesHolding(const std::string& needle) const {
    return Holding(files_, needle);
  }
  // Only the column families whose decoded records hold `needle`.
  std::vector<std::string> RecordsHolding(const std::string& needle) const {
    return Holding(records_, needle);
  }

  size_t files() const { return files_.size(); }
  uintmax_t file_bytes() const { return file_bytes_; }
  size_t records() const { return record_count_; }
  size_t databases() const { return databases_; }

 private:
  static std::vector<std::string> Holding(
      const std::vector<std::pair<std::string, std::string>>& contents,
      const std::string& needle) {
    std::vector<std::string> hits;
    for (const auto& [name, content] : contents) {
      if (content.find(needle) != std::string::npos) hits.push_back(name);
    }
    return hits;
  }

  void AddFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    files_.emplace_back(path, ss.str());
    file_bytes_ += files_.back().second.size();
  }

  // Each column family's records, as key '\0' value '\n' concatenated.
  void AddDatabase(const std::string& path) {
    rocksdb::Options opts;
    std::vector<std::string> names;
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(opts, path, &names);
    if (!s.ok()) {
      ADD_FAILURE() << "data scan: cannot list the column families of " << path
                    << ": " << s.ToString();
      return;
    }
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const std::string& n : names) {
      cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    s = rocksdb::DB::OpenForReadOnly(opts, path, cfs, &handles, &raw);
    if (!s.ok()) {
      ADD_FAILURE() << "data scan: cannot open " << path
                    << " read-only (is the server stopped?): " << s.ToString();
      return;
    }
    std::unique_ptr<rocksdb::DB> db(raw);
    ++databases_;
    for (size_t i = 0; i < handles.size(); ++i) {
      std::string all;
      std::unique_ptr<rocksdb::Iterator> it(
          db->NewIterator(rocksdb::ReadOptions(), handles[i]));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        ++record_count_;
        all.append(it->key().data(), it->key().size());
        all.push_back('\0');
        all.append(it->value().data(), it->value().size());
        all.push_back('\n');
      }
      if (!it->status().ok()) {
        ADD_FAILURE() << "data scan: reading " << path << " column family "
                      << names[i] << ": " << it->status().ToString();
      }
      records_.emplace_back(
          "records of " + path + " (column family " + names[i] + ")",
          std::move(all));
    }
    for (rocksdb::ColumnFamilyHandle* h : handles) {
      db->DestroyColumnFamilyHandle(h);
    }
  }

  std::vector<std::pair<std::string, std::string>> files_;    // path, bytes
  std::vector<std::pair<std::string, std::string>> records_;  // label, records
  uintmax_t file_bytes_ = 0;
  size_t record_count_ = 0;
  size_t databases_ = 0;
};

}  // namespace parley::testing

#endif  // PARLEY_TESTS_SUPPORT_DATA_SCAN_H_
