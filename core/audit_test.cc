// Unit tests of the hash-chained audit log. The store here is a plain vector
// (the chain logic is under test; the RocksDB AuditStore has its own tests),
// which lets a test tamper with stored records directly.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/audit.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::core {
namespace {

using ::testing::HasSubstr;

class VectorAuditStore : public storage::AuditStore {
 public:
  absl::Status AppendAudit(const storage::AuditRecord& r) override {
    if (r.seq != records.size() + 1) return absl::FailedPreconditionError("seq");
    records.push_back(r);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<storage::AuditRecord>> ReadAudit(uint64_t after, size_t limit) override {
    std::vector<storage::AuditRecord> out;
    for (const auto& r : records) {
      if (r.seq > after && out.size() < limit) out.push_back(r);
    }
    return out;
  }
  absl::StatusOr<storage::AuditRecord> LastAudit() override {
    if (records.empty()) return absl::NotFoundError("empty");
    return records.back();
  }
  std::vector<storage::AuditRecord> records;
};

class AuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto l = AuditLog::Open(&store_, [this] { return ++now_; });
    ASSERT_TRUE(l.ok());
    log_ = std::move(*l);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(log_->Append("operator:ops (t_1)", "policy.apply", "r" + std::to_string(i), "{}").ok());
    }
  }
  VectorAuditStore store_;
  int64_t now_ = 1000;
  std::unique_ptr<AuditLog> log_;
};

TEST_F(AuditTest, AppendsAChain) {
  ASSERT_EQ(store_.records.size(), 5u);
  EXPECT_TRUE(store_.records[0].prev_hash.empty());
  for (size_t i = 1; i < 5; ++i) {
    EXPECT_EQ(store_.records[i].seq, i + 1);
    EXPECT_EQ(store_.records[i].prev_hash, store_.records[i - 1].hash);
    EXPECT_EQ(store_.records[i].hash.size(), 32u);
  }
  auto v = log_->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok);
  EXPECT_EQ(v->records, 5u);
}

TEST_F(AuditTest, ContinuesTheChainAfterReopen) {
  auto l = AuditLog::Open(&store_, [] { return int64_t{5000}; });
  ASSERT_TRUE(l.ok());
  auto seq = (*l)->Append("parleyd", "x", "", "{}");
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 6u);
  EXPECT_EQ(store_.records[5].prev_hash, store_.records[4].hash);
  EXPECT_TRUE((*l)->Verify()->ok);
}

TEST_F(AuditTest, VerifyFindsAChangedRecord) {
  store_.records[2].target = "r99";
  auto v = log_->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_seq, 3u);
  EXPECT_THAT(v->problem, HasSubstr("changed"));
}

TEST_F(AuditTest, VerifyFindsARecomputedHashThroughTheNextLink) {
  // A forger who also recomputes the record's own hash breaks the next link.
  store_.records[1].actor = "someone else";
  store_.records[1].hash = RecordHash(store_.records[1]);
  auto v = log_->Verify();
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_seq, 3u);
}

TEST_F(AuditTest, VerifyFindsRemovedAndReorderedRecords) {
  auto removed = store_;
  removed.records.erase(removed.records.begin() + 1);
  auto l = AuditLog::Open(&removed, [] { return int64_t{0}; });
  auto v = (*l)->Verify();
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_seq, 2u);
  EXPECT_THAT(v->problem, HasSubstr("removed"));

  auto reordered = store_;
  std::swap(reordered.records[3], reordered.records[4]);
  auto l2 = AuditLog::Open(&reordered, [] { return int64_t{0}; });
  auto v2 = (*l2)->Verify();
  EXPECT_FALSE(v2->ok);
  EXPECT_EQ(v2->first_bad_seq, 4u);
}

TEST(AuditJson, QuotesControlCharacters) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

}  // namespace
}  // namespace parley::core
