// Tests of the RocksDB storage backend against the storage.h contract.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Each test opens a fresh database in its own mkdtemp directory under /tmp,
// removed when the test ends. No timing assertions: concurrency tests check
// invariants (uniqueness, contiguity, order, nothing missed) only.
#include "storage/rocksdb_storage.h"

#include <pthread.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
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
    opts.path = DbPath();  // Parents must be created.
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

  std::string DbPath() const { return dir_ + "/db/nested"; }

  // The closed store's database opened directly with RocksDB, every column
  // family by name: for rewriting it into older shapes and reading it back.
  struct RawDb {
    std::unique_ptr<rocksdb::DB> db;  // destroyed after the handles
    std::map<std::string, rocksdb::ColumnFamilyHandle*> cf;
    ~RawDb() {
      for (auto& [name, h] : cf) EXPECT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    }
  };
  std::unique_ptr<RawDb> OpenRaw(bool read_only = false) {
    std::vector<std::string> names;
    EXPECT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), DbPath(), &names)
            .ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descs;
    for (const auto& n : names) {
      descs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    rocksdb::Status st =
        read_only ? rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), DbPath(),
                                                 descs, &handles, &db)
                  : rocksdb::DB::Open(rocksdb::DBOptions(), DbPath(), descs,
                                      &handles, &db);
    EXPECT_TRUE(st.ok()) << st.ToString();
    if (!st.ok()) return nullptr;
    auto raw = std::make_unique<RawDb>();
    raw->db.reset(db);
    for (size_t i = 0; i < names.size(); ++i) raw->cf[names[i]] = handles[i];
    return raw;
  }

  AccountStore& accounts() { return storage_->accounts(); }
  ConversationStore& convs() { return storage_->conversations(); }
  MessageStore& msgs() { return storage_->messages(); }
  PolicyStore& policies() { return storage_->policies(); }
  AuditStore& audit() { return storage_->audit(); }
  AdminTokenStore& tokens() { return storage_->admin_tokens(); }
  KeyStore& keys() { return storage_->keys(); }

  // Accounts "a" and "b" (one device each) and the direct conversation
  // "direct" between them.
  void MakeDirectAB() {
    MakeAccount("a");
    MakeAccount("b");
    ConversationRecord d;
    d.conversation_id = "direct";
    d.kind = 1;
    d.members = {{.account_id = "a"}, {.account_id = "b"}};
    ASSERT_OK(convs().CreateConversation(d));
  }

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

  // A Send of `sender`'s device with a client message id, at time `t`.
  static AppendRequest IdemReq(const std::string& conv,
                               std::vector<QueueTarget> targets,
                               const std::string& sender, uint32_t device,
                               const std::string& client_message_id,
                               int64_t t) {
    AppendRequest r = Req(conv, std::move(targets));
    r.sender_account_id = sender;
    r.sender_device_id = device;
    r.client_message_id = client_message_id;
    r.server_time_ms = t;
    return r;
  }

  std::vector<QueueEntry> Queue(const std::string& account, uint32_t device,
                                uint64_t after = 0, size_t limit = 100000) {
    return VALUE(msgs().ReadQueue(account, device, after, limit));
  }

  static PolicyRevisionRecord Revision(uint64_t number) {
    PolicyRevisionRecord r;
    r.number = number;
    r.content =
        absl::StrCat("version: 1\nrules: []  # revision ", number, "\n");
    r.content_hash = absl::StrCat("hash", number);
    r.previous_hash = number > 1 ? absl::StrCat("hash", number - 1) : "";
    r.author = "operator-1";
    r.comment = absl::StrCat("apply ", number);
    r.created_at_ms = 1000 + static_cast<int64_t>(number);
    return r;
  }

  static AuditRecord Audit(uint64_t seq) {
    AuditRecord r;
    r.seq = seq;
    r.time_ms = 5000 + static_cast<int64_t>(seq);
    r.actor = "operator:ops-1 (t_0123456789abcdef)";
    r.action = "policy.apply";
    r.target = absl::StrCat("revision ", seq);
    r.details = absl::StrCat("{\"n\":", seq, "}");
    r.prev_hash = seq > 1 ? std::string(32, static_cast<char>(seq - 1)) : "";
    r.hash = std::string(32, static_cast<char>(seq));
    return r;
  }

  static AdminTokenRecord Token(const std::string& id,
                                const std::string& hash) {
    AdminTokenRecord t;
    t.token_id = id;
    t.token_hash = hash;
    t.role = "operator";
    t.name = "ops " + id;
    t.created_by = "parleyd";
    t.created_at_ms = 42;
    return t;
  }

  static DeviceKeysRecord Keys(const std::string& account, uint32_t device,
                               const std::string& identity = "identity-1",
                               uint32_t signed_id = 1) {
    DeviceKeysRecord k;
    k.account_id = account;
    k.device_id = device;
    k.identity_key = identity;
    k.registration_id = 4242;
    k.signed_pre_key = {.key_id = signed_id,
                        .public_key = absl::StrCat("spk-", signed_id),
                        .signature = absl::StrCat("sig-", signed_id)};
    return k;
  }

  // One-time pre-keys with the given ids; the public key names the id.
  static std::vector<PreKeyRecord> PreKeys(const std::vector<uint32_t>& ids,
                                           const std::string& tag = "pk") {
    std::vector<PreKeyRecord> out;
    for (uint32_t id : ids) {
      out.push_back({.key_id = id, .public_key = absl::StrCat(tag, "-", id)});
    }
    return out;
  }

  static std::vector<uint32_t> Range(uint32_t first, uint32_t count) {
    std::vector<uint32_t> ids;
    for (uint32_t i = 0; i < count; ++i) ids.push_back(first + i);
    return ids;
  }

  std::string dir_;
  std::unique_ptr<Storage> storage_;
};

void ExpectSecurityEq(const SecurityStateRecord& got,
                      const SecurityStateRecord& want) {
  EXPECT_EQ(got.mode, want.mode);
  EXPECT_EQ(got.epoch, want.epoch);
  EXPECT_EQ(got.policy_revision, want.policy_revision);
  EXPECT_EQ(got.rule_id, want.rule_id);
  EXPECT_EQ(got.reason, want.reason);
  EXPECT_EQ(got.effective_at_ms, want.effective_at_ms);
  EXPECT_EQ(got.e2ee_ever_enabled, want.e2ee_ever_enabled);
  EXPECT_EQ(got.locked, want.locked);
  EXPECT_EQ(got.pending_mode, want.pending_mode);
  EXPECT_EQ(got.pending_effective_at_ms, want.pending_effective_at_ms);
  EXPECT_EQ(got.pending_reason, want.pending_reason);
  EXPECT_EQ(got.pending_rule_id, want.pending_rule_id);
  EXPECT_EQ(got.pending_policy_revision, want.pending_policy_revision);
  EXPECT_EQ(got.set_by_participants, want.set_by_participants);
  EXPECT_EQ(got.notice, want.notice);
  EXPECT_EQ(got.enable_requests, want.enable_requests);
  EXPECT_EQ(got.disable_requests, want.disable_requests);
}

void ExpectRevisionEq(const PolicyRevisionRecord& got,
                      const PolicyRevisionRecord& want) {
  EXPECT_EQ(got.number, want.number);
  EXPECT_EQ(got.content, want.content);
  EXPECT_EQ(got.content_hash, want.content_hash);
  EXPECT_EQ(got.previous_hash, want.previous_hash);
  EXPECT_EQ(got.author, want.author);
  EXPECT_EQ(got.comment, want.comment);
  EXPECT_EQ(got.created_at_ms, want.created_at_ms);
  EXPECT_EQ(got.rollback_of, want.rollback_of);
}

void ExpectAuditEq(const AuditRecord& got, const AuditRecord& want) {
  EXPECT_EQ(got.seq, want.seq);
  EXPECT_EQ(got.time_ms, want.time_ms);
  EXPECT_EQ(got.actor, want.actor);
  EXPECT_EQ(got.action, want.action);
  EXPECT_EQ(got.target, want.target);
  EXPECT_EQ(got.details, want.details);
  EXPECT_EQ(got.prev_hash, want.prev_hash);
  EXPECT_EQ(got.hash, want.hash);
}

void ExpectTokenEq(const AdminTokenRecord& got, const AdminTokenRecord& want) {
  EXPECT_EQ(got.token_id, want.token_id);
  EXPECT_EQ(got.token_hash, want.token_hash);
  EXPECT_EQ(got.role, want.role);
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.created_by, want.created_by);
  EXPECT_EQ(got.created_at_ms, want.created_at_ms);
  EXPECT_EQ(got.revoked, want.revoked);
  EXPECT_EQ(got.revoked_at_ms, want.revoked_at_ms);
}

std::vector<uint64_t> Numbers(const std::vector<PolicyRevisionRecord>& rs) {
  std::vector<uint64_t> out;
  for (const auto& r : rs) out.push_back(r.number);
  return out;
}

std::vector<uint64_t> Seqs(const std::vector<AuditRecord>& rs) {
  std::vector<uint64_t> out;
  for (const auto& r : rs) out.push_back(r.seq);
  return out;
}

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

