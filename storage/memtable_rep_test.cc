// SPDX-License-Identifier: GPL-3.0-or-later
// Tests of Parley's memtable representation (memtable_rep.h) through a real
// RocksDB database whose column family uses it: every read path RocksDB has
// (Get, forward and reverse iteration, Seek, SeekForPrev) against a
// std::map model, inserts with and without hints, and readers running while
// one writer inserts.
#include "storage/memtable_rep.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/write_batch.h"

namespace parley::storage {
namespace {

// Hint prefix: everything before the key's last 8 bytes (like the queues').
class Last8Hint final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "test.Last8Hint"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), key.size() - 8);
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return key.size() > 8;
  }
};

std::string BE64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (56 - 8 * i));
  return s;
}

class MemtableRepTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string name =
        ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    path_ = (std::filesystem::temp_directory_path() /
             absl::StrCat("parley_memtable_rep_test_", ::getpid(), "_", name))
                .string();
    std::filesystem::remove_all(path_);
    rocksdb::Options o;
    o.create_if_missing = true;
    o.allow_concurrent_memtable_write = false;
    o.memtable_factory = NewFingerSkipListFactory();
    o.write_buffer_size = 256 << 20;  // everything stays in the memtable
    if (GetParam()) {
      o.memtable_insert_with_hint_prefix_extractor =
          std::make_shared<Last8Hint>();
    }
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(o, path_, &db);
    ASSERT_TRUE(s.ok()) << s.ToString();
    db_.reset(db);
  }
  void TearDown() override {
    db_.reset();
    std::filesystem::remove_all(path_);
  }

  // Checks every read path against `model`.
  void CheckAgainst(const std::map<std::string, std::string>& model,
                    std::mt19937_64& rng) {
    // Forward and reverse scans.
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions()));
    auto m = model.begin();
    for (it->SeekToFirst(); it->Valid(); it->Next(), ++m) {
      ASSERT_NE(m, model.end());
      ASSERT_EQ(it->key().ToString(), m->first);
      ASSERT_EQ(it->value().ToString(), m->second);
    }
    ASSERT_TRUE(it->status().ok());
    ASSERT_EQ(m, model.end());
    auto r = model.rbegin();
    for (it->SeekToLast(); it->Valid(); it->Prev(), ++r) {
      ASSERT_NE(r, model.rend());
      ASSERT_EQ(it->key().ToString(), r->first);
    }
    ASSERT_EQ(r, model.rend());
    // Point reads of present and absent keys.
    for (const auto& [k, v] : model) {
      std::string got;
      ASSERT_TRUE(db_->Get(rocksdb::ReadOptions(), k, &got).ok()) << k;
      ASSERT_EQ(got, v);
    }
    std::string got;
    EXPECT_TRUE(
        db_->Get(rocksdb::ReadOptions(), "absent-key", &got).IsNotFound());
    // Seek and SeekForPrev to random targets.
    for (int i = 0; i < 200; ++i) {
      std::string target = absl::StrCat("p", rng() % 9);
      target += BE64(rng() % 700);
      it->Seek(target);
      auto lb = model.lower_bound(target);
      if (lb == model.end()) {
        ASSERT_FALSE(it->Valid()) << "Seek past the end";
      } else {
        ASSERT_TRUE(it->Valid());
        ASSERT_EQ(it->key().ToString(), lb->first);
      }
      it->SeekForPrev(target);
      auto ub = model.upper_bound(target);
      if (ub == model.begin()) {
        ASSERT_FALSE(it->Valid()) << "SeekForPrev before the start";
      } else {
        ASSERT_TRUE(it->Valid());
        ASSERT_EQ(it->key().ToString(), std::prev(ub)->first);
      }
    }
  }

  std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
};

