// Tests of the RocksDB storage backend against the storage.h contract.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Each test opens a fresh database in its own mkdtemp directory under /tmp,
// removed when the test ends. No timing assertions: concurrency tests check
// invariants (uniqueness, contiguity, order, nothing missed) only.
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/rocksdb_storage.h"
#include "storage/storage.h"

namespace parley::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

#define ASSERT_OK(expr)                                  \
  do {                                                   \
    const absl::Status _s = (expr);                      \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s;         \
  } while (0)

template <typename T>
T ValueOrDie(absl::StatusOr<T> v, const char* what) {
  EXPECT_TRUE(v.ok()) << what << ": " << v.status();
  if (!v.ok()) std::abort();
  return *std::move(v);
}
#define VALUE(expr) ValueOrDie((expr), #expr)

class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_storage_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Open();
  }

  void TearDown() override {
    storage_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void Open() {
    RocksDbOptions opts;
    opts.path = dir_ + "/db/nested";  // Parents must be created.
    opts.block_cache_bytes = 8 << 20;
    opts.write_buffer_bytes = 4 << 20;
    auto s = OpenRocksDbStorage(opts);
    ASSERT_TRUE(s.ok()) << s.status();
    storage_ = *std::move(s);
  }

  void Reopen() {
    storage_.reset();
    Open();
  }

  AccountStore& accounts() { return storage_->accounts(); }
  ConversationStore& convs() { return storage_->conversations(); }
  MessageStore& msgs() { return storage_->messages(); }

  DeviceRecord MakeAccount(const std::string& id) {
    AccountRecord a;
    a.account_id = id;
    a.username = "user_" + id;
    a.display_name = "User " + id;
    DeviceRecord d;
    d.name = "phone";
    d.token_hash = "tok_" + id;
    return VALUE(accounts().CreateAccount(a, d));
  }

  uint32_t AddDevice(const std::string& account_id, const std::string& token) {
    DeviceRecord d;
    d.account_id = account_id;
    d.name = "extra";
    d.token_hash = token;
    return VALUE(accounts().AddDevice(d)).device_id;
  }

  void MakeGroup(const std::string& id, const std::vector<std::string>& members,
                 uint64_t epoch = 0) {
    ConversationRecord c;
    c.conversation_id = id;
    c.kind = 2;
    c.title = "group " + id;
    for (const auto& m : members) c.members.push_back({.account_id = m});
    c.security.epoch = epoch;
    ASSERT_OK(convs().CreateConversation(c));
  }

  static AppendRequest Req(const std::string& conv,
                           std::vector<QueueTarget> targets,
                           const std::string& tag = "m") {
    AppendRequest r;
    r.conversation_id = conv;
    r.server_time_ms = 1000;
    r.targets = std::move(targets);
    r.make_payload = [conv, tag](uint64_t seq) {
      return absl::StrCat(conv, "|", tag, "|", seq);
    };
    return r;
  }

  std::vector<QueueEntry> Queue(const std::string& account, uint32_t device,
                                uint64_t after = 0, size_t limit = 100000) {
    return VALUE(msgs().ReadQueue(account, device, after, limit));
  }

  std::string dir_;
  std::unique_ptr<Storage> storage_;
};

// ------------------------------------------------------------ accounts