// Accounts and devices found by token are cached; a write must never leave a
// stale record behind, also when readers fill the cache concurrently with
// the write (a reader that read the database before the write must not
// insert what it read after it).
TEST_F(StorageTest, CachedAuthRecordsFollowConcurrentWrites) {
  MakeAccount("a1");
  const uint32_t id = AddDevice("a1", "tok_0");
  std::atomic<bool> stop{false};
  std::atomic<int> current{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; i < 200000 && !stop.load(); ++i) {
        (void)accounts().GetAccount("a1");
        (void)accounts().FindDeviceByTokenHash(
            absl::StrCat("tok_", current.load()));
        (void)accounts().FindDeviceByTokenHash(
            absl::StrCat("tok_", current.load() - 1));
      }
    });
  }
  for (int round = 1; round <= 200; ++round) {
    AccountRecord a = VALUE(accounts().GetAccount("a1"));
    a.suspended = round % 2 == 1;
    a.display_name = absl::StrCat("name ", round);
    ASSERT_OK(accounts().UpdateAccount(a));
    DeviceRecord d = VALUE(accounts().GetDevice("a1", id));
    d.token_hash = absl::StrCat("tok_", round);
    ASSERT_OK(accounts().UpdateDevice(d));
    current.store(round);
    // Read-your-writes, whatever the readers cached meanwhile.
    AccountRecord got = VALUE(accounts().GetAccount("a1"));
    ASSERT_EQ(got.suspended, round % 2 == 1) << "round " << round;
    ASSERT_EQ(got.display_name, absl::StrCat("name ", round));
    ASSERT_EQ(accounts()
                  .FindDeviceByTokenHash(absl::StrCat("tok_", round - 1))
                  .status()
                  .code(),
              absl::StatusCode::kNotFound)
        << "round " << round;
    ASSERT_EQ(VALUE(accounts().FindDeviceByTokenHash(
                        absl::StrCat("tok_", round)))
                  .device_id,
              id);
  }
  stop.store(true);
  for (auto& r : readers) r.join();
  // After the readers are gone, too: nothing stale was left cached.
  EXPECT_EQ(accounts().FindDeviceByTokenHash("tok_199").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(VALUE(accounts().GetAccount("a1")).display_name, "name 200");
  EXPECT_FALSE(VALUE(accounts().GetAccount("a1")).suspended);
  ASSERT_OK(accounts().RemoveDevice("a1", id));
  EXPECT_EQ(accounts().FindDeviceByTokenHash("tok_200").status().code(),
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

// Ids that are prefixes of each other and ids with a 0x01 byte: the seek key
// after_id + "\x01" must neither skip nor repeat any of them.
TEST_F(StorageTest, ForEachConversationAfterStartsRightAfterTheId) {
  const std::vector<std::string> ids = {"g", "g\x01", "g\x01a", "ga", "gb",
                                        "h"};
  for (const auto& id : ids) MakeGroup(id, {"a"});
  ASSERT_TRUE(msgs().Append(Req("ga", {})).ok());
  auto after = [&](const std::string& from) {
    std::vector<std::string> seen;
    const absl::Status s = convs().ForEachConversationAfter(
        from, [&](const ConversationRecord& c) {
          seen.push_back(c.conversation_id);
          if (c.conversation_id == "ga") {
            EXPECT_EQ(c.last_seq, 1u);
          }
          return true;
        });
    EXPECT_TRUE(s.ok()) << s;
    return seen;
  };
  EXPECT_EQ(after(""), ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(after(ids[i]),
              std::vector<std::string>(ids.begin() + i + 1, ids.end()))
        << "after " << absl::CEscape(ids[i]);
  }
  // A token that is not a stored id: everything that sorts after it.
  EXPECT_EQ(after("g\x01\x01"), (std::vector<std::string>{"g\x01a", "ga", "gb", "h"}));
  EXPECT_EQ(after("zzz"), std::vector<std::string>{});
  const absl::Status bad = convs().ForEachConversationAfter(
      std::string("g\0", 2), [](const ConversationRecord&) { return true; });
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StorageTest, SecurityStateNewFieldsRoundTrip) {
  MakeAccount("alice");
  SecurityStateRecord sec;
  sec.mode = 3;
  sec.epoch = 1;
  sec.policy_revision = "sha256:0123456789abcdef";
  sec.rule_id = "minors-e2ee";
  sec.reason = "policy";
  sec.set_by_participants = true;
  sec.notice = "Messages are end-to-end encrypted \xe2\x9c\x93";
  sec.enable_requests = {"alice", "bob"};
  sec.disable_requests = {std::string("c\0\xff", 3)};  // Raw bytes survive.
  ConversationRecord c;
  c.conversation_id = "g";
  c.kind = 2;
  c.members = {{.account_id = "alice"}, {.account_id = "bob"}};
  c.security = sec;
  ASSERT_OK(convs().CreateConversation(c));
  ExpectSecurityEq(VALUE(convs().GetConversation("g")).security, sec);

  // UpdateConversation replaces them (including clearing a list).
  ConversationRecord updated = VALUE(convs().GetConversation("g"));
  updated.security.set_by_participants = false;
  updated.security.notice = "downgrade in 7 days";
  updated.security.enable_requests.clear();
  updated.security.disable_requests = {"bob"};
  updated.security.epoch = 2;
  ASSERT_OK(convs().UpdateConversation(updated));
  ExpectSecurityEq(VALUE(convs().GetConversation("g")).security,
                   updated.security);

  // Append's new_security writes them in the append batch.
  SecurityStateRecord appended = updated.security;
  appended.epoch = 3;
  appended.mode = 2;
  appended.set_by_participants = true;
  appended.notice = "turned on by participants";
  appended.enable_requests = {"carol"};
  appended.disable_requests.clear();
  AppendRequest r = Req("g", {{"alice", 1}});
  r.new_security = appended;
  r.expect_epoch = 2;
  ASSERT_EQ(VALUE(msgs().Append(r)).seq, 1u);
  ExpectSecurityEq(VALUE(convs().GetConversation("g")).security, appended);

  // ForEachConversation decodes them too, also after a reopen.
  Reopen();
  ExpectSecurityEq(VALUE(convs().GetConversation("g")).security, appended);
  int visits = 0;
  ASSERT_OK(convs().ForEachConversation([&](const ConversationRecord& got) {
    ++visits;
    ExpectSecurityEq(got.security, appended);
    EXPECT_EQ(got.last_seq, 1u);
    return true;
  }));
  EXPECT_EQ(visits, 1);
}

TEST_F(StorageTest, EstimateConversationCountGrowsWithCreates) {
  EXPECT_EQ(convs().EstimateConversationCount(), 0u);
  for (int i = 0; i < 5; ++i) {
    MakeGroup(absl::StrCat("g", i), {"a"});
    EXPECT_EQ(convs().EstimateConversationCount(),
              static_cast<uint64_t>(i + 1));
  }
  // Refused creates and updates do not count.
  ConversationRecord dup;
  dup.conversation_id = "g0";
  EXPECT_EQ(convs().CreateConversation(dup).code(),
            absl::StatusCode::kAlreadyExists);
  ConversationRecord g1 = VALUE(convs().GetConversation("g1"));
  g1.title = "renamed";
  ASSERT_OK(convs().UpdateConversation(g1));
  EXPECT_EQ(convs().EstimateConversationCount(), 5u);
  Reopen();
  EXPECT_EQ(convs().EstimateConversationCount(), 5u);
  MakeGroup("g5", {"a"});
  EXPECT_EQ(convs().EstimateConversationCount(), 6u);
}

TEST_F(StorageTest, ConcurrentCreatesCountExactly) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        ConversationRecord c;
        c.conversation_id = absl::StrCat("c", t, "-", i);
        c.kind = 2;
        c.members = {{.account_id = "a"}};
        EXPECT_TRUE(convs().CreateConversation(c).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(convs().EstimateConversationCount(),
            static_cast<uint64_t>(kThreads * kPerThread));
  Reopen();
  EXPECT_EQ(convs().EstimateConversationCount(),
            static_cast<uint64_t>(kThreads * kPerThread));
}

// A database written before the policies/audit/admin_tokens column families
// and the conversation counter existed opens, counts its conversations once
// and gets the new (empty) stores.
TEST_F(StorageTest, OpensDatabaseFromBeforeNewStores) {
  MakeGroup("g1", {"a"});
  MakeGroup("g2", {"a"});
  MakeGroup("g3", {"b"});
  ASSERT_TRUE(msgs().Append(Req("g2", {})).ok());  // Adds a last_seq write.
  ASSERT_OK(policies().AppendRevision(Revision(1)));
  storage_.reset();

  // Rewrite the database into the older shape.
  {
    {
      std::unique_ptr<RawDb> raw = OpenRaw();
      ASSERT_NE(raw, nullptr);
      for (const char* name : {"policies", "audit", "admin_tokens", "keys"}) {
        ASSERT_TRUE(raw->db->DropColumnFamily(raw->cf.at(name)).ok());
      }
      ASSERT_TRUE(raw->db->Delete(rocksdb::WriteOptions(), raw->cf.at("meta"),
                                  "conversation_count")
                      .ok());
    }
    std::vector<std::string> names;
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), DbPath(), &names)
            .ok());
    EXPECT_EQ(std::count(names.begin(), names.end(), "policies"), 0);
  }

  Open();
  EXPECT_EQ(convs().EstimateConversationCount(), 3u);
  EXPECT_EQ(policies().HeadRevision().status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(audit().LastAudit().status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(VALUE(tokens().ListAdminTokens()).empty());
  EXPECT_EQ(keys().GetDeviceKeys("a", 1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(VALUE(convs().GetConversation("g2")).last_seq, 1u);
  ASSERT_OK(policies().AppendRevision(Revision(1)));
  MakeGroup("g4", {"a"});
  EXPECT_EQ(convs().EstimateConversationCount(), 4u);
  Reopen();
  EXPECT_EQ(convs().EstimateConversationCount(), 4u);
  EXPECT_EQ(VALUE(policies().HeadRevision()).number, 1u);
}

// ------------------------------------------------------------ policies

TEST_F(StorageTest, PolicyRevisionsAppendInOrder) {
  EXPECT_EQ(policies().HeadRevision().status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(VALUE(policies().ListRevisions(0, 10)).empty());
  // The first revision must be 1.
  EXPECT_EQ(policies().AppendRevision(Revision(2)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(policies().AppendRevision(Revision(0)).code(),
            absl::StatusCode::kFailedPrecondition);
  for (uint64_t n = 1; n <= 3; ++n) {
    ASSERT_OK(policies().AppendRevision(Revision(n)));
    EXPECT_EQ(VALUE(policies().HeadRevision()).number, n);
  }
  // Replaying, skipping or going back is refused and changes nothing.
  for (uint64_t n : {1u, 3u, 5u}) {
    PolicyRevisionRecord r = Revision(n);
    r.content = "tampered";
    EXPECT_EQ(policies().AppendRevision(r).code(),
              absl::StatusCode::kFailedPrecondition)
        << n;
  }
  PolicyRevisionRecord rollback = Revision(4);
  rollback.content = Revision(2).content;
  rollback.rollback_of = 2;
  ASSERT_OK(policies().AppendRevision(rollback));

  ExpectRevisionEq(VALUE(policies().HeadRevision()), rollback);
  for (uint64_t n = 1; n <= 3; ++n) {
    ExpectRevisionEq(VALUE(policies().GetRevision(n)), Revision(n));
  }
  absl::Status missing = policies().GetRevision(7).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "policy revision 7 not found");
  EXPECT_EQ(policies().GetRevision(0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, PolicyRevisionsListNewestFirst) {
  for (uint64_t n = 1; n <= 10; ++n) {
    ASSERT_OK(policies().AppendRevision(Revision(n)));
  }
  EXPECT_THAT(Numbers(VALUE(policies().ListRevisions(0, 3))),
              ElementsAre(10u, 9u, 8u));
  EXPECT_THAT(Numbers(VALUE(policies().ListRevisions(8, 3))),
              ElementsAre(7u, 6u, 5u));
  EXPECT_THAT(Numbers(VALUE(policies().ListRevisions(3, 10))),
              ElementsAre(2u, 1u));
  EXPECT_EQ(VALUE(policies().ListRevisions(0, 100)).size(), 10u);
  // `before` beyond the head lists from the head.
  EXPECT_THAT(Numbers(VALUE(policies().ListRevisions(1000, 2))),
              ElementsAre(10u, 9u));
  EXPECT_THAT(Numbers(VALUE(policies().ListRevisions(UINT64_MAX, 1))),
              ElementsAre(10u));
  EXPECT_TRUE(VALUE(policies().ListRevisions(1, 10)).empty());
  EXPECT_TRUE(VALUE(policies().ListRevisions(0, 0)).empty());
  std::vector<PolicyRevisionRecord> page =
      VALUE(policies().ListRevisions(6, 1));
  ASSERT_EQ(page.size(), 1u);
  ExpectRevisionEq(page[0], Revision(5));
}

TEST_F(StorageTest, PolicyRevisionsSurviveReopen) {
  for (uint64_t n = 1; n <= 3; ++n) {
    ASSERT_OK(policies().AppendRevision(Revision(n)));
  }
  Reopen();
  ExpectRevisionEq(VALUE(policies().HeadRevision()), Revision(3));
  ExpectRevisionEq(VALUE(policies().GetRevision(2)), Revision(2));
  EXPECT_EQ(policies().AppendRevision(Revision(3)).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(policies().AppendRevision(Revision(4)));
  EXPECT_THAT(Numbers(VALUE(policies().ListRevisions(0, 10))),
              ElementsAre(4u, 3u, 2u, 1u));
}

TEST_F(StorageTest, ConcurrentPolicyAppendsExactlyOneWins) {
  constexpr int kThreads = 8;
  // All threads append number 1 at once: exactly one wins.
  {
    std::atomic<bool> go{false};
    std::atomic<int> wins{0};
    std::atomic<int> refused{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        PolicyRevisionRecord r = Revision(1);
        r.author = absl::StrCat("thread ", t);
        while (!go.load()) std::this_thread::yield();
        absl::Status s = policies().AppendRevision(r);
        if (s.ok()) {
          ++wins;
        } else if (s.code() == absl::StatusCode::kFailedPrecondition) {
          ++refused;
        }
      });
    }
    go = true;
    for (auto& th : threads) th.join();
    EXPECT_EQ(wins.load(), 1);
    EXPECT_EQ(refused.load(), kThreads - 1);
    EXPECT_EQ(VALUE(policies().ListRevisions(0, 100)).size(), 1u);
  }
  // Optimistic appenders (read head, append head + 1, retry on conflict):
  // every number is taken exactly once, without gaps.
  constexpr uint64_t kTarget = 200;
  std::vector<std::vector<uint64_t>> won(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (true) {
        auto head = policies().HeadRevision();
        ASSERT_TRUE(head.ok()) << head.status();
        if (head->number >= kTarget) return;
        PolicyRevisionRecord r = Revision(head->number + 1);
        r.author = absl::StrCat("thread ", t);
        absl::Status s = policies().AppendRevision(r);
        if (s.ok()) {
          won[t].push_back(r.number);
        } else {
          ASSERT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<uint64_t> all;
  for (const auto& w : won) all.insert(all.end(), w.begin(), w.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), kTarget - 1);
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i + 2);
  // Each stored revision is the one its winner wrote.
  for (int t = 0; t < kThreads; ++t) {
    for (uint64_t n : won[t]) {
      EXPECT_EQ(VALUE(policies().GetRevision(n)).author,
                absl::StrCat("thread ", t));
    }
  }
}

// --------------------------------------------------------------- audit

TEST_F(StorageTest, AuditAppendReadLast) {
  EXPECT_EQ(audit().LastAudit().status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(VALUE(audit().ReadAudit(0, 10)).empty());
  EXPECT_EQ(audit().AppendAudit(Audit(2)).code(),
            absl::StatusCode::kFailedPrecondition);
  for (uint64_t s = 1; s <= 5; ++s) {
    ASSERT_OK(audit().AppendAudit(Audit(s)));
    ExpectAuditEq(VALUE(audit().LastAudit()), Audit(s));
  }
  // Wrong seqs are refused: replay (no update), gap, zero.
  for (uint64_t s : {0u, 1u, 5u, 7u}) {
    AuditRecord r = Audit(s);
    r.action = "tampered";
    EXPECT_EQ(audit().AppendAudit(r).code(),
              absl::StatusCode::kFailedPrecondition)
        << s;
  }
  std::vector<AuditRecord> all = VALUE(audit().ReadAudit(0, 100));
  ASSERT_EQ(all.size(), 5u);
  for (uint64_t s = 1; s <= 5; ++s) ExpectAuditEq(all[s - 1], Audit(s));
  EXPECT_THAT(Seqs(VALUE(audit().ReadAudit(0, 2))), ElementsAre(1u, 2u));
  EXPECT_THAT(Seqs(VALUE(audit().ReadAudit(2, 2))), ElementsAre(3u, 4u));
  EXPECT_THAT(Seqs(VALUE(audit().ReadAudit(4, 100))), ElementsAre(5u));
  EXPECT_TRUE(VALUE(audit().ReadAudit(5, 100)).empty());
  EXPECT_TRUE(VALUE(audit().ReadAudit(0, 0)).empty());
  EXPECT_TRUE(VALUE(audit().ReadAudit(UINT64_MAX, 10)).empty());
}

TEST_F(StorageTest, AuditSurvivesReopen) {
  for (uint64_t s = 1; s <= 3; ++s) ASSERT_OK(audit().AppendAudit(Audit(s)));
  Reopen();  // Recovery from the WAL only.
  ExpectAuditEq(VALUE(audit().LastAudit()), Audit(3));
  EXPECT_EQ(audit().AppendAudit(Audit(3)).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(audit().AppendAudit(Audit(4)));
  ASSERT_OK(storage_->Flush());
  Reopen();
  EXPECT_THAT(Seqs(VALUE(audit().ReadAudit(0, 100))),
              ElementsAre(1u, 2u, 3u, 4u));
}

TEST_F(StorageTest, ConcurrentAuditAppendsExactlyOneWins) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 50;
  // In each round all threads append the same seq at once.
  for (uint64_t seq = 1; seq <= kRounds; ++seq) {
    std::atomic<bool> go{false};
    std::atomic<int> wins{0};
    std::atomic<int> refused{0};
    std::atomic<int> winner{-1};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        AuditRecord r = Audit(seq);
        r.actor = absl::StrCat("thread ", t);
        while (!go.load()) std::this_thread::yield();
        absl::Status s = audit().AppendAudit(r);
        if (s.ok()) {
          ++wins;
          winner = t;
        } else if (s.code() == absl::StatusCode::kFailedPrecondition) {
          ++refused;
        }
      });
    }
    go = true;
    for (auto& th : threads) th.join();
    ASSERT_EQ(wins.load(), 1) << "seq " << seq;
    ASSERT_EQ(refused.load(), kThreads - 1) << "seq " << seq;
    EXPECT_EQ(VALUE(audit().LastAudit()).actor,
              absl::StrCat("thread ", winner.load()));
  }
  EXPECT_EQ(VALUE(audit().ReadAudit(0, 1000)).size(),
            static_cast<size_t>(kRounds));
}

// -------------------------------------------------------- admin tokens

TEST_F(StorageTest, AdminTokensPutGetFindList) {
  EXPECT_TRUE(VALUE(tokens().ListAdminTokens()).empty());
  std::string hash_b(32, '\0');  // Raw hash bytes, including NUL and 0xff.
  hash_b[7] = '\xff';
  AdminTokenRecord a = Token("t_00000000000000aa", std::string(32, 'a'));
  AdminTokenRecord b = Token("t_00000000000000bb", hash_b);
  b.role = "auditor";
  b.created_by = a.token_id;
  AdminTokenRecord c = Token("t_0000000000000001", std::string(32, 'c'));
  c.role = "lawful_access";
  for (const auto* t : {&b, &a, &c}) ASSERT_OK(tokens().PutAdminToken(*t));

  ExpectTokenEq(VALUE(tokens().GetAdminToken(b.token_id)), b);
  ExpectTokenEq(VALUE(tokens().FindAdminTokenByHash(hash_b)), b);
  ExpectTokenEq(VALUE(tokens().FindAdminTokenByHash(a.token_hash)), a);
  absl::Status missing = tokens().GetAdminToken("t_ffffffffffffffff").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "admin token t_ffffffffffffffff not found");
  EXPECT_EQ(tokens().FindAdminTokenByHash(std::string(32, 'z')).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(tokens().FindAdminTokenByHash("").status().code(),
            absl::StatusCode::kNotFound);

  std::vector<AdminTokenRecord> all = VALUE(tokens().ListAdminTokens());
  ASSERT_EQ(all.size(), 3u);  // Ordered by token_id.
  ExpectTokenEq(all[0], c);
  ExpectTokenEq(all[1], a);
  ExpectTokenEq(all[2], b);

  // Invalid records are refused.
  EXPECT_EQ(tokens().PutAdminToken(Token("", "h")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokens().PutAdminToken(Token("t_x", "")).code(),
            absl::StatusCode::kInvalidArgument);
  // A hash belongs to one token only.
  EXPECT_EQ(tokens().PutAdminToken(Token("t_other", a.token_hash)).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(tokens().GetAdminToken("t_other").status().code(),
            absl::StatusCode::kNotFound);
  ExpectTokenEq(VALUE(tokens().FindAdminTokenByHash(a.token_hash)), a);
}

TEST_F(StorageTest, AdminTokenRevokeAndReopen) {
  AdminTokenRecord a = Token("t_a", "hash-a");
  AdminTokenRecord b = Token("t_b", "hash-b");
  ASSERT_OK(tokens().PutAdminToken(a));
  ASSERT_OK(tokens().PutAdminToken(b));
  // Revocation is a put of the same record with revoked set.
  a.revoked = true;
  a.revoked_at_ms = 9000;
  ASSERT_OK(tokens().PutAdminToken(a));
  ExpectTokenEq(VALUE(tokens().GetAdminToken("t_a")), a);
  // Still found by hash (the caller refuses revoked tokens) and listed.
  ExpectTokenEq(VALUE(tokens().FindAdminTokenByHash("hash-a")), a);
  EXPECT_EQ(VALUE(tokens().ListAdminTokens()).size(), 2u);

  Reopen();
  ExpectTokenEq(VALUE(tokens().GetAdminToken("t_a")), a);
  ExpectTokenEq(VALUE(tokens().FindAdminTokenByHash("hash-a")), a);
  ExpectTokenEq(VALUE(tokens().FindAdminTokenByHash("hash-b")), b);
  std::vector<AdminTokenRecord> all = VALUE(tokens().ListAdminTokens());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_TRUE(all[0].revoked);
  EXPECT_FALSE(all[1].revoked);
}

TEST_F(StorageTest, AdminTokenHashIndexFollowsRecord) {
  // The contract forbids changing a token's hash; if it happens anyway the
  // old hash must stop resolving.
  ASSERT_OK(tokens().PutAdminToken(Token("t_a", "old-hash")));
  ASSERT_OK(tokens().PutAdminToken(Token("t_a", "new-hash")));
  EXPECT_EQ(tokens().FindAdminTokenByHash("old-hash").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(VALUE(tokens().FindAdminTokenByHash("new-hash")).token_id, "t_a");
  EXPECT_EQ(VALUE(tokens().ListAdminTokens()).size(), 1u);
  // The freed hash can be used by another token.
  ASSERT_OK(tokens().PutAdminToken(Token("t_b", "old-hash")));
  EXPECT_EQ(VALUE(tokens().FindAdminTokenByHash("old-hash")).token_id, "t_b");
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
  AppendRequest r = IdemReq("g", {{"b", 1}}, "a", 1, "cm-1", 5000);
  r.keep_history = true;
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

// The idempotency window: a record older than idempotency_not_before_ms is
// treated as absent, and the new Send's record replaces it.
TEST_F(StorageTest, IdempotencyRecordOutsideTheWindowIsAbsent) {
  MakeAccount("a");
  MakeAccount("b");
  MakeGroup("g", {"a", "b"});
  AppendRequest r = IdemReq("g", {{"b", 1}}, "a", 1, "cm-1", 5000);
  ASSERT_EQ(VALUE(msgs().Append(r)).seq, 1u);

  AppendRequest retry = r;
  retry.server_time_ms = 9000;
  retry.idempotency_not_before_ms = 5000;  // the record is just inside
  AppendResult inside = VALUE(msgs().Append(retry));
  EXPECT_TRUE(inside.duplicate);
  EXPECT_EQ(inside.seq, 1u);

  retry.idempotency_not_before_ms = 5001;  // just outside: a new message
  AppendResult outside = VALUE(msgs().Append(retry));
  EXPECT_FALSE(outside.duplicate);
  EXPECT_EQ(outside.seq, 2u);
  EXPECT_EQ(outside.server_time_ms, 9000);
  EXPECT_EQ(Queue("b", 1).size(), 2u);

  // The new record replaced the old one: a retry now returns seq 2.
  Reopen();
  AppendResult again = VALUE(msgs().Append(retry));
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.seq, 2u);
  EXPECT_EQ(again.server_time_ms, 9000);
  EXPECT_EQ(Queue("b", 1).size(), 2u);
}

TEST_F(StorageTest, PurgeIdempotencyBeforeDeletesOldRecords) {
  MakeAccount("a");
  const uint32_t d2 = AddDevice("a", "t2");
  MakeAccount("b");
  MakeGroup("g", {"a", "b"});
  auto send = [&](uint32_t device, const std::string& id, int64_t t) {
    return VALUE(msgs().Append(IdemReq("g", {{"b", 1}}, "a", device, id, t)));
  };
  for (int i = 1; i <= 4; ++i) {
    ASSERT_FALSE(send(1, absl::StrCat("one-", i), i * 1000).duplicate);
    ASSERT_FALSE(send(d2, absl::StrCat("two-", i), i * 1000).duplicate);
  }
  ASSERT_FALSE(send(1, "no-window", 500).duplicate);
  // Another account's records are walked too.
  ASSERT_FALSE(
      VALUE(msgs().Append(IdemReq("g", {{"a", 1}}, "b", 1, "one-1", 1000)))
          .duplicate);

  // 1000 and 2000 of both devices of a, 500, and b's 1000.
  EXPECT_EQ(VALUE(msgs().PurgeIdempotencyBefore(2500)), 6u);
  EXPECT_EQ(VALUE(msgs().PurgeIdempotencyBefore(2500)), 0u);
  Reopen();
  // Purged ids are new messages again; kept ones are still retries.
  EXPECT_FALSE(send(1, "one-2", 6000).duplicate);
  EXPECT_FALSE(send(d2, "two-1", 6000).duplicate);
  EXPECT_FALSE(send(1, "no-window", 6000).duplicate);
  EXPECT_TRUE(send(1, "one-3", 6000).duplicate);
  EXPECT_TRUE(send(d2, "two-4", 6000).duplicate);
  // The records the retries above wrote are new: nothing older than 2500.
  EXPECT_EQ(VALUE(msgs().PurgeIdempotencyBefore(2500)), 0u);
  // 4 kept (one-3, one-4, two-3, two-4) and 3 new.
  EXPECT_EQ(VALUE(msgs().PurgeIdempotencyBefore(INT64_MAX)), 7u);
}

// A record that an Append replaced while the purge walked the old one is
// kept: the purge reads each record again under the sender's lock.
TEST_F(StorageTest, PurgeIdempotencyKeepsRecordsReplacedMeanwhile) {
  MakeAccount("a");
  MakeAccount("b");
  MakeGroup("g", {"a", "b"});
  constexpr int kIds = 3000;
  auto req = [&](int i, int64_t t) {
    AppendRequest r =
        IdemReq("g", {{"b", 1}}, "a", 1, absl::StrCat("id-", i), t);
    r.idempotency_not_before_ms = 2000;
    return r;
  };
  for (int i = 0; i < kIds; ++i) ASSERT_TRUE(msgs().Append(req(i, 1000)).ok());
  // Every record is old. One thread replaces them (a Send outside the
  // window) while the purge deletes the old ones.
  std::vector<uint64_t> new_seq(kIds, 0);
  std::thread writer([&] {
    for (int i = kIds - 1; i >= 0; --i) {
      auto r = msgs().Append(req(i, 5000));
      if (r.ok() && !r->duplicate) new_seq[i] = r->seq;
    }
  });
  absl::StatusOr<size_t> purged = msgs().PurgeIdempotencyBefore(2000);
  writer.join();
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_LE(*purged, static_cast<size_t>(kIds));
  // Every replacement's record survived: a retry returns its seq.
  int checked = 0;
  for (int i = 0; i < kIds; ++i) {
    ASSERT_NE(new_seq[i], 0u) << i;
    AppendResult again = VALUE(msgs().Append(req(i, 6000)));
    ASSERT_TRUE(again.duplicate) << "record of id-" << i << " was lost";
    EXPECT_EQ(again.seq, new_seq[i]);
    ++checked;
  }
  EXPECT_EQ(checked, kIds);
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
  // Read (and cached) before the append that changes it.
  EXPECT_EQ(VALUE(convs().GetConversation("g")).security.epoch, 1u);
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

// A payload that cannot be made aborts the whole Append: no seq, no history,
// no queue entry for any target (those before the failing one included), no
// delivery id used and no idempotency record, so a retry is a first send.
TEST_F(StorageTest, AppendWhosePayloadFailsWritesNothing) {
  MakeAccount("a");
  MakeAccount("b");
  AddDevice("b", "tb2");
  MakeGroup("g", {"a", "b"});
  const std::vector<QueueTarget> targets = {{"a", 1}, {"b", 1}, {"b", 2}};
  auto request = [&] {
    AppendRequest r = Req("g", targets);
    r.sender_account_id = "a";
    r.sender_device_id = 1;
    r.client_message_id = "m-1";
    r.keep_history = true;
    return r;
  };
  auto expect_nothing_stored = [&] {
    EXPECT_TRUE(VALUE(msgs().ReadHistory("g", 0, 10)).empty());
    for (const QueueTarget& t : targets) {
      EXPECT_TRUE(Queue(t.account_id, t.device_id).empty()) << t.account_id;
      EXPECT_EQ(VALUE(msgs().LastDeliveryId(t.account_id, t.device_id)), 0u);
    }
  };

  AppendRequest shared = request();
  shared.make_payload = [](uint64_t) -> absl::StatusOr<std::string> {
    return absl::InternalError("no payload today");
  };
  absl::StatusOr<AppendResult> r = msgs().Append(shared);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.status().message(), "no payload today");
  expect_nothing_stored();

  // Per-target payloads: the third target's fails after two were made.
  AppendRequest per_target = request();
  int made = 0;
  per_target.make_target_payload =
      [&](uint64_t seq, const QueueTarget& t) -> absl::StatusOr<std::string> {
    if (t.device_id == 2) return absl::InternalError("no stamp");
    ++made;
    return absl::StrCat("for ", t.account_id, " #", seq);
  };
  r = msgs().Append(per_target);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(made, 2);
  expect_nothing_stored();

  // The retry is stored as the conversation's first message, not as a
  // duplicate of an Append that never happened.
  r = msgs().Append(request());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->seq, 1u);
  EXPECT_FALSE(r->duplicate);
  for (const QueueTarget& t : targets) {
    ASSERT_EQ(Queue(t.account_id, t.device_id).size(), 1u) << t.account_id;
    EXPECT_EQ(Queue(t.account_id, t.device_id)[0].delivery_id, 1u);
  }
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

// The global purge skips from a conversation's first entry inside retention
// to the next conversation, also when ids are prefixes of each other.
TEST_F(StorageTest, PurgeHistoryBeforeSkipsKeptEntriesPerConversation) {
  const std::vector<std::string> ids = {"g", "g\x01", "ga", "h"};
  for (const auto& id : ids) MakeGroup(id, {"a"});
  for (size_t k = 0; k < ids.size(); ++k) {
    for (int i = 1; i <= 3; ++i) {
      AppendRequest r = Req(ids[k], {});
      r.keep_history = true;
      // "g" and "ga": old, old, new; "g\x01" and "h": all new.
      r.server_time_ms = (k % 2 == 0 && i < 3) ? 10 : 1000;
      ASSERT_TRUE(msgs().Append(r).ok());
    }
  }
  EXPECT_EQ(VALUE(msgs().PurgeHistoryBefore(500)), 4u);
  for (size_t k = 0; k < ids.size(); ++k) {
    EXPECT_EQ(VALUE(msgs().ReadHistory(ids[k], 0, 10)).size(), k % 2 == 0 ? 1u : 3u)
        << absl::CEscape(ids[k]);
  }
}

TEST_F(StorageTest, PurgeConversationHistoryAndDeleteEntry) {
  MakeGroup("g", {"a"});
  MakeGroup("h", {"a"});
  for (int i = 1; i <= 5; ++i) {
    for (const char* conv : {"g", "h"}) {
      AppendRequest r = Req(conv, {});
      r.keep_history = true;
      r.server_time_ms = i * 100;
      ASSERT_TRUE(msgs().Append(r).ok());
    }
  }
  EXPECT_EQ(VALUE(msgs().PurgeConversationHistoryBefore("g", 300)), 2u);
  EXPECT_EQ(VALUE(msgs().ReadHistory("g", 0, 100)).size(), 3u);
  EXPECT_EQ(VALUE(msgs().ReadHistory("h", 0, 100)).size(), 5u);  // untouched
  ASSERT_OK(msgs().DeleteHistoryEntry("g", 4));
  std::vector<uint64_t> left;
  for (const auto& e : VALUE(msgs().ReadHistory("g", 0, 100))) left.push_back(e.seq);
  EXPECT_THAT(left, ElementsAre(5u, 3u));
  EXPECT_EQ(msgs().DeleteHistoryEntry("g", 4).code(), absl::StatusCode::kNotFound);
  // A global purge counts only the entries left.
  EXPECT_EQ(VALUE(msgs().PurgeHistoryBefore(1000)), 7u);
}

TEST_F(StorageTest, PurgeQueuesBeforeDeletesOldUndeliveredEntries) {
  MakeAccount("a");
  uint32_t d2 = AddDevice("a", "t2");
  MakeGroup("g", {"a"});
  for (int i = 1; i <= 4; ++i) {
    AppendRequest r = Req("g", {{"a", 1}, {"a", d2}});
    r.server_time_ms = i * 1000;
    ASSERT_TRUE(msgs().Append(r).ok());
  }
  EXPECT_EQ(VALUE(msgs().PurgeQueuesBefore(2500)), 4u);  // 2 per device
  EXPECT_EQ(Queue("a", 1).size(), 2u);
  EXPECT_EQ(Queue("a", d2).size(), 2u);
  EXPECT_EQ(Queue("a", 1).front().delivery_id, 3u);
  // Delivery ids keep increasing after a purge.
  AppendRequest later = Req("g", {{"a", 1}});
  later.server_time_ms = 5000;
  ASSERT_TRUE(msgs().Append(later).ok());
  EXPECT_EQ(VALUE(msgs().LastDeliveryId("a", 1)), 5u);
  EXPECT_EQ(VALUE(msgs().PurgeQueuesBefore(2500)), 0u);
}

// A store with account "a" (device 1) and a group "g" of which it is the
// only member.
absl::StatusOr<std::unique_ptr<Storage>> OpenWithAccountAndGroup(
    const RocksDbOptions& opts) {
  auto st = OpenRocksDbStorage(opts);
  if (!st.ok()) return st.status();
  AccountRecord a;
  a.account_id = "a";
  a.username = "a";
  DeviceRecord d;
  d.account_id = "a";
  d.device_id = 1;
  d.token_hash = std::string(32, 't');
  auto created = (*st)->accounts().CreateAccount(a, d);
  if (!created.ok()) return created.status();
  ConversationRecord c;
  c.conversation_id = "g";
  c.kind = 2;
  c.members.push_back({.account_id = "a"});
  absl::Status conv = (*st)->conversations().CreateConversation(c);
  if (!conv.ok()) return conv;
  return st;
}

// Sync mode (SyncWAL) and batch_wal_writes (FlushWAL) share the committer.
class StorageCommitTest : public ::testing::TestWithParam<bool> {};

TEST_P(StorageCommitTest, DeferredAppendsBecomeDurableThroughWhenDurable) {
  char tmpl[] = "/tmp/parley_storage_sync.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    RocksDbOptions opts;
    opts.path = dir + "/db";
    opts.sync = GetParam();
    auto st = OpenWithAccountAndGroup(opts);
    ASSERT_TRUE(st.ok()) << st.status();
    Storage& s = **st;
    // Many deferred appends from several threads, each waiting through
    // WhenDurable; every callback runs exactly once, with OK.
    std::atomic<int> answered{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 50; ++i) {
          AppendRequest r;
          r.conversation_id = "g";
          r.sender_account_id = "a";
          r.sender_device_id = 1;
          r.client_message_id = absl::StrCat("m", t, "-", i);
          r.server_time_ms = 1;
          r.targets = {{"a", 1}};
          r.defer_durability = true;
          r.make_payload = [](uint64_t seq) { return absl::StrCat("p", seq); };
          ASSERT_TRUE(s.messages().Append(r).ok());
          absl::Notification n;
          s.WhenDurable([&](absl::Status st) {
            EXPECT_TRUE(st.ok()) << st;
            ++answered;
            n.Notify();
          });
          n.WaitForNotification();
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(answered.load(), 200);
    EXPECT_EQ(VALUE(s.messages().ReadQueue("a", 1, 0, 1000)).size(), 200u);
    // The committer's rounds and the waiters they answered (WhenDurable
    // answers inline a caller an earlier round already covered).
    const StorageStats stats = s.Stats();
    EXPECT_GE(stats.group_commits, 1u);
    EXPECT_GE(stats.group_commit_waiters, stats.group_commits);
    EXPECT_LE(stats.group_commit_waiters, 200u);
    EXPECT_GT(stats.memtable_bytes, 0u);
    EXPECT_FALSE(stats.writes_stopped);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

INSTANTIATE_TEST_SUITE_P(SyncAndBatchedWal, StorageCommitTest,
                         ::testing::Bool(), [](const auto& info) {
                           return info.param ? "Sync" : "BatchedWal";
                         });

// Bytes in the write-ahead-log files of a database directory.
uint64_t WalBytes(const std::string& db_dir) {
  uint64_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(db_dir)) {
    if (e.path().extension() == ".log") n += e.file_size();
  }
  return n;
}

// batch_wal_writes: a deferred append's log record stays in RocksDB's buffer
// (not yet in the file: a kill -9 would lose it, so nothing may expose it)
// until WhenDurable writes it out from the committer thread, or a reader
// writes it out before returning it; every other write is in the file when
// it returns. Without batch_wal_writes every write is in the file at once.
TEST(StorageBatchedWalTest, DeferredRecordsReachTheLogBeforeAnyoneSeesThem) {
  for (const bool batched : {true, false}) {
    SCOPED_TRACE(batched ? "batch_wal_writes" : "plain");
    char tmpl[] = "/tmp/parley_storage_wal.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl;
    {
      RocksDbOptions opts;
      opts.path = dir + "/db";
      opts.batch_wal_writes = batched;
      auto st = OpenWithAccountAndGroup(opts);
      ASSERT_TRUE(st.ok()) << st.status();
      Storage& s = **st;
      auto append = [&](const std::string& id, bool deferred) {
        AppendRequest r;
        r.conversation_id = "g";
        r.sender_account_id = "a";
        r.sender_device_id = 1;
        r.client_message_id = id;
        r.server_time_ms = 1;
        r.targets = {{"a", 1}};
        r.keep_history = true;
        r.defer_durability = deferred;
        r.make_payload = [](uint64_t seq) { return absl::StrCat("p", seq); };
        return s.messages().Append(r);
      };
      // Other writes are in the file on return.
      const uint64_t start = WalBytes(opts.path);
      EXPECT_GT(start, 0u);

      // 1. A deferred append, then WhenDurable.
      ASSERT_OK(append("m1", true).status());
      const uint64_t after_append = WalBytes(opts.path);
      if (batched) {
        EXPECT_EQ(after_append, start) << "the record must still be buffered";
      } else {
        EXPECT_GT(after_append, start);
      }
      absl::Notification n;
      std::thread::id answered_on;
      char thread_name[16] = "";
      s.WhenDurable([&](absl::Status st) {
        EXPECT_TRUE(st.ok()) << st;
        answered_on = std::this_thread::get_id();
        pthread_getname_np(pthread_self(), thread_name, sizeof(thread_name));
        n.Notify();
      });
      ASSERT_TRUE(n.WaitForNotificationWithTimeout(absl::Seconds(20)));
      EXPECT_GT(WalBytes(opts.path), start);
      // Batched: answered by the committer (named for profiles); otherwise
      // inline.
      EXPECT_EQ(answered_on != std::this_thread::get_id(), batched);
      if (batched) {
        EXPECT_STREQ(thread_name, "parley-commit");
      }

      // 2. A deferred append read back through ReadQueue / ReadHistory
      //    before anyone waited for it: in the file once the read returns.
      for (const bool queue : {true, false}) {
        const uint64_t before = WalBytes(opts.path);
        ASSERT_OK(append(queue ? "m2" : "m3", true).status());
        if (batched) {
          EXPECT_EQ(WalBytes(opts.path), before);
        }
        if (queue) {
          EXPECT_EQ(VALUE(s.messages().ReadQueue("a", 1, 0, 10)).size(), 2u);
        } else {
          EXPECT_EQ(VALUE(s.messages().ReadHistory("g", 0, 10)).size(), 3u);
        }
        EXPECT_GT(WalBytes(opts.path), before);
        // Nothing buffered any more: WhenDurable answers inline.
        bool inline_answer = false;
        s.WhenDurable([&](absl::Status st) {
          EXPECT_TRUE(st.ok()) << st;
          inline_answer = true;
        });
        EXPECT_TRUE(inline_answer);
      }

      // 3. A non-deferred append and an ack are in the file on return.
      uint64_t before = WalBytes(opts.path);
      ASSERT_OK(append("m4", false).status());
      EXPECT_GT(WalBytes(opts.path), before);
      before = WalBytes(opts.path);
      EXPECT_EQ(VALUE(s.messages().Ack("a", 1, {1})), 1u);
      EXPECT_GT(WalBytes(opts.path), before);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
}

// A file system whose writes fail with "no space" while full() is set, as a
// full disk's do: appends, flushes and syncs of every file RocksDB writes
// (log, table and manifest files alike). Creating, reading and deleting
// files still work.
class FullDiskFs final : public rocksdb::FileSystemWrapper {
 public:
  FullDiskFs() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "parley.FullDiskFs"; }

  void SetFull(bool full) { full_.store(full); }
  // Writes refused so far.
  int refused() const { return refused_.load(); }

  rocksdb::IOStatus NewWritableFile(const std::string& f,
                                    const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    return Wrap(target()->NewWritableFile(f, o, r, dbg), r);
  }
  rocksdb::IOStatus ReopenWritableFile(
      const std::string& f, const rocksdb::FileOptions& o,
      std::unique_ptr<rocksdb::FSWritableFile>* r,
      rocksdb::IODebugContext* dbg) override {
    return Wrap(target()->ReopenWritableFile(f, o, r, dbg), r);
  }
  rocksdb::IOStatus ReuseWritableFile(
      const std::string& f, const std::string& old,
      const rocksdb::FileOptions& o,
      std::unique_ptr<rocksdb::FSWritableFile>* r,
      rocksdb::IODebugContext* dbg) override {
    return Wrap(target()->ReuseWritableFile(f, old, o, r, dbg), r);
  }

 private:
  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, FullDiskFs* fs)
        : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& d,
                             const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->Refuse()) return rocksdb::IOStatus::NoSpace("test: disk full");
      return FSWritableFileOwnerWrapper::Append(d, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& d,
                             const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->Refuse()) return rocksdb::IOStatus::NoSpace("test: disk full");
      return FSWritableFileOwnerWrapper::Append(d, o, v, dbg);
    }
    rocksdb::IOStatus Flush(const rocksdb::IOOptions& o,
                            rocksdb::IODebugContext* dbg) override {
      if (fs_->Refuse()) return rocksdb::IOStatus::NoSpace("test: disk full");
      return FSWritableFileOwnerWrapper::Flush(o, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* dbg) override {
      if (fs_->Refuse()) return rocksdb::IOStatus::NoSpace("test: disk full");
      return FSWritableFileOwnerWrapper::Sync(o, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o,
                            rocksdb::IODebugContext* dbg) override {
      if (fs_->Refuse()) return rocksdb::IOStatus::NoSpace("test: disk full");
      return FSWritableFileOwnerWrapper::Fsync(o, dbg);
    }

   private:
    FullDiskFs* fs_;
  };

  bool Refuse() {
    if (!full_.load()) return false;
    ++refused_;
    return true;
  }
  rocksdb::IOStatus Wrap(rocksdb::IOStatus s,
                         std::unique_ptr<rocksdb::FSWritableFile>* r) {
    if (s.ok()) *r = std::make_unique<File>(std::move(*r), this);
    return s;
  }

  std::atomic<bool> full_{false};
  std::atomic<int> refused_{0};
};

// A full disk, in each of the store's log modes: batch_wal_writes (the
// default), every write in the log file when it returns (plain), and
// fsync'ed group commit (sync). Every Send on the full disk fails with
// RESOURCE_EXHAUSTED, readers still read, and the store works again once
// space is back, even with Sends arriving without pause.
// With batch_wal_writes, after the first failed log write RocksDB's log
// writer answers every later one "Seen error", which it ranks as fatal
// (DB::Resume() refuses it): so the store must make no second log write
// until it has resumed on a new log, and must rank a racing write's
// aftermath as the out-of-space error it is. (CI's end-to-end disk-full
// test once hit that race; here the disk fills on demand.)
enum class LogMode { kBatched, kPlain, kSync };

const char* LogModeName(LogMode m) {
  switch (m) {
    case LogMode::kBatched:
      return "BatchedWal";
    case LogMode::kPlain:
      return "Plain";
    case LogMode::kSync:
      return "Sync";
  }
  return "Unknown";
}
// For gtest's and ctest's test names: the mode, not its bytes.
void PrintTo(LogMode m, std::ostream* os) { *os << LogModeName(m); }

class StorageFullDiskTest : public ::testing::TestWithParam<LogMode> {};

TEST_P(StorageFullDiskTest, LogWritesFailCleanlyAndTheStoreResumesAfterwards) {
  char tmpl[] = "/tmp/parley_storage_full.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    auto fs = std::make_shared<FullDiskFs>();
    std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
    RocksDbOptions opts;
    opts.path = dir + "/db";
    opts.env = env.get();
    opts.batch_wal_writes = GetParam() == LogMode::kBatched;
    opts.sync = GetParam() == LogMode::kSync;
    auto st = OpenWithAccountAndGroup(opts);
    ASSERT_TRUE(st.ok()) << st.status();
    Storage& s = **st;
    std::atomic<int> next_id{0};
    // A deferred append and its WhenDurable, as a Send makes them: the
    // append's status if it failed, else WhenDurable's.
    auto send = [&]() -> absl::Status {
      AppendRequest r;
      r.conversation_id = "g";
      r.sender_account_id = "a";
      r.sender_device_id = 1;
      r.client_message_id = absl::StrCat("m", next_id++);
      r.server_time_ms = 1;
      r.targets = {{"a", 1}};
      r.keep_history = true;
      r.defer_durability = true;
      r.make_payload = [](uint64_t seq) { return absl::StrCat("p", seq); };
      absl::StatusOr<AppendResult> a = s.messages().Append(r);
      if (!a.ok()) return a.status();
      absl::Notification n;
      absl::Status durable;
      s.WhenDurable([&](absl::Status d) {
        durable = d;
        n.Notify();
      });
      if (!n.WaitForNotificationWithTimeout(absl::Seconds(30))) {
        return absl::DeadlineExceededError("WhenDurable never answered");
      }
      return durable;
    };
    ASSERT_OK(send());
    ASSERT_OK(send());

    fs->SetFull(true);
    // 1. One at a time: the first log write fails, and so does every later
    //    Send, each with RESOURCE_EXHAUSTED (not the log writer's "Seen
    //    error", nor UNAVAILABLE).
    for (int i = 0; i < 5; ++i) {
      const absl::Status r = send();
      EXPECT_EQ(r.code(), absl::StatusCode::kResourceExhausted)
          << i << ": " << r;
    }
    // 2. Many at once, from four threads.
    std::vector<std::thread> threads;
    std::atomic<int> exhausted{0};
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 25; ++i) {
          const absl::Status r = send();
          if (r.code() == absl::StatusCode::kResourceExhausted) {
            ++exhausted;
          } else {
            ADD_FAILURE() << "concurrent send on a full disk: " << r;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(exhausted.load(), 100);
    EXPECT_GT(fs->refused(), 0);
    EXPECT_TRUE(s.Stats().writes_stopped);
    // 3. Readers still read on the full disk, the two acknowledged messages
    //    among what they see.
    const auto queue = s.messages().ReadQueue("a", 1, 0, 1000);
    ASSERT_TRUE(queue.ok()) << queue.status();
    EXPECT_GE(queue->size(), 2u);
    const auto history = s.messages().ReadHistory("g", 0, 1000);
    ASSERT_TRUE(history.ok()) << history.status();
    EXPECT_GE(history->size(), 2u);

    // 4. Space is back: Sends work again once the store has resumed (its
    //    retries back off to 4 s), even with Sends arriving without pause
    //    meanwhile, as under load: two threads retry at once until one
    //    succeeds. Bounded at 20 s (as the end-to-end test) and 10 million
    //    tries each: a store that lets those Sends reach RocksDB while it
    //    resumes took 50 s here (each refused write failed the Resume()).
    fs->SetFull(false);
    std::atomic<bool> resumed{false};
    std::atomic<int> other_codes{0};
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    threads.clear();
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&] {
        for (int i = 0;
             i < 10'000'000 && !resumed.load() && absl::Now() < give_up; ++i) {
          const absl::Status r = send();
          if (r.ok()) {
            resumed = true;
          } else if (r.code() != absl::StatusCode::kResourceExhausted) {
            if (++other_codes == 1) ADD_FAILURE() << "while resuming: " << r;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_TRUE(resumed.load()) << "Send never worked again";
    EXPECT_EQ(other_codes.load(), 0);
    ASSERT_OK(send());
    EXPECT_FALSE(s.Stats().writes_stopped);
    // The acknowledged messages are all there, in order, after a reopen.
    const uint64_t last_seq =
        VALUE(s.conversations().GetConversation("g")).last_seq;
    st->reset();
    auto reopened = OpenRocksDbStorage(opts);
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    const auto again = VALUE((*reopened)->messages().ReadHistory("g", 0, 1000));
    EXPECT_GE(again.size(), 4u);
    uint64_t newest = 0;
    for (const auto& h : again) newest = std::max(newest, h.seq);
    EXPECT_EQ(newest, last_seq);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

INSTANTIATE_TEST_SUITE_P(LogModes, StorageFullDiskTest,
                         ::testing::Values(LogMode::kBatched, LogMode::kPlain,
                                           LogMode::kSync),
                         [](const auto& info) {
                           return std::string(LogModeName(info.param));
                         });

TEST_F(StorageTest, ReportsNumberedListedAndIndexedByStatus) {
  SafetyStore& s = storage_->safety();
  EXPECT_EQ(s.GetReport(1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(VALUE(s.AddReport("one")), 1u);
  EXPECT_EQ(VALUE(s.AddReport("two")), 2u);
  EXPECT_EQ(VALUE(s.AddReport("three")), 3u);
  ASSERT_OK(s.UpdateReport({.number = 2, .open = false, .body = "two resolved"}));
  EXPECT_EQ(s.UpdateReport({.number = 9, .open = false, .body = "x"}).code(),
            absl::StatusCode::kNotFound);
  auto open = VALUE(s.ListReports(true, 0, 10));
  ASSERT_EQ(open.size(), 2u);
  EXPECT_EQ(open[0].number, 1u);
  EXPECT_EQ(open[1].body, "three");
  auto all = VALUE(s.ListReports(false, 1, 10));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].body, "two resolved");
  EXPECT_FALSE(all[0].open);
  Reopen();
  EXPECT_EQ(VALUE(storage_->safety().AddReport("four")), 4u);
  EXPECT_EQ(VALUE(storage_->safety().GetReport(2)).body, "two resolved");
}

TEST_F(StorageTest, NoticesComeDueInTimeOrder) {
  SafetyStore& s = storage_->safety();
  ASSERT_OK(s.ScheduleNotice({.due_ms = 300, .id = "c", .body = "C"}));
  ASSERT_OK(s.ScheduleNotice({.due_ms = 100, .id = "a", .body = "A"}));
  ASSERT_OK(s.ScheduleNotice({.due_ms = 200, .id = "b", .body = "B"}));
  EXPECT_TRUE(VALUE(s.DueNotices(99, 10)).empty());
  auto due = VALUE(s.DueNotices(200, 10));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].body, "A");
  EXPECT_EQ(due[1].due_ms, 200);
  ASSERT_OK(s.DeleteNotice(due[0]));
  EXPECT_EQ(VALUE(s.DueNotices(1000, 10)).size(), 2u);
  ASSERT_OK(s.PutSafetyValue("retention", "x"));
  EXPECT_EQ(VALUE(s.GetSafetyValue("retention")), "x");
  EXPECT_EQ(s.GetSafetyValue("none").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, CompactRemovesDeletedBytesFromFiles) {
  MakeGroup("g", {"a"});
  const std::string marker = "purge-marker-7f3a9c";
  AppendRequest r = Req("g", {});
  r.keep_history = true;
  r.server_time_ms = 10;
  r.make_payload = [&](uint64_t) { return marker; };
  ASSERT_TRUE(msgs().Append(r).ok());
  ASSERT_OK(storage_->Flush());
  EXPECT_EQ(VALUE(msgs().PurgeHistoryBefore(1000)), 1u);
  ASSERT_OK(storage_->Compact());
  storage_.reset();
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir_)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(data.find(marker), std::string::npos) << e.path();
  }
  Open();
}

TEST_F(StorageTest, StatsReportMemtablesTableFilesAndCommits) {
  const StorageStats fresh = storage_->Stats();
  EXPECT_EQ(fresh.group_commits, 0u);
  EXPECT_EQ(fresh.group_commit_waiters, 0u);
  EXPECT_FALSE(fresh.writes_stopped);
  MakeGroup("g", {"a"});
  for (int i = 0; i < 20; ++i) {
    AppendRequest r = Req("g", {});
    r.keep_history = true;
    // Incompressible, so the table file holds all of it.
    r.make_payload = [](uint64_t seq) {
      std::mt19937 gen(static_cast<uint32_t>(seq));
      std::string p(1000, '\0');
      for (char& c : p) c = static_cast<char>(gen());
      return p;
    };
    ASSERT_TRUE(msgs().Append(r).ok());
  }
  const StorageStats written = storage_->Stats();
  EXPECT_GT(written.memtable_bytes, fresh.memtable_bytes);
  // 20 kB of history reaches a table file on a flush; the memtables shrink.
  ASSERT_OK(storage_->Flush());
  const StorageStats flushed = storage_->Stats();
  EXPECT_GE(flushed.table_file_bytes, fresh.table_file_bytes + 20'000);
  EXPECT_LT(flushed.memtable_bytes, written.memtable_bytes);
  // A WhenDurable that has to wait is one commit with one waiter.
  AppendRequest deferred = Req("g", {});
  deferred.defer_durability = true;
  ASSERT_TRUE(msgs().Append(deferred).ok());
  absl::Notification n;
  storage_->WhenDurable([&](absl::Status st) {
    EXPECT_TRUE(st.ok()) << st;
    n.Notify();
  });
  n.WaitForNotification();
  const StorageStats committed = storage_->Stats();
  EXPECT_EQ(committed.group_commits, 1u);
  EXPECT_EQ(committed.group_commit_waiters, 1u);
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

// ---------------------------------------------------------------- keys

TEST_F(StorageTest, DeviceKeysSetGetReplace) {
  MakeAccount("a");
  EXPECT_EQ(keys().GetDeviceKeys("a", 1).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_OK(keys().SetDeviceKeys(Keys("a", 1)));
  DeviceKeysRecord got = VALUE(keys().GetDeviceKeys("a", 1));
  EXPECT_EQ(got.account_id, "a");
  EXPECT_EQ(got.device_id, 1u);
  EXPECT_EQ(got.identity_key, "identity-1");
  EXPECT_EQ(got.registration_id, 4242u);
  EXPECT_EQ(got.signed_pre_key.key_id, 1u);
  EXPECT_EQ(got.signed_pre_key.public_key, "spk-1");
  EXPECT_EQ(got.signed_pre_key.signature, "sig-1");

  // A new signed pre-key replaces the old one.
  ASSERT_OK(keys().SetDeviceKeys(Keys("a", 1, "identity-1", 2)));
  got = VALUE(keys().GetDeviceKeys("a", 1));
  EXPECT_EQ(got.signed_pre_key.key_id, 2u);
  EXPECT_EQ(got.signed_pre_key.public_key, "spk-2");

  // Only existing devices have keys.
  EXPECT_EQ(keys().SetDeviceKeys(Keys("a", 2)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(keys().SetDeviceKeys(Keys("nobody", 1)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(keys().SetDeviceKeys(Keys("", 1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(keys().GetDeviceKeys("a", 2).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, OneTimePreKeysAddCountTakeLowestFirst) {
  MakeAccount("a");
  EXPECT_EQ(keys().AddOneTimePreKeys("a", 1, PreKeys({1})).code(),
            absl::StatusCode::kFailedPrecondition);  // no identity yet
  EXPECT_EQ(keys().AddOneTimePreKeys("a", 7, PreKeys({1})).code(),
            absl::StatusCode::kNotFound);
  ASSERT_OK(keys().SetDeviceKeys(Keys("a", 1)));
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)), 0u);
  EXPECT_EQ(keys().TakeOneTimePreKey("a", 1).status().code(),
            absl::StatusCode::kNotFound);

  ASSERT_OK(keys().AddOneTimePreKeys("a", 1, PreKeys({5, 300, 3, 70000})));
  ASSERT_OK(keys().AddOneTimePreKeys("a", 1, {}));
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)), 4u);
  // Duplicate ids within one batch: nothing is stored.
  EXPECT_EQ(keys().AddOneTimePreKeys("a", 1, PreKeys({8, 9, 8})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)), 4u);
  // The same id replaces the stored key.
  ASSERT_OK(keys().AddOneTimePreKeys("a", 1, PreKeys({5}, "new")));
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)), 4u);

  std::vector<uint32_t> taken;
  std::vector<std::string> publics;
  for (int i = 0; i < 4; ++i) {
    PreKeyRecord k = VALUE(keys().TakeOneTimePreKey("a", 1));
    taken.push_back(k.key_id);
    publics.push_back(k.public_key);
  }
  EXPECT_THAT(taken, ElementsAre(3u, 5u, 300u, 70000u));  // numeric order
  EXPECT_THAT(publics, ElementsAre("pk-3", "new-5", "pk-300", "pk-70000"));
  EXPECT_EQ(keys().TakeOneTimePreKey("a", 1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)), 0u);
  // The identity keys are not consumed.
  EXPECT_TRUE(keys().GetDeviceKeys("a", 1).ok());
}

TEST_F(StorageTest, OneTimePreKeysAreCappedPerDevice) {
  MakeAccount("a");
  ASSERT_OK(keys().SetDeviceKeys(Keys("a", 1)));
  for (uint32_t first = 1; first <= KeyStore::kMaxOneTimePreKeys;
       first += 100) {
    ASSERT_OK(keys().AddOneTimePreKeys("a", 1, PreKeys(Range(first, 100))));
  }
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)),
            KeyStore::kMaxOneTimePreKeys);
  // One more (in a batch that also replaces one): refused as a whole.
  absl::Status s = keys().AddOneTimePreKeys("a", 1, PreKeys({1, 5000}, "x"));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)),
            KeyStore::kMaxOneTimePreKeys);
  EXPECT_EQ(VALUE(keys().TakeOneTimePreKey("a", 1)).public_key, "pk-1");
  // Replacing stored ids does not grow the set; after a take there is room.
  ASSERT_OK(keys().AddOneTimePreKeys("a", 1, PreKeys({2, 3, 5000}, "x")));
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)),
            KeyStore::kMaxOneTimePreKeys);
  EXPECT_EQ(VALUE(keys().TakeOneTimePreKey("a", 1)).public_key, "x-2");
}