// Appends per prefix (the pattern the hints are for), overwrites of one key
// (new versions sort before old ones), random keys, deletes, SingleDeletes
// behind the tail and range deletions, all checked against a model as they
// go.
TEST_P(MemtableRepTest, MatchesAModelOnEveryReadPath) {
  std::mt19937_64 rng(7);
  std::map<std::string, std::string> model;
  uint64_t next_id[8] = {};
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 2000; ++i) {
      rocksdb::WriteBatch b;
      const int p = static_cast<int>(rng() % 8);
      const uint64_t op = rng() % 10;
      std::string key = absl::StrCat("p", p);
      if (op < 6) {  // append
        key += BE64(++next_id[p]);
      } else if (op < 7) {  // the same key again
        key += BE64(0);
      } else {  // random, possibly behind the tail
        key += BE64(rng() % (next_id[p] + 50));
      }
      if (i % 500 == 499) {
        // A range deletion: RocksDB hands its hint slot for this prefix to
        // the range-deletion table too.
        const std::string from = absl::StrCat("p", p) + BE64(next_id[p] / 2);
        const std::string to = absl::StrCat("p", p) + BE64(next_id[p] / 2 + 20);
        b.DeleteRange(from, to);
        model.erase(model.lower_bound(from), model.lower_bound(to));
        ASSERT_TRUE(db_->Write(wo, &b).ok());
        continue;
      }
      if (op == 9 || (op == 8 && model.count(key))) {
        if (op == 9) {
          b.Delete(key);
        } else {
          b.SingleDelete(key);  // only over a single Put
          if (!model.count(key)) continue;
        }
        model.erase(key);
      } else {
        const std::string value = absl::StrCat("v", round, "-", i);
        b.Put(key, value);
        model[key] = value;
      }
      ASSERT_TRUE(db_->Write(wo, &b).ok());
    }
    CheckAgainst(model, rng);
  }
  EXPECT_GT(model.size(), 4000u);
}

// One writer appends while readers iterate and Get: every scan is sorted and
// holds only written keys, and every key acknowledged before a Get starts is
// found. Bounded by count.
TEST_P(MemtableRepTest, ReadersRunBesideTheWriter) {
  constexpr uint64_t kKeys = 20000;
  std::atomic<uint64_t> written{0};
  std::atomic<bool> failed{false};
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  auto key_of = [](uint64_t i) {
    // Four interleaved prefixes, appended in order within each.
    return absl::StrCat("q", i % 4) + BE64(i / 4);
  };
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      std::mt19937_64 rng(r);
      for (int pass = 0; pass < 200 && written.load() < kKeys; ++pass) {
        const uint64_t before = written.load(std::memory_order_acquire);
        std::unique_ptr<rocksdb::Iterator> it(
            db_->NewIterator(rocksdb::ReadOptions()));
        std::string prev;
        uint64_t seen = 0;
        for (it->SeekToFirst(); it->Valid(); it->Next()) {
          const std::string k = it->key().ToString();
          if (!prev.empty() && !(prev < k)) failed = true;
          if (it->value().ToString() != "v" + k) failed = true;
          prev = k;
          ++seen;
        }
        if (seen < before) failed = true;  // a snapshot holds at least these
        if (before > 0) {
          const std::string k = key_of(rng() % before);
          std::string v;
          if (!db_->Get(rocksdb::ReadOptions(), k, &v).ok() || v != "v" + k) {
            failed = true;
          }
        }
      }
    });
  }
  for (uint64_t i = 0; i < kKeys; ++i) {
    const std::string k = key_of(i);
    ASSERT_TRUE(db_->Put(wo, k, "v" + k).ok());
    written.store(i + 1, std::memory_order_release);
  }
  for (auto& t : readers) t.join();
  EXPECT_FALSE(failed.load());
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  uint64_t n = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
  EXPECT_EQ(n, kKeys);
}

INSTANTIATE_TEST_SUITE_P(HintAndNoHint, MemtableRepTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? std::string("WithHint")
                                             : std::string("WithoutHint");
                         });

}  // namespace
}  // namespace parley::storage