TEST_F(StorageTest, CreateAndGetAccount) {
  DeviceRecord d = MakeAccount("a1");
  EXPECT_EQ(d.device_id, 1u);
  EXPECT_EQ(d.account_id, "a1");
  AccountRecord a = VALUE(accounts().GetAccount("a1"));
  EXPECT_EQ(a.username, "user_a1");
  EXPECT_EQ(a.display_name, "User a1");
  AccountRecord b = VALUE(accounts().GetAccountByUsername("user_a1"));
  EXPECT_EQ(b.account_id, "a1");
  EXPECT_EQ(accounts().GetAccount("nope").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(accounts().GetAccountByUsername("nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, UsernameAndIdConflicts) {
  MakeAccount("a1");
  AccountRecord dup;
  dup.account_id = "a2";
  dup.username = "user_a1";
  EXPECT_EQ(accounts().CreateAccount(dup, DeviceRecord{}).status().code(),
            absl::StatusCode::kAlreadyExists);
  dup.account_id = "a1";
  dup.username = "other";
  EXPECT_EQ(accounts().CreateAccount(dup, DeviceRecord{}).status().code(),
            absl::StatusCode::kAlreadyExists);
  // Nothing of the failed attempts was stored.
  EXPECT_EQ(accounts().GetAccount("a2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(accounts().GetAccountByUsername("other").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, UpdateAccountMovesUsername) {
  MakeAccount("a1");
  MakeAccount("a2");
  AccountRecord a = VALUE(accounts().GetAccount("a1"));
  a.username = "user_a2";
  EXPECT_EQ(accounts().UpdateAccount(a).code(),
            absl::StatusCode::kAlreadyExists);
  a.username = "renamed";
  a.suspended = true;
  ASSERT_OK(accounts().UpdateAccount(a));
  EXPECT_TRUE(VALUE(accounts().GetAccountByUsername("renamed")).suspended);
  EXPECT_EQ(accounts().GetAccountByUsername("user_a1").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, DevicesIdsNeverReused) {
  MakeAccount("a1");
  EXPECT_EQ(AddDevice("a1", "t2"), 2u);
  EXPECT_EQ(AddDevice("a1", "t3"), 3u);
  ASSERT_OK(accounts().RemoveDevice("a1", 3));
  EXPECT_EQ(AddDevice("a1", "t4"), 4u);
  std::vector<DeviceRecord> devices = VALUE(accounts().ListDevices("a1"));
  std::vector<uint32_t> ids;
  for (const auto& d : devices) ids.push_back(d.device_id);
  EXPECT_THAT(ids, ElementsAre(1u, 2u, 4u));
  EXPECT_EQ(accounts().GetDevice("a1", 3).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(accounts().RemoveDevice("a1", 3).code(),
            absl::StatusCode::kNotFound);
  DeviceRecord unknown;
  unknown.account_id = "ghost";
  EXPECT_EQ(accounts().AddDevice(unknown).status().code(),
            absl::StatusCode::kNotFound);
  Reopen();
  EXPECT_EQ(AddDevice("a1", "t5"), 5u);
}

TEST_F(StorageTest, TokenLookup) {
  MakeAccount("a1");
  uint32_t id = AddDevice("a1", "secret2");
  DeviceRecord d = VALUE(accounts().FindDeviceByTokenHash("secret2"));
  EXPECT_EQ(d.account_id, "a1");
  EXPECT_EQ(d.device_id, id);
  EXPECT_EQ(VALUE(accounts().FindDeviceByTokenHash("tok_a1")).device_id, 1u);
  // Token rotation through UpdateDevice moves the index.
  d.token_hash = "rotated";
  d.last_seen_at_ms = 77;
  ASSERT_OK(accounts().UpdateDevice(d));
  EXPECT_EQ(accounts().FindDeviceByTokenHash("secret2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(VALUE(accounts().FindDeviceByTokenHash("rotated")).last_seen_at_ms,
            77);
  ASSERT_OK(accounts().RemoveDevice("a1", id));
  EXPECT_EQ(accounts().FindDeviceByTokenHash("rotated").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, DeviceLinksAreSingleUse) {
  MakeAccount("a1");
  std::string code(32, '\0');  // Raw hash bytes, including NUL.
  code[5] = '\xff';
  ASSERT_OK(accounts().PutDeviceLink(
      {.code_hash = code, .account_id = "a1", .expires_at_ms = 99}));
  DeviceLinkRecord link = VALUE(accounts().TakeDeviceLink(code));
  EXPECT_EQ(link.account_id, "a1");
  EXPECT_EQ(link.expires_at_ms, 99);
  EXPECT_EQ(link.code_hash, code);
  EXPECT_EQ(accounts().TakeDeviceLink(code).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, RejectsIdsWithSeparator) {
  AccountRecord a;
  a.account_id = std::string("a\0b", 3);
  a.username = "x";
  EXPECT_EQ(accounts().CreateAccount(a, DeviceRecord{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ------------------------------------------------------- conversations

TEST_F(StorageTest, DirectPairUniqueInBothOrders) {
  ConversationRecord c;
  c.conversation_id = "d1";
  c.kind = 1;
  c.members = {{.account_id = "alice"}, {.account_id = "bob"}};
  ASSERT_OK(convs().CreateConversation(c));
  EXPECT_EQ(VALUE(convs().FindDirect("alice", "bob")), "d1");
  EXPECT_EQ(VALUE(convs().FindDirect("bob", "alice")), "d1");

  ConversationRecord again = c;
  again.conversation_id = "d2";
  std::swap(again.members[0], again.members[1]);
  EXPECT_EQ(convs().CreateConversation(again).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(convs().GetConversation("d2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(convs().CreateConversation(c).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(convs().FindDirect("alice", "carol").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, ConcurrentDirectPairExactlyOneWins) {
  constexpr int kThreads = 8;
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      ConversationRecord c;
      c.conversation_id = absl::StrCat("d", i);
      c.kind = 1;
      c.members = {{.account_id = "x"}, {.account_id = "y"}};
      if (i % 2) std::swap(c.members[0], c.members[1]);
      if (convs().CreateConversation(c).ok()) ++wins;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
}

TEST_F(StorageTest, MembershipIndexFollowsUpdates) {
  MakeGroup("g1", {"a", "b", "c"});
  MakeGroup("g2", {"a"});
  EXPECT_THAT(VALUE(convs().ListConversationIds("a")),
              ElementsAre("g1", "g2"));
  EXPECT_THAT(VALUE(convs().ListConversationIds("b")), ElementsAre("g1"));

  ConversationRecord c = VALUE(convs().GetConversation("g1"));
  c.members = {{.account_id = "a"}, {.account_id = "c"}, {.account_id = "d"}};
  c.title = "renamed";
  ASSERT_OK(convs().UpdateConversation(c));
  EXPECT_TRUE(VALUE(convs().ListConversationIds("b")).empty());
  EXPECT_THAT(VALUE(convs().ListConversationIds("d")), ElementsAre("g1"));
  EXPECT_THAT(VALUE(convs().ListConversationIds("a")),
              ElementsAre("g1", "g2"));
  ConversationRecord got = VALUE(convs().GetConversation("g1"));
  EXPECT_EQ(got.title, "renamed");
  EXPECT_EQ(got.members.size(), 3u);
  EXPECT_EQ(got.kind, 2);

  ConversationRecord missing;
  missing.conversation_id = "nope";
  EXPECT_EQ(convs().UpdateConversation(missing).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, UpdateConversationKeepsLastSeq) {
  MakeGroup("g", {"a"});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(msgs().Append(Req("g", {})).ok());
  ConversationRecord c = VALUE(convs().GetConversation("g"));
  EXPECT_EQ(c.last_seq, 3u);
  c.last_seq = 0;
  c.security.epoch = 9;
  ASSERT_OK(convs().UpdateConversation(c));
  ConversationRecord got = VALUE(convs().GetConversation("g"));
  EXPECT_EQ(got.last_seq, 3u);
  EXPECT_EQ(got.security.epoch, 9u);
  // The append path sees the new epoch.
  AppendRequest r = Req("g", {});
  r.expect_epoch = 9;
  EXPECT_EQ(VALUE(msgs().Append(r)).seq, 4u);
}

TEST_F(StorageTest, ForEachConversationVisitsAllAndStops) {
  MakeGroup("g1", {"a"});
  MakeGroup("g2", {"a"});
  MakeGroup("g3", {"a"});
  ASSERT_TRUE(msgs().Append(Req("g2", {})).ok());
  std::map<std::string, uint64_t> seen;
  ASSERT_OK(convs().ForEachConversation([&](const ConversationRecord& c) {
    seen[c.conversation_id] = c.last_seq;
    return true;
  }));
  EXPECT_EQ(seen, (std::map<std::string, uint64_t>{
                      {"g1", 0}, {"g2", 1}, {"g3", 0}}));
  int visits = 0;
  ASSERT_OK(convs().ForEachConversation([&](const ConversationRecord&) {
    ++visits;
    return false;
  }));
  EXPECT_EQ(visits, 1);
}

// ------------------------------------------------------------ messages

TEST_F(StorageTest, AppendAssignsSequenceAndQueues) {
  MakeAccount("a");
  MakeAccount("b");
  MakeGroup("g", {"a", "b"});
  std::vector<QueueTarget> targets = {{"a", 1}, {"b", 1}};
  for (uint64_t i = 1; i <= 5; ++i) {
    AppendResult r = VALUE(msgs().Append(Req("g", targets)));
    EXPECT_EQ(r.seq, i);
    EXPECT_EQ(r.server_time_ms, 1000);
    EXPECT_FALSE(r.duplicate);
  }
  EXPECT_EQ(VALUE(convs().GetConversation("g")).last_seq, 5u);
  std::vector<QueueEntry> q = Queue("b", 1);
  ASSERT_EQ(q.size(), 5u);
  for (size_t i = 0; i < q.size(); ++i) {
    EXPECT_EQ(q[i].delivery_id, i + 1);
    EXPECT_EQ(q[i].payload, absl::StrCat("g|m|", i + 1));
  }
  EXPECT_EQ(VALUE(msgs().LastDeliveryId("b", 1)), 5u);
  EXPECT_EQ(VALUE(msgs().LastDeliveryId("b", 9)), 0u);

  AppendRequest missing = Req("nope", targets);
  EXPECT_EQ(msgs().Append(missing).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, ReadQueueLimitsAndCursor) {
  MakeAccount("a");
  MakeGroup("g", {"a"});
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(msgs().Append(Req("g", {{"a", 1}})).ok());
  std::vector<QueueEntry> first = Queue("a", 1, 0, 4);
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first.front().delivery_id, 1u);
  EXPECT_EQ(first.back().delivery_id, 4u);
  std::vector<QueueEntry> next = Queue("a", 1, first.back().delivery_id, 4);
  ASSERT_EQ(next.size(), 4u);
  EXPECT_EQ(next.front().delivery_id, 5u);
  std::vector<QueueEntry> rest = Queue("a", 1, 8, 100);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest.back().delivery_id, 10u);
  EXPECT_TRUE(Queue("a", 1, 10, 100).empty());
  EXPECT_TRUE(Queue("a", 1, 0, 0).empty());
  EXPECT_TRUE(Queue("a", 1, UINT64_MAX, 10).empty());
  // Another device's queue is separate.
  EXPECT_TRUE(Queue("a", 2).empty());
}

TEST_F(StorageTest, AckDeletesAndCounts) {
  MakeAccount("a");
  MakeGroup("g", {"a"});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(msgs().Append(Req("g", {{"a", 1}})).ok());
  EXPECT_EQ(VALUE(msgs().Ack("a", 1, {1, 3, 3, 42})), 2u);
  EXPECT_EQ(VALUE(msgs().Ack("a", 1, {1, 3})), 0u);
  EXPECT_EQ(VALUE(msgs().Ack("a", 1, {})), 0u);
  std::vector<uint64_t> left;
  for (const auto& e : Queue("a", 1)) left.push_back(e.delivery_id);
  EXPECT_THAT(left, ElementsAre(2u, 4u, 5u));
  EXPECT_EQ(VALUE(msgs().Ack("a", 1, {2, 4, 5})), 3u);
  EXPECT_TRUE(Queue("a", 1).empty());
  // The counter survives an empty queue: ids continue.
  ASSERT_TRUE(msgs().Append(Req("g", {{"a", 1}})).ok());
  EXPECT_EQ(Queue("a", 1).at(0).delivery_id, 6u);
}

TEST_F(StorageTest, IdempotentRetryReturnsOriginal) {
  MakeAccount("a");
  MakeAccount("b");
  MakeGroup("g", {"a", "b"});
  AppendRequest r = Req("g", {{"b", 1}});
  r.sender_account_id = "a";
  r.sender_device_id = 1;
  r.client_message_id = "cm-1";
  r.keep_history = true;
  r.server_time_ms = 5000;
  AppendResult first = VALUE(msgs().Append(r));
  EXPECT_FALSE(first.duplicate);

  int calls = 0;
  AppendRequest retry = r;
  retry.server_time_ms = 6000;
  retry.make_payload = [&calls](uint64_t) {
    ++calls;
    return std::string("retry");
  };
  AppendResult second = VALUE(msgs().Append(retry));
  EXPECT_TRUE(second.duplicate);
  EXPECT_EQ(second.seq, first.seq);
  EXPECT_EQ(second.server_time_ms, 5000);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(Queue("b", 1).size(), 1u);
  EXPECT_EQ(VALUE(msgs().ReadHistory("g", 0, 10)).size(), 1u);
  EXPECT_EQ(VALUE(convs().GetConversation("g")).last_seq, 1u);

  // Same client id from another device is a different message.
  retry.sender_device_id = 2;
  EXPECT_FALSE(VALUE(msgs().Append(retry)).duplicate);
  Reopen();
  EXPECT_TRUE(VALUE(msgs().Append(r)).duplicate);
  EXPECT_EQ(Queue("b", 1).size(), 2u);
}

TEST_F(StorageTest, ExpectEpochMismatchFails) {
  MakeAccount("a");
  MakeGroup("g", {"a"}, /*epoch=*/3);
  AppendRequest r = Req("g", {{"a", 1}});
  r.expect_epoch = 2;
  EXPECT_EQ(msgs().Append(r).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Queue("a", 1).empty());
  EXPECT_EQ(VALUE(convs().GetConversation("g")).last_seq, 0u);
  r.expect_epoch = 3;
  EXPECT_EQ(VALUE(msgs().Append(r)).seq, 1u);
}

TEST_F(StorageTest, NewSecurityAppliedAtomically) {
  MakeAccount("a");
  MakeGroup("g", {"a"}, /*epoch=*/1);
  SecurityStateRecord sec;
  sec.mode = 2;
  sec.epoch = 2;
  sec.reason = "policy";
  sec.e2ee_ever_enabled = true;
  sec.pending_mode = 1;
  sec.pending_effective_at_ms = 1234;
  AppendRequest r = Req("g", {{"a", 1}});
  r.new_security = sec;
  r.expect_epoch = 1;
  EXPECT_EQ(VALUE(msgs().Append(r)).seq, 1u);
  ConversationRecord c = VALUE(convs().GetConversation("g"));
  EXPECT_EQ(c.security.mode, 2);
  EXPECT_EQ(c.security.epoch, 2u);
  EXPECT_EQ(c.security.reason, "policy");
  EXPECT_TRUE(c.security.e2ee_ever_enabled);
  EXPECT_EQ(c.security.pending_mode, 1);
  EXPECT_EQ(c.security.pending_effective_at_ms, 1234);
  EXPECT_EQ(c.members.size(), 1u);
  EXPECT_EQ(c.last_seq, 1u);
  // The old epoch no longer matches; the new one does.
  AppendRequest stale = Req("g", {{"a", 1}});
  stale.expect_epoch = 1;
  EXPECT_EQ(msgs().Append(stale).status().code(),
            absl::StatusCode::kFailedPrecondition);
  stale.expect_epoch = 2;
  EXPECT_EQ(VALUE(msgs().Append(stale)).seq, 2u);
  Reopen();
  EXPECT_EQ(VALUE(convs().GetConversation("g")).security.epoch, 2u);
}

TEST_F(StorageTest, PerTargetPayloads) {
  MakeAccount("a");
  MakeAccount("b");
  AddDevice("b", "tb2");
  MakeGroup("g", {"a", "b"});
  AppendRequest r = Req("g", {{"a", 1}, {"b", 1}, {"b", 2}});
  r.keep_history = true;
  int history_calls = 0;
  r.make_payload = [&](uint64_t seq) {
    ++history_calls;
    return absl::StrCat("history ", seq);
  };
  r.make_target_payload = [](uint64_t seq, const QueueTarget& t) {
    return absl::StrCat("for ", t.account_id, "/", t.device_id, " #", seq);
  };
  ASSERT_TRUE(msgs().Append(r).ok());
  EXPECT_EQ(history_calls, 1);
  EXPECT_EQ(Queue("a", 1).at(0).payload, "for a/1 #1");
  EXPECT_EQ(Queue("b", 1).at(0).payload, "for b/1 #1");
  EXPECT_EQ(Queue("b", 2).at(0).payload, "for b/2 #1");
  EXPECT_EQ(VALUE(msgs().ReadHistory("g", 0, 10)).at(0).payload, "history 1");
}

TEST_F(StorageTest, HistoryPagingNewestFirst) {
  MakeGroup("g", {"a"});
  MakeGroup("other", {"a"});
  for (int i = 1; i <= 10; ++i) {
    AppendRequest r = Req("g", {});
    r.keep_history = (i != 5);  // seq 5 is not kept.
    r.server_time_ms = i * 100;
    ASSERT_TRUE(msgs().Append(r).ok());
    AppendRequest o = Req("other", {});
    o.keep_history = true;
    ASSERT_TRUE(msgs().Append(o).ok());
  }
  auto seqs = [](const std::vector<HistoryEntry>& h) {
    std::vector<uint64_t> out;
    for (const auto& e : h) out.push_back(e.seq);
    return out;
  };
  std::vector<HistoryEntry> page = VALUE(msgs().ReadHistory("g", 0, 3));
  EXPECT_THAT(seqs(page), ElementsAre(10u, 9u, 8u));
  EXPECT_EQ(page[0].server_time_ms, 1000);
  EXPECT_EQ(page[0].payload, "g|m|10");
  page = VALUE(msgs().ReadHistory("g", 8, 3));
  EXPECT_THAT(seqs(page), ElementsAre(7u, 6u, 4u));
  page = VALUE(msgs().ReadHistory("g", 4, 10));
  EXPECT_THAT(seqs(page), ElementsAre(3u, 2u, 1u));
  EXPECT_TRUE(VALUE(msgs().ReadHistory("g", 1, 10)).empty());
  EXPECT_TRUE(VALUE(msgs().ReadHistory("none", 0, 10)).empty());
}

TEST_F(StorageTest, PurgeHistoryBefore) {
  MakeGroup("g", {"a"});
  MakeGroup("h", {"a"});
  for (int i = 1; i <= 6; ++i) {
    for (const char* conv : {"g", "h"}) {
      AppendRequest r = Req(conv, {});
      r.keep_history = true;
      r.server_time_ms = i * 100 - 300;  // Includes negative times.
      ASSERT_TRUE(msgs().Append(r).ok());
    }
  }
  // Times: -200, -100, 0, 100, 200, 300. Cutoff 100 removes the first three.
  EXPECT_EQ(VALUE(msgs().PurgeHistoryBefore(100)), 6u);
  std::vector<uint64_t> left;
  for (const auto& e : VALUE(msgs().ReadHistory("g", 0, 100))) {
    left.push_back(e.seq);
  }
  EXPECT_THAT(left, ElementsAre(6u, 5u, 4u));
  EXPECT_EQ(VALUE(msgs().ReadHistory("h", 0, 100)).size(), 3u);
  EXPECT_EQ(VALUE(msgs().PurgeHistoryBefore(100)), 0u);
  EXPECT_EQ(VALUE(msgs().PurgeHistoryBefore(1000)), 6u);
  EXPECT_TRUE(VALUE(msgs().ReadHistory("g", 0, 100)).empty());
}

TEST_F(StorageTest, RemoveDeviceDeletesQueue) {
  MakeAccount("a");
  uint32_t d2 = AddDevice("a", "t2");
  MakeGroup("g", {"a"});
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(msgs().Append(Req("g", {{"a", 1}, {"a", d2}})).ok());
  }
  EXPECT_EQ(Queue("a", d2).size(), 3u);
  ASSERT_OK(accounts().RemoveDevice("a", d2));
  EXPECT_TRUE(Queue("a", d2).empty());
  EXPECT_EQ(VALUE(msgs().LastDeliveryId("a", d2)), 0u);
  EXPECT_EQ(Queue("a", 1).size(), 3u);
  // Appends racing with the removal create no orphan entries.
  ASSERT_TRUE(msgs().Append(Req("g", {{"a", 1}, {"a", d2}})).ok());
  EXPECT_TRUE(Queue("a", d2).empty());
  EXPECT_EQ(Queue("a", 1).size(), 4u);
  Reopen();
  EXPECT_TRUE(Queue("a", d2).empty());
}

TEST_F(StorageTest, ReopenKeepsEverythingAndCountersContinue) {
  MakeAccount("a");
  MakeAccount("b");
  ConversationRecord d;
  d.conversation_id = "direct";
  d.kind = 1;
  d.members = {{.account_id = "a"}, {.account_id = "b"}};
  ASSERT_OK(convs().CreateConversation(d));
  for (int i = 0; i < 4; ++i) {
    AppendRequest r = Req("direct", {{"b", 1}});
    r.keep_history = true;
    ASSERT_TRUE(msgs().Append(r).ok());
  }
  EXPECT_EQ(VALUE(msgs().Ack("b", 1, {1, 2, 3, 4})), 4u);  // Queue empty.
  ASSERT_OK(storage_->Flush());
  Reopen();

  EXPECT_EQ(VALUE(accounts().GetAccountByUsername("user_b")).account_id, "b");
  EXPECT_EQ(VALUE(accounts().FindDeviceByTokenHash("tok_a")).account_id, "a");
  EXPECT_EQ(VALUE(convs().FindDirect("b", "a")), "direct");
  EXPECT_THAT(VALUE(convs().ListConversationIds("a")), ElementsAre("direct"));
  EXPECT_EQ(VALUE(convs().GetConversation("direct")).last_seq, 4u);
  EXPECT_EQ(VALUE(msgs().ReadHistory("direct", 0, 10)).size(), 4u);
  EXPECT_EQ(VALUE(msgs().LastDeliveryId("b", 1)), 4u);

  AppendResult r = VALUE(msgs().Append(Req("direct", {{"b", 1}})));
  EXPECT_EQ(r.seq, 5u);
  std::vector<QueueEntry> q = Queue("b", 1);
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].delivery_id, 5u);  // Not reused after restart.
}

TEST_F(StorageTest, ReopenWithoutFlushKeepsAcknowledgedWrites) {
  MakeAccount("a");
  MakeGroup("g", {"a"});
  ASSERT_TRUE(msgs().Append(Req("g", {{"a", 1}})).ok());
  Reopen();  // Recovery from the WAL only.
  EXPECT_EQ(Queue("a", 1).size(), 1u);
  EXPECT_EQ(VALUE(msgs().Append(Req("g", {{"a", 1}}))).seq, 2u);
}

// --------------------------------------------------------- concurrency

TEST_F(StorageTest, ConcurrentAppendsToOneConversation) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100;
  std::vector<QueueTarget> targets;
  for (const char* a : {"a", "b", "c"}) {
    MakeAccount(a);
    targets.push_back({a, 1});
  }
  AddDevice("c", "tc2");
  targets.push_back({"c", 2});
  MakeGroup("g", {"a", "b", "c"});

  std::vector<std::vector<uint64_t>> seqs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        AppendRequest r = Req("g", targets);
        r.keep_history = (i % 2 == 0);
        if (i % 3 == 0) {
          r.sender_account_id = "a";
          r.sender_device_id = 1;
          r.client_message_id = absl::StrCat(t, "-", i);
        }
        auto res = msgs().Append(r);
        if (res.ok()) seqs[t].push_back(res->seq);
      }
    });
  }
  for (auto& th : threads) th.join();

  std::vector<uint64_t> all;
  for (const auto& s : seqs) {
    EXPECT_EQ(s.size(), static_cast<size_t>(kPerThread));
    EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
    all.insert(all.end(), s.begin(), s.end());
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i + 1);

  for (const QueueTarget& t : targets) {
    std::vector<QueueEntry> q = Queue(t.account_id, t.device_id);
    ASSERT_EQ(q.size(), all.size());
    for (size_t i = 0; i < q.size(); ++i) {
      EXPECT_EQ(q[i].delivery_id, i + 1);
      // Seq order equals delivery order.
      EXPECT_EQ(q[i].payload, absl::StrCat("g|m|", i + 1));
    }
  }
}

// Appends to different conversations sharing one device: a reader that
// follows the delivery cursor must never skip an entry (ids become visible
// in increasing order) and each conversation's messages arrive in seq order.
TEST_F(StorageTest, CrossConversationDeliveryOrder) {
  constexpr int kConvs = 6;
  constexpr int kPerConv = 150;
  MakeAccount("r");
  for (int c = 0; c < kConvs; ++c) {
    MakeAccount(absl::StrCat("p", c));
    MakeGroup(absl::StrCat("c", c), {"r", absl::StrCat("p", c)});
  }

  std::atomic<bool> done{false};
  std::vector<QueueEntry> seen;
  std::thread reader([&] {
    uint64_t cursor = 0;
    while (true) {
      const bool last_pass = done.load();
      auto q = msgs().ReadQueue("r", 1, cursor, 1000);
      if (!q.ok()) return;
      for (auto& e : *q) {
        cursor = e.delivery_id;
        seen.push_back(std::move(e));
      }
      if (last_pass && q->empty()) return;
    }
  });
  std::vector<std::thread> writers;
  for (int c = 0; c < kConvs; ++c) {
    writers.emplace_back([&, c] {
      const std::string conv = absl::StrCat("c", c);
      const std::string peer = absl::StrCat("p", c);
      for (int i = 0; i < kPerConv; ++i) {
        // Each append also targets a device private to its conversation, so
        // lock sets differ between writers.
        ASSERT_TRUE(msgs().Append(Req(conv, {{"r", 1}, {peer, 1}})).ok());
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  reader.join();

  ASSERT_EQ(seen.size(), static_cast<size_t>(kConvs * kPerConv));
  std::map<std::string, uint64_t> last_seq;
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].delivery_id, i + 1);
    std::vector<std::string> parts = absl::StrSplit(seen[i].payload, '|');
    ASSERT_EQ(parts.size(), 3u);
    uint64_t seq = 0;
    ASSERT_TRUE(absl::SimpleAtoi(parts[2], &seq));
    EXPECT_EQ(seq, last_seq[parts[0]] + 1) << parts[0];
    last_seq[parts[0]] = seq;
  }
}

TEST_F(StorageTest, ConcurrentIdempotentRetriesStoreOnce) {
  MakeAccount("a");
  MakeGroup("g", {"a"});
  constexpr int kThreads = 8;
  std::vector<AppendResult> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      AppendRequest r = Req("g", {{"a", 1}});
      r.sender_account_id = "a";
      r.sender_device_id = 1;
      r.client_message_id = "same";
      auto res = msgs().Append(r);
      if (res.ok()) results[t] = *res;
    });
  }
  for (auto& th : threads) th.join();
  int originals = 0;
  for (const auto& r : results) {
    EXPECT_EQ(r.seq, 1u);
    if (!r.duplicate) ++originals;
  }
  EXPECT_EQ(originals, 1);
  EXPECT_EQ(Queue("a", 1).size(), 1u);
}

TEST_F(StorageTest, ConcurrentCreateAccountSameUsername) {
  constexpr int kThreads = 8;
  std::atomic<int> wins{0};
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      AccountRecord a;
      a.account_id = absl::StrCat("acct", t);
      a.username = "popular";
      DeviceRecord d;
      d.token_hash = absl::StrCat("tok", t);
      absl::Status s = accounts().CreateAccount(a, d).status();
      if (s.ok()) {
        ++wins;
      } else if (s.code() == absl::StatusCode::kAlreadyExists) {
        ++conflicts;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(conflicts.load(), kThreads - 1);
  AccountRecord owner = VALUE(accounts().GetAccountByUsername("popular"));
  int existing = 0;
  for (int t = 0; t < kThreads; ++t) {
    if (accounts().GetAccount(absl::StrCat("acct", t)).ok()) ++existing;
  }
  EXPECT_EQ(existing, 1);
  EXPECT_TRUE(accounts().GetAccount(owner.account_id).ok());
}

}  // namespace
}  // namespace parley::storage