TEST_F(StorageTest, NewIdentityKeyClearsOneTimePreKeys) {
  MakeAccount("a");
  ASSERT_OK(keys().SetDeviceKeys(Keys("a", 1, "identity-1", 1)));
  ASSERT_OK(keys().AddOneTimePreKeys("a", 1, PreKeys({1, 2, 3})));
  // Same identity, new signed pre-key: the one-time pre-keys stay.
  ASSERT_OK(keys().SetDeviceKeys(Keys("a", 1, "identity-1", 2)));
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)), 3u);
  // A new identity (reinstall): they belonged to the old one.
  ASSERT_OK(keys().SetDeviceKeys(Keys("a", 1, "identity-2", 1)));
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)), 0u);
  EXPECT_EQ(keys().TakeOneTimePreKey("a", 1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(VALUE(keys().GetDeviceKeys("a", 1)).identity_key, "identity-2");
  ASSERT_OK(keys().AddOneTimePreKeys("a", 1, PreKeys({2}, "b")));
  EXPECT_EQ(VALUE(keys().TakeOneTimePreKey("a", 1)).public_key, "b-2");
}

TEST_F(StorageTest, RemoveDeviceDeletesKeys) {
  MakeAccount("a");
  MakeAccount("ab");  // shares a byte prefix with "a"
  uint32_t d2 = AddDevice("a", "t2");
  for (const auto& [account, device] :
       std::vector<std::pair<std::string, uint32_t>>{
           {"a", 1}, {"a", d2}, {"ab", 1}}) {
    ASSERT_OK(keys().SetDeviceKeys(Keys(account, device)));
    ASSERT_OK(keys().AddOneTimePreKeys(account, device, PreKeys({1, 2, 3})));
  }
  ASSERT_OK(accounts().RemoveDevice("a", d2));
  EXPECT_EQ(keys().GetDeviceKeys("a", d2).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", d2)), 0u);
  EXPECT_EQ(keys().TakeOneTimePreKey("a", d2).status().code(),
            absl::StatusCode::kNotFound);
  // Nothing can be written for the removed device afterwards.
  EXPECT_EQ(keys().SetDeviceKeys(Keys("a", d2)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(keys().AddOneTimePreKeys("a", d2, PreKeys({9})).code(),
            absl::StatusCode::kNotFound);
  // Other devices keep theirs.
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)), 3u);
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("ab", 1)), 3u);
  Reopen();
  EXPECT_EQ(keys().GetDeviceKeys("a", d2).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(VALUE(keys().GetDeviceKeys("a", 1)).identity_key, "identity-1");
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)), 3u);
}

TEST_F(StorageTest, KeysSurviveReopen) {
  MakeAccount("a");
  ASSERT_OK(keys().SetDeviceKeys(Keys("a", 1, "identity-1", 7)));
  ASSERT_OK(keys().AddOneTimePreKeys("a", 1, PreKeys({10, 11})));
  EXPECT_EQ(VALUE(keys().TakeOneTimePreKey("a", 1)).key_id, 10u);
  Reopen();
  DeviceKeysRecord got = VALUE(keys().GetDeviceKeys("a", 1));
  EXPECT_EQ(got.signed_pre_key.key_id, 7u);
  EXPECT_EQ(got.signed_pre_key.signature, "sig-7");
  EXPECT_EQ(VALUE(keys().TakeOneTimePreKey("a", 1)).key_id, 11u);
  EXPECT_EQ(keys().TakeOneTimePreKey("a", 1).status().code(),
            absl::StatusCode::kNotFound);
}

// Ack finds its ids with one iterator that steps over short gaps and seeks
// over wide ones: whatever the mix (runs, sparse ids, ids between unacked
// entries, ids already gone or never assigned, entries in SST files and in
// the memtable), exactly the queued ids are removed and counted, and no
// other device's entry is touched.
TEST_F(StorageTest, AckCountsExactlyAcrossGapsFlushesAndDevices) {
  MakeAccount("a");
  MakeAccount("b");
  MakeGroup("g", {"a", "b"});
  std::set<uint64_t> queued;
  for (uint64_t id = 1; id <= 60; ++id) {
    ASSERT_TRUE(msgs().Append(Req("g", {{"a", 1}, {"b", 1}})).ok());
    queued.insert(id);
    if (id == 30) ASSERT_OK(storage_->Flush());  // 1-30 in an SST file
  }
  auto ack = [&](std::vector<uint64_t> ids) {
    size_t expected = 0;
    for (uint64_t id : std::set<uint64_t>(ids.begin(), ids.end())) {
      expected += queued.erase(id);
    }
    EXPECT_EQ(VALUE(msgs().Ack("a", 1, ids)), expected);
    std::set<uint64_t> left;
    for (const auto& e : Queue("a", 1)) left.insert(e.delivery_id);
    EXPECT_EQ(left, queued);
  };
  ack({1, 2, 3, 4, 5, 6, 7, 8});    // a run
  ack({10, 13, 16, 19, 22, 25});    // between unacked entries
  ack({9, 31, 59});                 // wide gaps, both stores
  ack({1, 2, 3, 11, 12});           // some already gone
  ack({60, 61, 1000, UINT64_MAX});  // the last, then never assigned
  ack({58, 57, 57, 14, 15, 0});     // unsorted, duplicates, 0
  std::vector<uint64_t> all;
  for (uint64_t id = 0; id <= 70; ++id) all.push_back(id);
  ack(all);  // everything left
  EXPECT_TRUE(queued.empty());
  // The other device's queue (its keys sort right after a's) is whole.
  EXPECT_EQ(Queue("b", 1).size(), 60u);
}

// Many devices' queues and many conversations' histories written
// interleaved, as a busy server writes them (each insert lands far from the
// previous one in key order, which is where the memtable insert hints of
// "queues", "history" and "conversations" act), with acks of scattered ids,
// memtable flushes and a reopen in between: every queue, history and
// last_seq matches a model of what was written.
TEST_F(StorageTest, InterleavedQueuesAndHistoriesMatchAModel) {
  constexpr int kAccounts = 12;
  constexpr int kConvs = 6;
  constexpr int kSteps = 1500;
  std::vector<std::string> accounts;
  for (int i = 0; i < kAccounts; ++i) {
    accounts.push_back(absl::StrCat("acct", i));
    MakeAccount(accounts.back());
  }
  // Conversation c has the accounts i with (i + c) % 3 != 0 (8 of 12).
  std::vector<std::vector<QueueTarget>> members(kConvs);
  for (int c = 0; c < kConvs; ++c) {
    std::vector<std::string> ids;
    for (int i = 0; i < kAccounts; ++i) {
      if ((i + c) % 3 == 0) continue;
      ids.push_back(accounts[i]);
      members[c].push_back({accounts[i], 1});
    }
    MakeGroup(absl::StrCat("conv", c), ids);
  }
  // Model: per account, delivery id -> payload; per conversation, the
  // history (seq -> payload) and the last seq.
  std::map<std::string, std::map<uint64_t, std::string>> queues;
  std::vector<std::map<uint64_t, std::string>> histories(kConvs);
  std::vector<uint64_t> last_seq(kConvs, 0);

  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    for (const auto& a : accounts) {
      std::map<uint64_t, std::string> got;
      for (auto& e : Queue(a, 1)) got[e.delivery_id] = std::move(e.payload);
      ASSERT_EQ(got, queues[a]) << a;
    }
    for (int c = 0; c < kConvs; ++c) {
      const std::string id = absl::StrCat("conv", c);
      std::map<uint64_t, std::string> got;
      for (auto& e : VALUE(msgs().ReadHistory(id, 0, 100000))) {
        got[e.seq] = std::move(e.payload);
      }
      ASSERT_EQ(got, histories[c]) << id;
      EXPECT_EQ(VALUE(convs().GetConversation(id)).last_seq, last_seq[c]);
    }
  };

  std::mt19937 rng(20261128);  // fixed seed: a failure reproduces
  for (int step = 0; step < kSteps; ++step) {
    const int c = static_cast<int>(rng() % kConvs);
    AppendRequest r =
        Req(absl::StrCat("conv", c), members[c], absl::StrCat("s", step));
    r.keep_history = rng() % 4 != 0;
    r.return_queued = true;
    const AppendResult res = VALUE(msgs().Append(r));
    ASSERT_EQ(res.seq, last_seq[c] + 1);
    last_seq[c] = res.seq;
    const std::string payload = VALUE(r.make_payload(res.seq));
    if (r.keep_history) histories[c][res.seq] = payload;
    ASSERT_EQ(res.queued.size(), members[c].size());
    for (const QueuedEntry& q : res.queued) {
      const std::string& a = members[c][q.target].account_id;
      ASSERT_TRUE(queues[a].emplace(q.delivery_id, payload).second);
    }
    if (step % 7 == 3) {
      // One account acks a scattered subset of its queue (every other id,
      // or the oldest few) plus an id never assigned.
      const std::string& a = accounts[rng() % kAccounts];
      std::vector<uint64_t> ids;
      size_t expected = 0;
      bool every_other = rng() % 2 == 0;
      size_t n = 0;
      for (auto it = queues[a].begin(); it != queues[a].end(); ++n) {
        if (every_other ? n % 2 == 0 : n < 5) {
          ids.push_back(it->first);
          it = queues[a].erase(it);
          ++expected;
        } else {
          ++it;
        }
      }
      ids.push_back(UINT64_MAX - 1);
      ASSERT_EQ(VALUE(msgs().Ack(a, 1, ids)), expected);
    }
    if (step == kSteps / 3) ASSERT_OK(storage_->Flush());
    if (step == kSteps / 2) {
      check("before reopen");
      Reopen();
    }
  }
  check("at the end");
}

// The memtable insert hints are set on the column families whose keys grow
// under a prefix (read back from the OPTIONS file RocksDB writes at open).
TEST_F(StorageTest, MemtableInsertHintsAreConfigured) {
  std::string latest;
  for (const auto& e : std::filesystem::directory_iterator(DbPath())) {
    const std::string name = e.path().filename().string();
    if (name.rfind("OPTIONS-", 0) == 0 && name > latest) latest = name;
  }
  ASSERT_FALSE(latest.empty());
  std::ifstream in(DbPath() + "/" + latest);
  std::map<std::string, std::string> hint_of;  // column family -> hint
  std::string line, cf;
  while (std::getline(in, line)) {
    if (line.rfind("[CFOptions \"", 0) == 0) {
      cf = line.substr(12, line.size() - 14);
    } else if (line.rfind("[", 0) == 0) {
      cf.clear();
    }
    const std::string key = "memtable_insert_with_hint_prefix_extractor=";
    const size_t at = line.find(key);
    if (!cf.empty() && at != std::string::npos) {
      hint_of[cf] = line.substr(at + key.size());
    }
  }
  EXPECT_EQ(hint_of["queues"], "parley.CounterSuffixHint");
  EXPECT_EQ(hint_of["history"], "parley.CounterSuffixHint");
  EXPECT_EQ(hint_of["conversations"], "parley.WholeKeyHint");
  EXPECT_EQ(hint_of["idempotency"], "parley.SenderScopeHint");
}

// Every column family's memtables use Parley's skip list by default
// (RocksDbOptions::finger_skip_list); RocksDB's own is still available, and a
// store written under one serves the same data under the other (memtables are
// memory only: nothing on disk depends on the choice).
TEST_F(StorageTest, MemtableRepresentationIsConfigurableAcrossRestarts) {
  auto factories = [&] {
    std::string latest;
    for (const auto& e : std::filesystem::directory_iterator(DbPath())) {
      const std::string name = e.path().filename().string();
      if (name.rfind("OPTIONS-", 0) == 0 && name > latest) latest = name;
    }
    std::ifstream in(DbPath() + "/" + latest);
    std::set<std::string> seen;
    std::string line;
    while (std::getline(in, line)) {
      const std::string key = "memtable_factory=";
      const size_t at = line.find(key);
      if (at != std::string::npos) seen.insert(line.substr(at + key.size()));
    }
    return seen;
  };
  EXPECT_EQ(factories(), std::set<std::string>{"parley.FingerSkipList"});

  MakeAccount("a");
  MakeAccount("b");
  MakeGroup("g", {"a", "b"});
  auto append = [&](int n) {
    for (int i = 0; i < n; ++i) {
      AppendRequest r = Req("g", {{"b", 1}});
      r.keep_history = true;
      ASSERT_TRUE(msgs().Append(r).ok());
    }
  };
  append(3);
  // Reopen on RocksDB's own skip list: the log is replayed into it.
  storage_.reset();
  RocksDbOptions opts;
  opts.path = DbPath();
  opts.finger_skip_list = false;
  auto s = OpenRocksDbStorage(opts);
  ASSERT_TRUE(s.ok()) << s.status();
  storage_ = *std::move(s);
  EXPECT_EQ(factories(), std::set<std::string>{"SkipListFactory"});
  append(2);
  EXPECT_EQ(VALUE(msgs().Ack("b", 1, {1, 2})), 2u);
  // A device's idempotency records and then the range deletion that removes
  // them with the device: RocksDB hands the range-deletion table the hint
  // slot of the start key's prefix, so the deletion's start key (the bare
  // scope) must not share the records' hint (with RocksDB's own skip list it
  // would use a splice of the other list).
  const uint32_t extra = AddDevice("a", "tok_extra");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(msgs()
                    .Append(IdemReq("g", {{"b", 1}}, "a", extra,
                                    absl::StrCat("cm-", i), 5000))
                    .ok());
  }
  ASSERT_OK(accounts().RemoveDevice("a", extra));
  ASSERT_OK(storage_->Compact());  // the memtables through a flush
  // Another device's id is its own.
  EXPECT_FALSE(
      VALUE(msgs().Append(IdemReq("g", {}, "a", 1, "cm-0", 5000))).duplicate);
  // And back.
  Reopen();
  append(1);
  std::vector<QueueEntry> q = Queue("b", 1);
  ASSERT_EQ(q.size(), 7u);
  const uint64_t seqs[] = {3, 4, 5, 6, 7, 8, 10};  // 9 was queued for no one
  for (size_t i = 0; i < q.size(); ++i) {
    // Delivery ids go on from a reserved block after each restart.
    if (i > 0) {
      EXPECT_GT(q[i].delivery_id, q[i - 1].delivery_id);
    }
    EXPECT_EQ(q[i].payload, absl::StrCat("g|m|", seqs[i]));
  }
  EXPECT_EQ(VALUE(convs().GetConversation("g")).last_seq, 10u);
}

// Acks write SingleDeletes: an entry acknowledged while its Put is still in
// the memtable leaves nothing in the flushed file, neither the value nor a
// tombstone. (With Delete the file would hold one tombstone per ack.)
TEST_F(StorageTest, AckedEntriesLeaveNoTombstonesInFlushedFiles) {
  MakeDirectAB();
  constexpr int kMessages = 200;
  constexpr int kKept = 10;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(msgs().Append(Req("direct", {{"b", 1}})).ok());
  }
  std::vector<QueueEntry> queued = Queue("b", 1);
  ASSERT_EQ(queued.size(), size_t{kMessages});
  std::vector<uint64_t> acked;
  for (int i = 0; i < kMessages - kKept; ++i) {
    acked.push_back(queued[i].delivery_id);
  }
  // In two calls, with one id acknowledged twice: the second ack of an id
  // finds nothing and writes nothing.
  const std::vector<uint64_t> first(acked.begin(), acked.begin() + 100);
  const std::vector<uint64_t> rest(acked.begin() + 99, acked.end());
  EXPECT_EQ(VALUE(msgs().Ack("b", 1, first)), 100u);
  EXPECT_EQ(VALUE(msgs().Ack("b", 1, rest)), acked.size() - 100);
  ASSERT_OK(storage_->Flush());
  storage_.reset();
  {
    std::unique_ptr<RawDb> raw = OpenRaw(/*read_only=*/true);
    ASSERT_NE(raw, nullptr);
    rocksdb::TablePropertiesCollection props;
    ASSERT_TRUE(
        raw->db->GetPropertiesOfAllTables(raw->cf.at("queues"), &props).ok());
    ASSERT_FALSE(props.empty());
    uint64_t entries = 0, deletions = 0;
    for (const auto& [file, p] : props) {
      entries += p->num_entries;
      deletions += p->num_deletions;
    }
    EXPECT_EQ(deletions, 0u);
    // The kept entries and each device's delivery counter ("C" key).
    EXPECT_EQ(entries, uint64_t{kKept} + 2);
  }
  Open();
  std::vector<QueueEntry> left = Queue("b", 1);
  ASSERT_EQ(left.size(), size_t{kKept});
  for (int i = 0; i < kKept; ++i) {
    EXPECT_EQ(left[i].delivery_id, queued[kMessages - kKept + i].delivery_id);
    EXPECT_EQ(left[i].payload, queued[kMessages - kKept + i].payload);
  }
  // Acknowledging the rest after the flush (Puts now in a file) works too.
  std::vector<uint64_t> last;
  for (const QueueEntry& e : left) last.push_back(e.delivery_id);
  EXPECT_EQ(VALUE(msgs().Ack("b", 1, last)), size_t{kKept});
  EXPECT_TRUE(Queue("b", 1).empty());
  ASSERT_OK(storage_->Compact());
  EXPECT_TRUE(Queue("b", 1).empty());
}

TEST_F(StorageTest, ReopenKeepsEverythingAndCountersContinue) {
  MakeDirectAB();
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
  // Ids continue above the stored bound (a gap, see kDeliveryIdBlock).
  const uint64_t last = VALUE(msgs().LastDeliveryId("b", 1));
  EXPECT_GE(last, 4u);

  AppendResult r = VALUE(msgs().Append(Req("direct", {{"b", 1}})));
  EXPECT_EQ(r.seq, 5u);
  std::vector<QueueEntry> q = Queue("b", 1);
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].delivery_id, last + 1);  // Not reused after restart.
}

// Appends write the device's delivery id bound once per block of ids: after
// any mix of acks, purges and restarts, ids only increase (gaps after a
// restart, never a reuse), and a removed device's counter is gone for good.
TEST_F(StorageTest, DeliveryIdsOnlyIncreaseAcrossAcksPurgesAndRestarts) {
  MakeAccount("a");
  MakeAccount("b");
  MakeGroup("g", {"a", "b"});
  uint64_t highest = 0;  // highest id seen so far
  size_t seen = 0;
  auto append_and_check = [&](int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(msgs().Append(Req("g", {{"b", 1}})).ok());
    }
    std::vector<QueueEntry> q = Queue("b", 1);
    ASSERT_GE(q.size(), static_cast<size_t>(n));
    for (size_t i = q.size() - n; i < q.size(); ++i) {
      ASSERT_GT(q[i].delivery_id, highest) << "after " << seen << " ids";
      highest = q[i].delivery_id;
      ++seen;
    }
    EXPECT_EQ(VALUE(msgs().LastDeliveryId("b", 1)), highest);
  };
  append_and_check(6);
  EXPECT_EQ(highest, 6u);  // Dense while the process runs.
  EXPECT_EQ(VALUE(msgs().Ack("b", 1, {6})), 1u);  // only the highest
  Reopen();
  EXPECT_GE(VALUE(msgs().LastDeliveryId("b", 1)), highest);
  append_and_check(1);
  EXPECT_EQ(VALUE(msgs().Ack("b", 1, {1, 2, 3})), 3u);
  Reopen();
  append_and_check(1);
  EXPECT_EQ(VALUE(msgs().PurgeQueuesBefore(INT64_MAX)), 4u);  // 4, 5, +2
  EXPECT_TRUE(Queue("b", 1).empty());
  Reopen();
  append_and_check(1);
  Reopen();  // No ack or purge since the last append.
  append_and_check(3);
  // More appends than one block of ids within one process run.
  append_and_check(1100);
  Reopen();
  append_and_check(2);
  EXPECT_EQ(seen, 1114u);
  // A removed device's queue and counter go, and nothing brings them back.
  DeviceRecord d2;
  d2.account_id = "b";
  d2.token_hash = "tok_b2";
  const uint32_t id2 = VALUE(accounts().AddDevice(d2)).device_id;
  ASSERT_TRUE(msgs().Append(Req("g", {{"b", id2}})).ok());
  ASSERT_OK(accounts().RemoveDevice("b", id2));
  EXPECT_EQ(VALUE(msgs().Ack("b", id2, {1})), 0u);
  EXPECT_EQ(VALUE(msgs().LastDeliveryId("b", id2)), 0u);
  ASSERT_TRUE(msgs().Append(Req("g", {{"b", id2}})).ok());  // skipped
  Reopen();
  EXPECT_EQ(VALUE(msgs().LastDeliveryId("b", id2)), 0u);
  EXPECT_TRUE(Queue("b", id2).empty());
}

// Format 1 wrote the counter with every append (a valid floor): such a
// database opens, continues its ids and is marked format 2, which an older
// build refuses. Unknown (newer) formats are refused.
TEST_F(StorageTest, FormatOneDatabaseIsUpgradedAndNewerRefused) {
  MakeAccount("b");
  MakeGroup("g", {"b"});
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(msgs().Append(Req("g", {{"b", 1}})).ok());
  }
  EXPECT_EQ(VALUE(msgs().Ack("b", 1, {1, 2, 3})), 3u);
  storage_.reset();
  auto rewrite = [&](uint32_t version, const char* counter) {
    std::unique_ptr<RawDb> raw = OpenRaw();
    ASSERT_NE(raw, nullptr);
    std::string v(4, '\0');
    v[3] = static_cast<char>(version);
    ASSERT_TRUE(raw->db->Put(rocksdb::WriteOptions(), raw->cf.at("meta"),
                             "format_version", v)
                    .ok());
    if (counter != nullptr) {
      // "C" + "b" + 0x00 + BE32(1) -> BE64(counter), as format 1 kept it.
      std::string key("Cb\0\0\0\0\1", 7);
      std::string c(8, '\0');
      c[7] = counter[0];
      ASSERT_TRUE(
          raw->db->Put(rocksdb::WriteOptions(), raw->cf.at("queues"), key, c)
              .ok());
    }
  };
  rewrite(1, "\x0b");  // Format 1, counter 11.
  Open();
  EXPECT_EQ(VALUE(msgs().LastDeliveryId("b", 1)), 11u);
  ASSERT_TRUE(msgs().Append(Req("g", {{"b", 1}})).ok());
  EXPECT_EQ(Queue("b", 1).at(0).delivery_id, 12u);
  storage_.reset();
  {
    std::unique_ptr<RawDb> raw = OpenRaw(/*read_only=*/true);
    ASSERT_NE(raw, nullptr);
    std::string v;
    ASSERT_TRUE(raw->db->Get(rocksdb::ReadOptions(), raw->cf.at("meta"),
                             "format_version", &v)
                    .ok());
    EXPECT_EQ(v, std::string("\0\0\0\3", 4));
  }
  rewrite(4, nullptr);
  auto s = OpenRocksDbStorage(RocksDbOptions{.path = DbPath()});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.status().message()),
              ::testing::HasSubstr("format version 4"));
}

// Formats 1 and 2 kept a history time index ("T" keys); opening such a
// database drops it with the upgrade, and purges work from the entries.
TEST_F(StorageTest, FormatTwoHistoryTimeIndexIsDroppedAtOpen) {
  MakeGroup("g", {"a"});
  MakeGroup("h", {"a"});
  for (int i = 1; i <= 4; ++i) {
    for (const char* conv : {"g", "h"}) {
      AppendRequest r = Req(conv, {});
      r.keep_history = true;
      r.server_time_ms = i * 100;
      ASSERT_TRUE(msgs().Append(r).ok());
    }
  }
  storage_.reset();
  auto count_time_keys = [](RawDb& raw) {
    std::unique_ptr<rocksdb::Iterator> it(
        raw.db->NewIterator(rocksdb::ReadOptions(), raw.cf.at("history")));
    int n = 0;
    for (it->Seek("T"); it->Valid() && it->key().starts_with("T"); it->Next()) ++n;
    return n;
  };
  {
    std::unique_ptr<RawDb> raw = OpenRaw();
    ASSERT_NE(raw, nullptr);
    ASSERT_TRUE(raw->db->Put(rocksdb::WriteOptions(), raw->cf.at("meta"),
                             "format_version", std::string("\0\0\0\2", 4))
                    .ok());
    // What format 2 wrote with each entry: "T" + TIME + id + 0x00 + BE64(seq).
    for (const char* conv : {"g", "h"}) {
      for (uint64_t seq = 1; seq <= 4; ++seq) {
        std::string k = "T";
        const uint64_t t = static_cast<uint64_t>(seq * 100) ^ (uint64_t{1} << 63);
        for (int b = 7; b >= 0; --b) k.push_back(static_cast<char>(t >> (8 * b)));
        k += conv;
        k.push_back('\0');
        for (int b = 7; b >= 0; --b) k.push_back(static_cast<char>(seq >> (8 * b)));
        ASSERT_TRUE(raw->db->Put(rocksdb::WriteOptions(), raw->cf.at("history"), k, "").ok());
      }
    }
    EXPECT_EQ(count_time_keys(*raw), 8);
  }
  Open();
  EXPECT_EQ(VALUE(msgs().PurgeHistoryBefore(300)), 4u);  // seqs 1-2 of both
  EXPECT_EQ(VALUE(msgs().ReadHistory("g", 0, 10)).size(), 2u);
  EXPECT_EQ(VALUE(msgs().ReadHistory("h", 0, 10)).size(), 2u);
  storage_.reset();
  std::unique_ptr<RawDb> raw = OpenRaw(/*read_only=*/true);
  ASSERT_NE(raw, nullptr);
  EXPECT_EQ(count_time_keys(*raw), 0);
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
// N threads take one-time pre-keys of one device (and of a second device)
// until none is left: every stored key is handed out exactly once.
TEST_F(StorageTest, ConcurrentTakeOneTimePreKeyHandsOutEachKeyOnce) {
  constexpr int kThreads = 8;
  constexpr uint32_t kKeys = 1000;
  MakeAccount("a");
  uint32_t d2 = AddDevice("a", "t2");
  for (uint32_t device : {1u, d2}) {
    ASSERT_OK(keys().SetDeviceKeys(Keys("a", device)));
    for (uint32_t first = 1; first <= kKeys; first += 100) {
      ASSERT_OK(
          keys().AddOneTimePreKeys("a", device, PreKeys(Range(first, 100))));
    }
  }
  std::vector<std::vector<uint32_t>> taken(kThreads);
  std::vector<std::vector<uint32_t>> taken2(kThreads);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      bool more1 = true, more2 = true;
      while (more1 || more2) {
        for (uint32_t device : {1u, d2}) {
          bool& more = device == 1 ? more1 : more2;
          if (!more) continue;
          absl::StatusOr<PreKeyRecord> k = keys().TakeOneTimePreKey("a", device);
          if (absl::IsNotFound(k.status())) {
            more = false;
          } else if (!k.ok()) {
            ++errors;
            more = false;
          } else {
            if (k->public_key != absl::StrCat("pk-", k->key_id)) ++errors;
            (device == 1 ? taken : taken2)[t].push_back(k->key_id);
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  for (const auto* per_thread : {&taken, &taken2}) {
    std::vector<uint32_t> all;
    for (const auto& v : *per_thread) all.insert(all.end(), v.begin(), v.end());
    EXPECT_EQ(all.size(), kKeys);
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end())
        << "a key was handed out twice";
    EXPECT_EQ(all, Range(1, kKeys));
    // Each thread saw its keys in increasing order (lowest id first).
    for (const auto& v : *per_thread) {
      EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
    }
  }
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", 1)), 0u);
  EXPECT_EQ(VALUE(keys().CountOneTimePreKeys("a", d2)), 0u);
}

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
