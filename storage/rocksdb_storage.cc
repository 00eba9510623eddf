// RocksDB backend of the Parley storage interfaces (see storage.h for the
// contract and rocksdb_storage.h for the options).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Design
// - One RocksDB instance with one column family per concern. Every mutating
//   method builds one rocksdb::WriteBatch and applies it with one DB::Write
//   (WAL always on, WriteOptions.sync = RocksDbOptions.sync), which gives the
//   all-or-nothing contract.
// - Read-check-write sequences are serialized by mutexes held across the
//   Write, so no other writer can interleave between the check and the write:
//     accounts_mu_   all account/device/link mutations (rare operations);
//     create_conv_mu_ conversation id and direct-pair uniqueness, and the
//       conversation counter;
//     conversation stripes (by hash of conversation id): Append and
//       UpdateConversation of one conversation; caches last_seq and epoch;
//     device stripes (by hash of account id + device id): every write of a
//       device's queue and delivery counter; caches the last delivery id.
//   Lock order: accounts_mu_ -> create_conv_mu_ -> one conversation stripe ->
//   device stripes in ascending index order. Append holds its conversation
//   stripe and the stripes of all its target devices (and of the sender
//   device, the idempotency scope) across the Write. Hence delivery ids of a
//   device become visible in increasing order (a reader that follows a
//   cursor never skips an entry), while appends with disjoint lock sets run
//   concurrently. In sync mode an append's Write is not fsynced under the
//   locks; Append waits afterwards for a shared SyncWAL (WaitDurable: one
//   leader syncs, the writers that arrived meanwhile wait for it), so the
//   fsync is group-committed across conversations and within one.
//   Key directory (KeyStore) methods take the stripe of their one device
//   only (RemoveDevice takes accounts_mu_ and then that stripe): every write
//   of a device's keys happens under it, after checking that the device
//   exists (its delivery counter key, see below), so no key outlives its
//   device, and TakeOneTimePreKey's read-delete of the lowest key is atomic.
//   Independent leaf locks, never held together with any other lock:
//     policies_mu_   AppendRevision (head + 1 check and write);
//     audit_mu_      AppendAudit (last + 1 check and write);
//     admin_tokens_mu_ PutAdminToken (token record and hash index).
// - Caches are filled lazily from disk and updated only after a successful
//   Write, so a failed write leaves them consistent with the database.
// - Appends to devices that no longer exist (their delivery counter key is
//   absent, see below) create no queue entry.
// - Column families are opened with create_missing_column_families, so a
//   database written before a column family was added opens unchanged (the
//   new one starts empty); the format version stays 1 for such additions.
// - Memtable insert hints (CounterSuffixHint on "queues" and "history",
//   WholeKeyHint on "conversations", SenderScopeHint on "idempotency"):
//   RocksDB remembers, per memtable, where the last key of each prefix went
//   and starts the next insert of that prefix there. A busy server's writes
//   interleave many devices and conversations, so without the hint every
//   insert searched the skip list from the top (BENCHMARKS.md, sixth and
//   nineteenth rounds). Memory-only: no format change.
// - The number of conversations is an exact counter ("meta" CF), written in
//   the batch of every CreateConversation (conversations are never deleted)
//   and mirrored in memory for EstimateConversationCount. A database that
//   predates the counter gets it once at open, by counting record keys.

#include "storage/rocksdb_storage.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "storage/memtable_rep.h"
#include "storage/records.pb.h"

// Local status helpers (Abseil 20220623 has no status macros).
#define PARLEY_STORAGE_CONCAT_INNER(a, b) a##b
#define PARLEY_STORAGE_CONCAT(a, b) PARLEY_STORAGE_CONCAT_INNER(a, b)
#define PARLEY_STORAGE_RETURN_IF_ERROR(expr)        \
  do {                                              \
    if (absl::Status _st = (expr); !_st.ok()) {     \
      return _st;                                   \
    }                                               \
  } while (0)
#define PARLEY_STORAGE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                         \
  if (!tmp.ok()) return tmp.status();                        \
  lhs = std::move(*tmp)
#define PARLEY_STORAGE_ASSIGN_OR_RETURN(lhs, expr) \
  PARLEY_STORAGE_ASSIGN_OR_RETURN_IMPL(            \
      PARLEY_STORAGE_CONCAT(_statusor_, __LINE__), lhs, expr)

namespace parley::storage {
namespace {

namespace pb = ::parley::storage::internal;

// ===================================================================
// On-disk key formats: DO NOT CHANGE
// ===================================================================
// Notation: "x" is a literal byte, + is concatenation, BE32/BE64 are
// fixed-width big-endian unsigned integers (so byte order == numeric order),
// TIME is BE64(uint64(int64 ms) XOR 2^63) (so byte order == signed order).
// Identifiers (account ids, conversation ids) are non-empty and never contain
// the byte 0x00, which is therefore used as separator; a component that ends a
// key (username, hashes, client message id) may contain any byte. Values
// marked pb.X are serialized parley.storage.internal.X (records.proto).
//
// column family "meta"
//   "format_version"                           -> BE32 (currently 3; version
//        1 and 2 databases are upgraded in place at open, see "C" and "T"
//        below)
//   "conversation_count"                       -> BE64 number of conversations
//        (written with every CreateConversation; initialized at open by
//        counting "conversations" record keys when absent)
// column family "accounts"
//   "A" + account_id                           -> pb.Account
//   "U" + username                             -> account_id (raw bytes)
//   "D" + account_id + 0x00 + BE32(device_id)  -> pb.Device
//   "N" + account_id                           -> BE32 highest device id ever
//                                                 assigned (ids never reused)
//   "T" + token_hash                           -> pb.DeviceRef
//   "L" + code_hash                            -> pb.DeviceLink
// column family "conversations"
//   conversation_id + 0x00 + "r"               -> pb.Conversation
//   conversation_id + 0x00 + "s"               -> BE64 last_seq
// column family "conv_index"
//   "P" + min(a, b) + 0x00 + max(a, b)         -> conversation_id (direct pair)
//   "M" + account_id + 0x00 + conversation_id  -> "" (membership)
// column family "queues"
//   "Q" + account_id + 0x00 + BE32(device_id) + BE64(delivery_id)
//                                              -> pb.QueueValue
//   "C" + account_id + 0x00 + BE32(device_id)  -> BE64 delivery id bound:
//        no delivery id above it was ever assigned. Ids are reserved in
//        blocks (kDeliveryIdBlock): an append that needs an id above the
//        bound raises it in its own batch, so most appends do not write it;
//        after a restart a device's ids continue above the bound (a gap,
//        never a reuse). Written when the device is created (0), deleted
//        with the device: its presence means "the device exists". (Format 1
//        wrote the highest id assigned with every append, a valid bound;
//        format 1 is therefore read as is and marked 2 at open.)
// column family "history"
//   "H" + conversation_id + 0x00 + BE64(seq)   -> pb.HistoryValue
//        (PurgeHistoryBefore walks each conversation's entries from its
//        oldest and skips to the next conversation at the first one inside
//        retention: seq order is time order, to within clock steps)
//   "T" + TIME(server_time_ms) + conversation_id + 0x00 + BE64(seq) -> ""
//        Formats 1 and 2 only (a time index, one more key per message);
//        removed at open by one DeleteRange ["T", "U") when a database of
//        format < 3 is upgraded. Never written by format 3.
// column family "idempotency"
//   account_id + 0x00 + BE32(device_id) + client_message_id
//                                              -> pb.IdempotencyValue
//        (Append treats a record older than the request's
//        idempotency_not_before_ms as absent and replaces it;
//        PurgeIdempotencyBefore deletes old ones, by server_time_ms)
// column family "policies"
//   BE64(number)                               -> pb.PolicyRevision
//        (numbers 1, 2, 3, ... without gaps; never updated or deleted)
// column family "audit"
//   BE64(seq)                                  -> pb.AuditEntry
//        (seqs 1, 2, 3, ... without gaps; never updated or deleted)
// column family "admin_tokens"
//   "I" + token_id                             -> pb.AdminToken
//   "H" + token_hash                           -> token_id (raw bytes)
//        (hash index; written/deleted in the same batch as the "I" key)
// column family "keys" (SCOPE = account_id + 0x00 + BE32(device_id), as in
// "queues"; every key of a device starts with its SCOPE, so RemoveDevice
// deletes them with one DeleteRange)
//   SCOPE + "k"                                -> pb.DeviceKeys
//   SCOPE + "p" + BE32(key_id)                 -> pb.OneTimePreKey
//        (one-time pre-keys, ascending id; present only while the "k" key
//        is, and deleted when the identity key in it changes)
// column family "safety"
//   "R" + BE64(number)                         -> pb.Report
//        (numbers 1, 2, 3, ...; updated, never deleted)
//   "O" + BE64(number)                         -> "" (index of open reports;
//        written/deleted in the same batch as the "R" key)
//   "N" + TIME(due_ms) + id                    -> notice body (opaque)
//   "V" + name                                 -> value (opaque)
// ===================================================================

constexpr uint32_t kFormatVersion = 3;
// Older formats this build opens (and then marks kFormatVersion).
constexpr uint32_t kOldestReadableFormat = 1;
// Delivery ids reserved per write of a device's "C" bound.
constexpr uint64_t kDeliveryIdBlock = 1024;
constexpr char kFormatVersionKey[] = "format_version";
constexpr char kConversationCountKey[] = "conversation_count";

enum Cf : size_t {
  kDefaultCf = 0,
  kMetaCf,
  kAccountsCf,
  kConversationsCf,
  kConvIndexCf,
  kQueuesCf,
  kHistoryCf,
  kIdempotencyCf,
  kPoliciesCf,
  kAuditCf,
  kAdminTokensCf,
  kKeysCf,
  kSafetyCf,
  kNumCfs,
};
// Append new column families at the end; names are persisted.
constexpr const char* kCfNames[kNumCfs] = {
    "default",    "meta",   "accounts",    "conversations",
    "conv_index", "queues", "history",     "idempotency",
    "policies",   "audit",  "admin_tokens", "keys",
    "safety"};

constexpr size_t kConvStripes = 1024;
constexpr size_t kDeviceStripes = 4096;
// Cache bound per stripe (about 1M conversations and 1M devices in total).
// The caches are only an optimization: the database is authoritative and all
// writers hold the stripe lock, so a stripe's cache may be dropped any time.
constexpr size_t kMaxCachedPerStripe = 1024;
constexpr size_t kMaxCachedPerDeviceStripe = 256;
// Conversation records cached per conversation stripe (GetConversation is on
// every Send's path): 1024 stripes x 16 = at most 16,384 records.
constexpr size_t kMaxRecordsPerStripe = 16;
// Device-by-token and account records cached for authentication (every RPC
// of a device reads both); each map is cleared when it reaches this size.
constexpr size_t kMaxCachedAuthRecords = 65536;
constexpr size_t kPurgeBatchEntries = 10000;
constexpr int kDirectKind = 1;  // parley.v1.CONVERSATION_KIND_DIRECT

// ------------------------------------------------------------- encoding

void PutBE32(std::string* out, uint32_t v) {
  char b[4];
  for (int i = 3; i >= 0; --i) {
    b[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(b, 4);
}

void PutBE64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 7; i >= 0; --i) {
    b[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(b, 8);
}

absl::string_view View(const rocksdb::Slice& s) {
  return absl::string_view(s.data(), s.size());
}

uint64_t GetBE(absl::string_view s) {
  uint64_t v = 0;
  for (char c : s) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

std::string BE64(uint64_t v) {
  std::string s;
  PutBE64(&s, v);
  return s;
}

uint64_t TimeKey(int64_t ms) {
  return static_cast<uint64_t>(ms) ^ (uint64_t{1} << 63);
}

// Smallest key greater than every key starting with `prefix` ("" if none).
std::string PrefixSuccessor(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char last = static_cast<unsigned char>(prefix.back());
    if (last != 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return prefix;
}

std::string AccountKey(absl::string_view account_id) {
  return absl::StrCat("A", account_id);
}
std::string UsernameKey(absl::string_view username) {
  return absl::StrCat("U", username);
}
std::string DevicePrefix(absl::string_view account_id) {
  return absl::StrCat("D", account_id, absl::string_view("\0", 1));
}
std::string DeviceKey(absl::string_view account_id, uint32_t device_id) {
  std::string k = DevicePrefix(account_id);
  PutBE32(&k, device_id);
  return k;
}
std::string NextDeviceKey(absl::string_view account_id) {
  return absl::StrCat("N", account_id);
}
std::string TokenKey(absl::string_view token_hash) {
  return absl::StrCat("T", token_hash);
}
std::string LinkKey(absl::string_view code_hash) {
  return absl::StrCat("L", code_hash);
}
std::string ConvRecordKey(absl::string_view id) {
  return absl::StrCat(id, absl::string_view("\0r", 2));
}
std::string ConvSeqKey(absl::string_view id) {
  return absl::StrCat(id, absl::string_view("\0s", 2));
}
std::string PairKey(absl::string_view a, absl::string_view b) {
  if (b < a) std::swap(a, b);
  return absl::StrCat("P", a, absl::string_view("\0", 1), b);
}
std::string MemberPrefix(absl::string_view account_id) {
  return absl::StrCat("M", account_id, absl::string_view("\0", 1));
}
std::string MemberKey(absl::string_view account_id, absl::string_view conv_id) {
  return absl::StrCat(MemberPrefix(account_id), conv_id);
}
// account_id + 0x00 + BE32(device_id): shared by queue, counter and
// idempotency keys, and the key of the delivery counter cache.
std::string DeviceScope(absl::string_view account_id, uint32_t device_id) {
  std::string k = absl::StrCat(account_id, absl::string_view("\0", 1));
  PutBE32(&k, device_id);
  return k;
}
std::string QueuePrefix(absl::string_view scope) {
  return absl::StrCat("Q", scope);
}
std::string QueueKey(absl::string_view scope, uint64_t delivery_id) {
  std::string k = QueuePrefix(scope);
  PutBE64(&k, delivery_id);
  return k;
}
std::string CounterKey(absl::string_view scope) {
  return absl::StrCat("C", scope);
}
std::string HistoryPrefix(absl::string_view conv_id) {
  return absl::StrCat("H", conv_id, absl::string_view("\0", 1));
}
std::string HistoryKey(absl::string_view conv_id, uint64_t seq) {
  std::string k = HistoryPrefix(conv_id);
  PutBE64(&k, seq);
  return k;
}
std::string IdempotencyKey(absl::string_view scope,
                           absl::string_view client_message_id) {
  return absl::StrCat(scope, client_message_id);
}
std::string DeviceKeysKey(absl::string_view scope) {
  return absl::StrCat(scope, "k");
}
std::string PreKeyPrefix(absl::string_view scope) {
  return absl::StrCat(scope, "p");
}
std::string PreKeyKey(absl::string_view scope, uint32_t key_id) {
  std::string k = PreKeyPrefix(scope);
  PutBE32(&k, key_id);
  return k;
}
constexpr char kAdminTokenPrefix[] = "I";
std::string AdminTokenKey(absl::string_view token_id) {
  return absl::StrCat(kAdminTokenPrefix, token_id);
}
std::string AdminTokenHashKey(absl::string_view token_hash) {
  return absl::StrCat("H", token_hash);
}

// ------------------------------------------------------- record mapping

void ToProto(const SecurityStateRecord& r, pb::SecurityState* p) {
  p->set_mode(r.mode);
  p->set_epoch(r.epoch);
  p->set_policy_revision(r.policy_revision);
  p->set_rule_id(r.rule_id);
  p->set_reason(r.reason);
  p->set_effective_at_ms(r.effective_at_ms);
  p->set_e2ee_ever_enabled(r.e2ee_ever_enabled);
  p->set_locked(r.locked);
  p->set_pending_mode(r.pending_mode);
  p->set_pending_effective_at_ms(r.pending_effective_at_ms);
  p->set_pending_reason(r.pending_reason);
  p->set_pending_rule_id(r.pending_rule_id);
  p->set_pending_policy_revision(r.pending_policy_revision);
  p->set_set_by_participants(r.set_by_participants);
  p->set_notice(r.notice);
  for (const std::string& a : r.enable_requests) p->add_enable_requests(a);
  for (const std::string& a : r.disable_requests) p->add_disable_requests(a);
}

SecurityStateRecord FromProto(const pb::SecurityState& p) {
  SecurityStateRecord r;
  r.mode = p.mode();
  r.epoch = p.epoch();
  r.policy_revision = p.policy_revision();
  r.rule_id = p.rule_id();
  r.reason = p.reason();
  r.effective_at_ms = p.effective_at_ms();
  r.e2ee_ever_enabled = p.e2ee_ever_enabled();
  r.locked = p.locked();
  r.pending_mode = p.pending_mode();
  r.pending_effective_at_ms = p.pending_effective_at_ms();
  r.pending_reason = p.pending_reason();
  r.pending_rule_id = p.pending_rule_id();
  r.pending_policy_revision = p.pending_policy_revision();
  r.set_by_participants = p.set_by_participants();
  r.notice = p.notice();
  r.enable_requests.assign(p.enable_requests().begin(),
                           p.enable_requests().end());
  r.disable_requests.assign(p.disable_requests().begin(),
                            p.disable_requests().end());
  return r;
}

std::string Encode(const AccountRecord& r) {
  pb::Account p;
  p.set_account_id(r.account_id);
  p.set_username(r.username);
  p.set_display_name(r.display_name);
  p.set_kind(r.kind);
  p.set_age_band(r.age_band);
  p.set_region_code(r.region_code);
  p.set_organization(r.organization);
  p.set_created_at_ms(r.created_at_ms);
  p.set_suspended(r.suspended);
  return p.SerializeAsString();
}

AccountRecord FromProto(const pb::Account& p) {
  AccountRecord r;
  r.account_id = p.account_id();
  r.username = p.username();
  r.display_name = p.display_name();
  r.kind = p.kind();
  r.age_band = p.age_band();
  r.region_code = p.region_code();
  r.organization = p.organization();
  r.created_at_ms = p.created_at_ms();
  r.suspended = p.suspended();
  return r;
}

std::string Encode(const DeviceRecord& r) {
  pb::Device p;
  p.set_account_id(r.account_id);
  p.set_device_id(r.device_id);
  p.set_name(r.name);
  p.set_token_hash(r.token_hash);
  p.set_created_at_ms(r.created_at_ms);
  p.set_last_seen_at_ms(r.last_seen_at_ms);
  p.set_registration_id(r.registration_id);
  return p.SerializeAsString();
}

DeviceRecord FromProto(const pb::Device& p) {
  DeviceRecord r;
  r.account_id = p.account_id();
  r.device_id = p.device_id();
  r.name = p.name();
  r.token_hash = p.token_hash();
  r.created_at_ms = p.created_at_ms();
  r.last_seen_at_ms = p.last_seen_at_ms();
  r.registration_id = p.registration_id();
  return r;
}

std::string Encode(const DeviceLinkRecord& r) {
  pb::DeviceLink p;
  p.set_code_hash(r.code_hash);
  p.set_account_id(r.account_id);
  p.set_expires_at_ms(r.expires_at_ms);
  return p.SerializeAsString();
}

DeviceLinkRecord FromProto(const pb::DeviceLink& p) {
  DeviceLinkRecord r;
  r.code_hash = p.code_hash();
  r.account_id = p.account_id();
  r.expires_at_ms = p.expires_at_ms();
  return r;
}

// last_seq is not part of the record (it has its own key).
std::string Encode(const ConversationRecord& r) {
  pb::Conversation p;
  p.set_conversation_id(r.conversation_id);
  p.set_kind(r.kind);
  p.set_title(r.title);
  for (const MemberRecord& m : r.members) {
    pb::Member* pm = p.add_members();
    pm->set_account_id(m.account_id);
    pm->set_admin(m.admin);
    pm->set_joined_at_ms(m.joined_at_ms);
  }
  ToProto(r.security, p.mutable_security());
  p.set_created_at_ms(r.created_at_ms);
  return p.SerializeAsString();
}

ConversationRecord FromProto(const pb::Conversation& p) {
  ConversationRecord r;
  r.conversation_id = p.conversation_id();
  r.kind = p.kind();
  r.title = p.title();
  r.members.reserve(p.members_size());
  for (const pb::Member& pm : p.members()) {
    r.members.push_back(MemberRecord{.account_id = pm.account_id(),
                                     .admin = pm.admin(),
                                     .joined_at_ms = pm.joined_at_ms()});
  }
  r.security = FromProto(p.security());
  r.created_at_ms = p.created_at_ms();
  return r;
}

std::string Encode(const PolicyRevisionRecord& r) {
  pb::PolicyRevision p;
  p.set_number(r.number);
  p.set_content(r.content);
  p.set_content_hash(r.content_hash);
  p.set_previous_hash(r.previous_hash);
  p.set_author(r.author);
  p.set_comment(r.comment);
  p.set_created_at_ms(r.created_at_ms);
  p.set_rollback_of(r.rollback_of);
  return p.SerializeAsString();
}

PolicyRevisionRecord FromProto(pb::PolicyRevision& p) {
  PolicyRevisionRecord r;
  r.number = p.number();
  r.content = std::move(*p.mutable_content());
  r.content_hash = p.content_hash();
  r.previous_hash = p.previous_hash();
  r.author = p.author();
  r.comment = p.comment();
  r.created_at_ms = p.created_at_ms();
  r.rollback_of = p.rollback_of();
  return r;
}

std::string Encode(const AuditRecord& r) {
  pb::AuditEntry p;
  p.set_seq(r.seq);
  p.set_time_ms(r.time_ms);
  p.set_actor(r.actor);
  p.set_action(r.action);
  p.set_target(r.target);
  p.set_details(r.details);
  p.set_prev_hash(r.prev_hash);
  p.set_hash(r.hash);
  return p.SerializeAsString();
}

AuditRecord FromProto(pb::AuditEntry& p) {
  AuditRecord r;
  r.seq = p.seq();
  r.time_ms = p.time_ms();
  r.actor = p.actor();
  r.action = p.action();
  r.target = p.target();
  r.details = std::move(*p.mutable_details());
  r.prev_hash = p.prev_hash();
  r.hash = p.hash();
  return r;
}

std::string Encode(const AdminTokenRecord& r) {
  pb::AdminToken p;
  p.set_token_id(r.token_id);
  p.set_token_hash(r.token_hash);
  p.set_role(r.role);
  p.set_name(r.name);
  p.set_created_by(r.created_by);
  p.set_created_at_ms(r.created_at_ms);
  p.set_revoked(r.revoked);
  p.set_revoked_at_ms(r.revoked_at_ms);
  return p.SerializeAsString();
}

AdminTokenRecord FromProto(const pb::AdminToken& p) {
  AdminTokenRecord r;
  r.token_id = p.token_id();
  r.token_hash = p.token_hash();
  r.role = p.role();
  r.name = p.name();
  r.created_by = p.created_by();
  r.created_at_ms = p.created_at_ms();
  r.revoked = p.revoked();
  r.revoked_at_ms = p.revoked_at_ms();
  return r;
}

std::string Encode(const DeviceKeysRecord& r) {
  pb::DeviceKeys p;
  p.set_identity_key(r.identity_key);
  p.set_registration_id(r.registration_id);
  p.set_signed_pre_key_id(r.signed_pre_key.key_id);
  p.set_signed_pre_key(r.signed_pre_key.public_key);
  p.set_signed_pre_key_signature(r.signed_pre_key.signature);
  return p.SerializeAsString();
}

DeviceKeysRecord FromProto(const pb::DeviceKeys& p, absl::string_view account_id,
                           uint32_t device_id) {
  DeviceKeysRecord r;
  r.account_id = std::string(account_id);
  r.device_id = device_id;
  r.identity_key = p.identity_key();
  r.registration_id = p.registration_id();
  r.signed_pre_key.key_id = p.signed_pre_key_id();
  r.signed_pre_key.public_key = p.signed_pre_key();
  r.signed_pre_key.signature = p.signed_pre_key_signature();
  return r;
}

std::string EncodeDeviceRef(absl::string_view account_id, uint32_t device_id) {
  pb::DeviceRef p;
  p.set_account_id(std::string(account_id));
  p.set_device_id(device_id);
  return p.SerializeAsString();
}

std::string EncodeQueueValue(std::string payload, int64_t enqueued_at_ms) {
  pb::QueueValue p;
  p.set_payload(std::move(payload));
  p.set_enqueued_at_ms(enqueued_at_ms);
  return p.SerializeAsString();
}

template <typename Proto>
absl::StatusOr<Proto> Parse(absl::string_view bytes, absl::string_view what) {
  Proto p;
  if (!p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(
        absl::StrCat("storage: undecodable ", what, " record"));
  }
  return p;
}

absl::StatusOr<uint64_t> ParseFixed(absl::string_view bytes, size_t width,
                                    absl::string_view what) {
  if (bytes.size() != width) {
    return absl::DataLossError(
        absl::StrCat("storage: bad ", what, " value size ", bytes.size()));
  }
  return GetBE(bytes);
}

// ------------------------------------------------------------ validation

absl::Status CheckId(absl::string_view what, absl::string_view id) {
  if (id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  }
  if (id.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, " contains NUL"));
  }
  return absl::OkStatus();
}

// ----------------------------------------------------- status conversion

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view op) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat("rocksdb ", op, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsNoSpace() ||
      s.subcode() == rocksdb::Status::SubCode::kSpaceLimit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "storage is out of disk space; nothing was written (", msg, ")"));
  }
  if (s.IsMemoryLimit()) return absl::ResourceExhaustedError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain() ||
      s.IsShutdownInProgress() || s.IsIncomplete()) {
    return absl::UnavailableError(msg);
  }
  if (s.IsAborted()) return absl::AbortedError(msg);
  return absl::InternalError(msg);
}

// Memtable insert hint for keys rewritten again and again ("conversations":
// a conversation's last-seq key, written with every message): the next
// version goes right beside the previous one.
class WholeKeyHint final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "parley.WholeKeyHint"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return key;
  }
  bool InDomain(const rocksdb::Slice&) const override { return true; }
};

// Memtable insert hint for keys that end in a BE64 counter under a fixed
// prefix ("queues": a device's entries in delivery-id order; "history": a
// conversation's entries in seq order). RocksDB keeps, per memtable, the
// position of the last insert of each prefix and starts the next insert of
// that prefix there, instead of searching the whole skip list: most inserts
// land right after the previous one of their prefix (appends in id order).
// Only a hint: a key inserted elsewhere costs an ordinary search.
class CounterSuffixHint final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "parley.CounterSuffixHint"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), key.size() - 8);
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return key.size() > 8;
  }
};

// Memtable insert hint for "idempotency" keys (SCOPE + CLIENT_MESSAGE_ID):
// the prefix is the sending device's scope (ACCOUNT_ID + "\0" +
// BE32(device_id)). A device's ids from the SDK start with their creation
// time (NewClientMessageId), so its next record usually lands at the end of
// its own range, where the previous one went; random ids still start their
// search inside the device's range rather than at the top of the skip list.
class SenderScopeHint final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "parley.SenderScopeHint"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), ScopeEnd(key));
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return ScopeEnd(key) != 0;
  }

 private:
  // The length of the scope that starts `key`, or 0 if it has none or if
  // nothing follows it. A bare scope is the start key of RemoveDevice's range
  // deletion, and RocksDB gives the memtable's range-deletion table (always
  // RocksDB's own skip list) the hint slot of its prefix: sharing the slot of
  // the device's records would hand it a position in the other list.
  static size_t ScopeEnd(const rocksdb::Slice& key) {
    const void* nul = std::memchr(key.data(), '\0', key.size());
    if (nul == nullptr) return 0;
    const size_t end = static_cast<const char*>(nul) - key.data() + 1 + 4;
    return end < key.size() ? end : 0;
  }
};

// RocksDB's informational log, sent to stderr (parleyd's log) instead of a
// LOG file in the database directory: on a full disk RocksDB's error path
// writes to its info log, and the Debian build asserts (aborts) when that
// write fails. Only warnings and worse are kept.
class StderrLogger final : public rocksdb::Logger {
 public:
  StderrLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char buf[1024];
    vsnprintf(buf, sizeof buf, format, ap);
    std::fprintf(stderr, "level=warning event=rocksdb message=\"%s\"\n", buf);
  }
};

// After a background error (a write-ahead-log write, flush or compaction
// that failed, e.g. on a full disk) RocksDB refuses writes until the error is
// cleared. Its own recovery from a full disk polls every 5 s (SstFileManager)
// and makes DB::Resume() return Busy meanwhile; this listener turns that off
// and Run() calls Resume() itself until a recovery clears the error (a
// Resume() that returns OK without one, see OnErrorRecoveryEnd, does not
// count): at once, then after kFirstRetry, doubling up to kMaxRetry between
// attempts (each failed attempt logs a RocksDB warning), and at once (and
// back at kFirstRetry) when the free space of the database's file system has
// grown by kFreedBytes since the last attempt. So writes work again within
// about kPollInterval of space being freed. Meanwhile the store makes no
// write (StoppedBy).
class ErrorRecovery final : public rocksdb::EventListener {
 public:
  static constexpr absl::Duration kPollInterval = absl::Milliseconds(250);
  static constexpr absl::Duration kFirstRetry = absl::Milliseconds(250);
  static constexpr absl::Duration kMaxRetry = absl::Seconds(4);
  static constexpr uint64_t kFreedBytes = 1 << 20;

  void OnBackgroundError(rocksdb::BackgroundErrorReason /*reason*/,
                         rocksdb::Status* bg_error) override {
    if (bg_error != nullptr && !bg_error->ok() &&
        !bg_error->IsShutdownInProgress()) {
      // After a failed log write (out of space) RocksDB's log writer refuses
      // every later write with one of these messages and no subcode, and
      // ranks that consequence as a fatal error: it outranks the out-of-space
      // error that caused it, and Resume() refuses fatal errors, so the
      // store would stay stopped after space is freed. Ranked as hard, it is
      // ignored beside the first error (or, alone, resumed like it: the
      // memtables are flushed to a new log). Batched log writes made this
      // reachable (a FlushWAL racing a write); CI caught it once.
      // RocksDB also ranks out-of-space as fatal when it hits a memtable
      // switch: a Resume() on a still-full disk first writes out the old
      // log's buffer, and RocksDB fears that buffer's records lost. They are
      // not: every one is in a memtable, which the successful Resume() writes
      // to a table file (StorageFullDiskTest). So out of space is always
      // hard here: resumed once space is back.
      if ((IsLogWriterAftermath(*bg_error) || IsOutOfSpace(*bg_error)) &&
          bg_error->severity() > rocksdb::Status::Severity::kHardError) {
        *bg_error =
            rocksdb::Status(*bg_error, rocksdb::Status::Severity::kHardError);
      }
      if (bg_error->severity() >= rocksdb::Status::Severity::kHardError) {
        absl::MutexLock lock(&mu_);
        if (!stopped_ || bg_error->severity() > stop_error_.severity()) {
          stop_error_ = *bg_error;
        }
        stopped_ = true;
        stopped_hint_.store(true, std::memory_order_release);
      }
      Request();
    }
  }
  static bool IsOutOfSpace(const rocksdb::Status& s) {
    return s.IsNoSpace() ||
           s.subcode() == rocksdb::Status::SubCode::kSpaceLimit;
  }
  static bool IsLogWriterAftermath(const rocksdb::Status& s) {
    if (!s.IsIOError() || s.subcode() != rocksdb::Status::kNone) return false;
    const std::string text = s.ToString();
    return absl::StrContains(text, "Seen error. Skip writing buffer") ||
           absl::StrContains(text, "Writer has previous error");
  }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/,
                            rocksdb::Status /*bg_error*/,
                            bool* auto_recovery) override {
    *auto_recovery = false;  // Run() resumes.
  }
  // RocksDB cleared its background error: a Resume() did the work (flushed
  // the memtables to a new log). Not called for a Resume() that found no
  // error, which happens when it runs between OnBackgroundError() and
  // RocksDB recording the error (the listener is called first, without the
  // database's lock).
  void OnErrorRecoveryEnd(
      const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    if (!info.new_bg_error.ok()) return;
    std::function<void()> on_resumed;
    {
      absl::MutexLock lock(&mu_);
      stopped_ = false;
      stop_error_ = rocksdb::Status::OK();
      stopped_hint_.store(false, std::memory_order_release);
      on_resumed = on_resumed_;
    }
    // Outside mu_: the callback may wait for a thread that is reporting a
    // background error (Request() takes mu_).
    if (on_resumed) on_resumed();
  }
  // Runs after every recovery that cleared the error. Set before Run().
  void SetOnResumed(std::function<void()> f) {
    absl::MutexLock lock(&mu_);
    on_resumed_ = std::move(f);
  }
  void Request() {
    absl::MutexLock lock(&mu_);
    pending_ = true;
  }
  // OK while RocksDB accepts writes; otherwise the error that stopped them,
  // until a recovery clears it. The store asks before every write and
  // makes none while stopped: RocksDB would refuse it anyway, and a write it
  // refuses during a Resume() (it records the refusal as a new background
  // error) fails that Resume(). Under a steady stream of Sends the store
  // then never resumed; under ASan, with one Send per 50 ms, it took
  // several attempts (RELIABILITY.md, "Disk full").
  rocksdb::Status StoppedBy() {
    if (!stopped_hint_.load(std::memory_order_acquire)) {
      return rocksdb::Status::OK();
    }
    absl::MutexLock lock(&mu_);
    return stopped_ ? stop_error_ : rocksdb::Status::OK();
  }
  // The recovery thread's body: returns after Stop().
  void Run(rocksdb::DB* db, const std::string& path) {
    absl::MutexLock lock(&mu_);
    while (true) {
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return pending_ || stop_;
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      absl::Duration backoff = kFirstRetry;
      while (pending_ && !stop_) {
        pending_ = false;
        mu_.Unlock();
        const rocksdb::Status r = db->Resume();
        const uint64_t free_then = FreeBytes(path);
        mu_.Lock();
        // OK from a Resume() that ran before the error was recorded
        // (stopped_ still set) is no recovery: try again.
        if (r.ok() && !stopped_) break;
        pending_ = true;
        // Wait for the backoff, the space to grow, or Stop().
        const absl::Time retry_at = absl::Now() + backoff;
        backoff = std::min(backoff * 2, kMaxRetry);
        while (!stop_ && absl::Now() < retry_at) {
          mu_.AwaitWithTimeout(absl::Condition(&stop_), kPollInterval);
          mu_.Unlock();
          const uint64_t free_now = FreeBytes(path);
          mu_.Lock();
          if (free_now >= free_then + kFreedBytes) {
            backoff = kFirstRetry;  // space is back: retry at the first pace
            break;
          }
        }
      }
    }
  }
  void Stop() {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }

 private:
  static uint64_t FreeBytes(const std::string& path) {
    std::error_code ec;
    const std::filesystem::space_info si = std::filesystem::space(path, ec);
    return ec ? 0 : static_cast<uint64_t>(si.available);
  }

  absl::Mutex mu_;
  bool pending_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // A background error stopped writes (stop_error_, the most severe);
  // cleared when a recovery ends well. stopped_hint_ mirrors stopped_ for
  // StoppedBy's lock-free fast path.
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  rocksdb::Status stop_error_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stopped_hint_{false};
  std::function<void()> on_resumed_ ABSL_GUARDED_BY(mu_);
};

// ------------------------------------------------------------ the store



struct ConvState {
  uint64_t last_seq = 0;
  uint64_t epoch = 0;
};

struct ConvStripe {
  absl::Mutex mu;
  // conversation id -> state, for conversations whose state was loaded.
  absl::flat_hash_map<std::string, ConvState> cache ABSL_GUARDED_BY(mu);
  // conversation id -> record (its last_seq field is not kept here: it is
  // in `cache`). Every writer of a record holds this stripe and erases it.
  absl::flat_hash_map<std::string, ConversationRecord> records
      ABSL_GUARDED_BY(mu);
};

// A device's delivery ids: the highest assigned and the stored bound ("C").
struct DeliveryCounter {
  uint64_t last = 0;
  uint64_t bound = 0;
};

struct DeviceStripe {
  absl::Mutex mu;
  // DeviceScope -> highest delivery id, for existing devices only.
  absl::flat_hash_map<std::string, DeliveryCounter> last_delivery
      ABSL_GUARDED_BY(mu);
};

// Holds a set of device stripes, locked in ascending index order.
class DeviceLocks {
 public:
  DeviceLocks(DeviceStripe* stripes, std::vector<size_t> indexes)
      ABSL_NO_THREAD_SAFETY_ANALYSIS : stripes_(stripes), indexes_(std::move(indexes)) {
    std::sort(indexes_.begin(), indexes_.end());
    indexes_.erase(std::unique(indexes_.begin(), indexes_.end()),
                   indexes_.end());
    for (size_t i : indexes_) stripes_[i].mu.Lock();
  }
  ~DeviceLocks() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (auto it = indexes_.rbegin(); it != indexes_.rend(); ++it) {
      stripes_[*it].mu.Unlock();
    }
  }
  DeviceLocks(const DeviceLocks&) = delete;
  DeviceLocks& operator=(const DeviceLocks&) = delete;

 private:
  DeviceStripe* stripes_;
  std::vector<size_t> indexes_;
};

// A record of a column family keyed by BE64 only (policies, audit).
struct NumberedValue {
  uint64_t number = 0;
  std::string value;
};

class RocksDbStorage final : public Storage,
                             public AccountStore,
                             public ConversationStore,
                             public MessageStore,
                             public PolicyStore,
                             public AuditStore,
                             public AdminTokenStore,
                             public KeyStore,
                             public SafetyStore {
 public:
  static absl::StatusOr<std::unique_ptr<Storage>> Open(
      const RocksDbOptions& options);

  ~RocksDbStorage() override;

  AccountStore& accounts() override { return *this; }
  ConversationStore& conversations() override { return *this; }
  MessageStore& messages() override { return *this; }
  PolicyStore& policies() override { return *this; }
  AuditStore& audit() override { return *this; }
  AdminTokenStore& admin_tokens() override { return *this; }
  KeyStore& keys() override { return *this; }
  SafetyStore& safety() override { return *this; }
  absl::Status Flush() override;
  void WhenDurable(std::function<void(absl::Status)> done) override;
  absl::Status Compact() override;
  StorageStats Stats() override;

  // SafetyStore
  absl::StatusOr<uint64_t> AddReport(const std::string& body) override;
  absl::Status UpdateReport(const StoredReport& r) override;
  absl::StatusOr<StoredReport> GetReport(uint64_t number) override;
  absl::StatusOr<std::vector<StoredReport>> ListReports(bool open_only,
                                                        uint64_t after,
                                                        size_t limit) override;
  absl::Status ScheduleNotice(const ScheduledNotice& n) override;
  absl::StatusOr<std::vector<ScheduledNotice>> DueNotices(int64_t now_ms,
                                                          size_t limit) override;
  absl::Status DeleteNotice(const ScheduledNotice& n) override;
  absl::Status PutSafetyValue(const std::string& name,
                              const std::string& value) override;
  absl::StatusOr<std::string> GetSafetyValue(const std::string& name) override;

  // AccountStore
  absl::StatusOr<DeviceRecord> CreateAccount(
      const AccountRecord& account, const DeviceRecord& first_device) override;
  absl::StatusOr<AccountRecord> GetAccount(
      const std::string& account_id) override;
  absl::StatusOr<AccountRecord> GetAccountByUsername(
      const std::string& username) override;
  absl::Status UpdateAccount(const AccountRecord& account) override;
  absl::StatusOr<DeviceRecord> AddDevice(const DeviceRecord& device) override;
  absl::StatusOr<DeviceRecord> GetDevice(const std::string& account_id,
                                         uint32_t device_id) override;
  absl::StatusOr<std::vector<DeviceRecord>> ListDevices(
      const std::string& account_id) override;
  absl::Status UpdateDevice(const DeviceRecord& device) override;
  absl::Status RemoveDevice(const std::string& account_id,
                            uint32_t device_id) override;
  absl::StatusOr<DeviceRecord> FindDeviceByTokenHash(
      const std::string& token_hash) override;
  absl::Status PutDeviceLink(const DeviceLinkRecord& link) override;
  absl::StatusOr<DeviceLinkRecord> TakeDeviceLink(
      const std::string& code_hash) override;

  // ConversationStore
  absl::Status CreateConversation(const ConversationRecord& c) override;
  absl::StatusOr<ConversationRecord> GetConversation(
      const std::string& conversation_id) override;
  absl::StatusOr<std::string> FindDirect(const std::string& account_a,
                                         const std::string& account_b) override;
  absl::Status UpdateConversation(const ConversationRecord& c) override;
  absl::StatusOr<std::vector<std::string>> ListConversationIds(
      const std::string& account_id) override;
  absl::Status ForEachConversationAfter(
      const std::string& after_id,
      const std::function<bool(const ConversationRecord&)>& visit) override;
  uint64_t EstimateConversationCount() override;

  // PolicyStore
  absl::Status AppendRevision(const PolicyRevisionRecord& r) override;
  absl::StatusOr<PolicyRevisionRecord> GetRevision(uint64_t number) override;
  absl::StatusOr<PolicyRevisionRecord> HeadRevision() override;
  absl::StatusOr<std::vector<PolicyRevisionRecord>> ListRevisions(
      uint64_t before, size_t limit) override;

  // AuditStore
  absl::Status AppendAudit(const AuditRecord& r) override;
  absl::StatusOr<std::vector<AuditRecord>> ReadAudit(uint64_t after_seq,
                                                     size_t limit) override;
  absl::StatusOr<AuditRecord> LastAudit() override;

  // AdminTokenStore
  absl::Status PutAdminToken(const AdminTokenRecord& t) override;
  absl::StatusOr<AdminTokenRecord> GetAdminToken(
      const std::string& token_id) override;
  absl::StatusOr<AdminTokenRecord> FindAdminTokenByHash(
      const std::string& token_hash) override;
  absl::StatusOr<std::vector<AdminTokenRecord>> ListAdminTokens() override;

  // KeyStore
  absl::Status SetDeviceKeys(const DeviceKeysRecord& keys) override;
  absl::Status AddOneTimePreKeys(const std::string& account_id,
                                 uint32_t device_id,
                                 const std::vector<PreKeyRecord>& keys) override;
  absl::StatusOr<size_t> CountOneTimePreKeys(const std::string& account_id,
                                             uint32_t device_id) override;
  absl::StatusOr<DeviceKeysRecord> GetDeviceKeys(const std::string& account_id,
                                                 uint32_t device_id) override;
  absl::StatusOr<PreKeyRecord> TakeOneTimePreKey(const std::string& account_id,
                                                 uint32_t device_id) override;

  // MessageStore
  absl::StatusOr<AppendResult> Append(const AppendRequest& req) override;
  absl::StatusOr<std::vector<QueueEntry>> ReadQueue(
      const std::string& account_id, uint32_t device_id,
      uint64_t after_delivery_id, size_t limit) override;
  absl::StatusOr<uint64_t> LastDeliveryId(const std::string& account_id,
                                          uint32_t device_id) override;
  absl::StatusOr<size_t> Ack(
      const std::string& account_id, uint32_t device_id,
      const std::vector<uint64_t>& delivery_ids) override;
  absl::StatusOr<std::vector<HistoryEntry>> ReadHistory(
      const std::string& conversation_id, uint64_t before_seq,
      size_t limit) override;
  absl::StatusOr<size_t> PurgeHistoryBefore(int64_t cutoff_ms) override;
  absl::StatusOr<size_t> PurgeConversationHistoryBefore(
      const std::string& conversation_id, int64_t cutoff_ms) override;
  absl::Status DeleteHistoryEntry(const std::string& conversation_id,
                                  uint64_t seq) override;
  absl::StatusOr<size_t> PurgeQueuesBefore(int64_t cutoff_ms) override;
  absl::StatusOr<size_t> PurgeIdempotencyBefore(int64_t cutoff_ms) override;

 private:
  RocksDbStorage(const RocksDbOptions& options, rocksdb::DB* db,
                 std::shared_ptr<ErrorRecovery> recovery,
                 std::vector<rocksdb::ColumnFamilyHandle*> handles);

  rocksdb::ColumnFamilyHandle* cf(Cf c) const { return handles_[c]; }

  // Point read; NotFound (with the `what` in the message) when absent.
  absl::StatusOr<std::string> Get(
      Cf c, absl::string_view key, absl::string_view what,
      const rocksdb::Snapshot* snapshot = nullptr) const;
  // Point read; nullopt when absent.
  absl::StatusOr<std::optional<std::string>> MaybeGet(
      Cf c, absl::string_view key,
      const rocksdb::Snapshot* snapshot = nullptr) const;
  // The walk of a purge, from `it`'s position: `expired(key, value)` gives
  // the device scope of an entry to delete (nullopt: keep it). The deletes
  // are written per scope under that device's stripe, at most
  // kPurgeBatchEntries per batch; `recheck(key)` is asked again under the
  // stripe for each (false: keep it). Returns how many were deleted.
  absl::StatusOr<size_t> PurgeWalk(
      Cf c, rocksdb::Iterator* it, absl::string_view op,
      absl::FunctionRef<absl::StatusOr<std::optional<absl::string_view>>(
          absl::string_view key, absl::string_view value)>
          expired,
      absl::FunctionRef<absl::StatusOr<bool>(const std::string& key)> recheck)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(purge_mu_);
  // When a write is durable (RocksDbOptions::sync, batch_wal_writes).
  enum class Durability {
    // Sync mode: fsynced before Write returns. Otherwise in the log file.
    kOnReturn,
    // In the log file before Write returns, never fsynced (acks: a lost
    // ack after a power loss is a redelivery).
    kWritten,
    // The caller makes it durable after releasing its locks (Append:
    // WaitDurable / WriteWalThrough, or its caller with WhenDurable); with
    // batch_wal_writes the record may stay in RocksDB's buffer until then.
    kByCaller,
  };
  absl::Status Write(rocksdb::WriteBatch* batch, absl::string_view op,
                     Durability durability = Durability::kOnReturn);
  // Sync mode: returns once every write made before the call is fsynced
  // (one SyncWAL per group of waiting writers).
  absl::Status WaitDurable();
  // batch_wal_writes: returns once every write visible now is in the log
  // file (one FlushWAL, skipped when an earlier one covered them all).
  // Readers that hand out stored messages call it after reading, so nothing
  // they return can be lost by kill -9. OK at once without batch_wal_writes.
  absl::Status WriteWalThrough();
  // The recovery thread resumed the database (a new log): log writes may
  // be tried again.
  void ClearWalError();
  // WriteWalThrough for readers (ReadQueue, ReadHistory): the same, except
  // that a full disk does not fail the read. The records whose log write
  // failed stay in the memtable, readable; Resume() writes them to a table
  // file once space is freed. Their senders were told the Send failed (and
  // a retry with the same client_message_id finds them); only a crash
  // before the space is freed loses them.
  absl::Status WriteWalThroughForRead();
  // The committer thread (sync mode, or batch_wal_writes): SyncWAL or
  // FlushWAL for every WhenDurable waiter, then answers them.
  void CommitLoop();
  // The sequence number every write up to which is durable as promised.
  uint64_t DurableSeq() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(durable_mu_);
  struct DurableWaiter {
    uint64_t target = 0;
    std::function<void(absl::Status)> done;
  };
  absl::StatusOr<AppendResult> AppendUnsynced(const AppendRequest& req);

  absl::StatusOr<DeviceRecord> ReadDevice(absl::string_view account_id,
                                          uint32_t device_id) const;
  absl::StatusOr<ConversationRecord> ReadConversationRecord(
      absl::string_view id, const rocksdb::Snapshot* snapshot = nullptr) const;
  absl::StatusOr<uint64_t> ReadLastSeq(
      absl::string_view id, const rocksdb::Snapshot* snapshot = nullptr) const;
  // The record with the highest key of a BE64-keyed column family; nullopt
  // when the column family is empty.
  absl::StatusOr<std::optional<NumberedValue>> LastNumbered(
      Cf c, absl::string_view what) const;
  // Loads the conversation counter (counting the conversations once if the
  // database predates it). Called by Open only, before any other use.
  absl::Status InitConversationCount();

  size_t ConvStripeIndex(absl::string_view conv_id) const;
  size_t DeviceStripeIndex(absl::string_view scope) const;
  // Cached conversation state; loads it under the held stripe lock.
  absl::StatusOr<ConvState> LoadConvState(ConvStripe& stripe,
                                          const std::string& conv_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stripe.mu);
  // Cached delivery counter; nullopt when the device does not exist.
  absl::StatusOr<std::optional<DeliveryCounter>> LoadCounter(
      DeviceStripe& stripe, const std::string& scope)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stripe.mu);
  // OK if the device of `scope` exists, NotFound otherwise.
  absl::Status CheckDeviceExists(DeviceStripe& stripe, const std::string& scope,
                                 uint32_t device_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stripe.mu);
  // Ids of the device's stored one-time pre-keys, ascending.
  absl::StatusOr<std::vector<uint32_t>> ListPreKeyIds(
      const std::string& scope) const;

  const RocksDbOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::WriteOptions write_options_;

  // Drops cached authentication records after a write changed them: bumps
  // auth_cache_gen_ (so a reader that read the database before the write
  // does not insert what it read) and erases the given keys.
  void InvalidateAuthCache(std::initializer_list<absl::string_view> token_hashes,
                           absl::string_view account_id);

  absl::Mutex accounts_mu_;
  // Authentication caches: device by token hash, account by id (bounded by
  // kMaxCachedAuthRecords). A reader notes auth_cache_gen_ before it reads
  // the database and inserts only if it is unchanged afterwards.
  absl::Mutex auth_cache_mu_;
  uint64_t auth_cache_gen_ ABSL_GUARDED_BY(auth_cache_mu_) = 0;
  absl::flat_hash_map<std::string, DeviceRecord> device_by_token_
      ABSL_GUARDED_BY(auth_cache_mu_);
  absl::flat_hash_map<std::string, AccountRecord> account_cache_
      ABSL_GUARDED_BY(auth_cache_mu_);
  absl::Mutex create_conv_mu_;
  absl::Mutex purge_mu_;  // One purge at a time, so counts are exact.
  absl::Mutex policies_mu_;
  absl::Mutex audit_mu_;
  absl::Mutex admin_tokens_mu_;
  absl::Mutex safety_mu_;  // AddReport/UpdateReport (number and index)
  std::shared_ptr<ErrorRecovery> recovery_;
  std::thread recovery_thread_;
  absl::Mutex durable_mu_;
  uint64_t durable_seq_ ABSL_GUARDED_BY(durable_mu_) = 0;  // sync mode
  std::vector<DurableWaiter> durable_waiters_ ABSL_GUARDED_BY(durable_mu_);
  bool stop_syncer_ ABSL_GUARDED_BY(durable_mu_) = false;
  // batch_wal_writes (and not sync): every write up to this sequence
  // number is in the log file. Only grows.
  std::atomic<uint64_t> wal_written_seq_{0};
  const bool batch_wal_ = false;  // options_.batch_wal_writes && !sync
  // batch_wal_writes: one FlushWAL at a time, and none while the log writer
  // has failed. After a failed log write RocksDB's writer refuses every
  // later buffer write ("Seen error"), and FlushWAL records that refusal as
  // a new background error which outranks the out-of-space one: the
  // database then stays stopped for good (Resume() refuses a fatal error).
  // So the first failure is kept in wal_error_ and returned to every caller
  // until the recovery thread's Resume() has replaced the log (ClearWalError).
  // A Write racing the failed FlushWAL is covered by ErrorRecovery's
  // listener (IsLogWriterAftermath).
  absl::Mutex wal_flush_mu_;
  absl::Status wal_error_ ABSL_GUARDED_BY(wal_flush_mu_);
  std::thread syncer_;            // the committer: sync or batch_wal_
  // The committer's rounds and the waiters they answered (Stats).
  std::atomic<uint64_t> group_commits_{0};
  std::atomic<uint64_t> group_commit_waiters_{0};
  // Mirrors the "conversation_count" key; written under create_conv_mu_
  // after a successful write, read without a lock.
  std::atomic<uint64_t> conversation_count_{0};
  std::unique_ptr<ConvStripe[]> conv_stripes_;
  std::unique_ptr<DeviceStripe[]> device_stripes_;
};

// ---------------------------------------------------------------- open

absl::StatusOr<std::unique_ptr<Storage>> RocksDbStorage::Open(
    const RocksDbOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("storage: empty database path");
  }
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "storage: cannot create directory ", options.path, ": ", ec.message()));
  }

  rocksdb::DBOptions db_opts;
  if (options.env != nullptr) db_opts.env = options.env;
  db_opts.create_if_missing = true;
  db_opts.create_missing_column_families = true;
  db_opts.max_background_jobs = 4;
  db_opts.bytes_per_sync = 1 << 20;
  // Bounds memtable memory across all column families.
  db_opts.db_write_buffer_size = 4 * options.write_buffer_bytes;
  db_opts.keep_log_file_num = 5;
  db_opts.info_log = std::make_shared<StderrLogger>();
  auto recovery = std::make_shared<ErrorRecovery>();
  db_opts.listeners.push_back(recovery);
  // The write-ahead-log and memtable stages of consecutive write groups
  // overlap: +10-25% messages/s in parley-bench (BENCHMARKS.md).
  db_opts.enable_pipelined_write = true;
  // A writer waiting for its write group blocks at once instead of calling
  // sched_yield for up to 100 us: on a small machine the yields took CPU
  // from the threads doing the work (sched_yield 3.4% of parleyd's CPU;
  // 4-15% more messages/s with SendStream, the same with unary Sends;
  // BENCHMARKS.md, fourth round).
  db_opts.enable_write_thread_adaptive_yield = false;
  // Appends leave their log records in RocksDB's buffer until WhenDurable or
  // a reader writes it out (RocksDbOptions::batch_wal_writes).
  db_opts.manual_wal_flush = options.batch_wal_writes && !options.sync;

  std::shared_ptr<rocksdb::Cache> cache =
      rocksdb::NewLRUCache(options.block_cache_bytes);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  rocksdb::ColumnFamilyOptions cf_opts;
  cf_opts.write_buffer_size = options.write_buffer_bytes;
  cf_opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf_opts.level_compaction_dynamic_level_bytes = true;

  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const char* name : kCfNames) descs.emplace_back(name, cf_opts);
  // Every Send with a client message id looks its idempotency key up, and
  // almost always misses: a whole-key bloom filter on the memtable answers
  // most misses without a skip-list search.
  descs[kIdempotencyCf].options.memtable_prefix_bloom_size_ratio = 0.05;
  descs[kIdempotencyCf].options.memtable_whole_key_filtering = true;
  descs[kIdempotencyCf].options.memtable_insert_with_hint_prefix_extractor =
      std::make_shared<SenderScopeHint>();
  auto hint = std::make_shared<CounterSuffixHint>();
  descs[kQueuesCf].options.memtable_insert_with_hint_prefix_extractor = hint;
  descs[kHistoryCf].options.memtable_insert_with_hint_prefix_extractor = hint;
  descs[kConversationsCf].options.memtable_insert_with_hint_prefix_extractor =
      std::make_shared<WholeKeyHint>();
  if (options.finger_skip_list) {
    // One writer at a time, as the representation requires (memtable_rep.h).
    db_opts.allow_concurrent_memtable_write = false;
    auto factory = NewFingerSkipListFactory();
    for (rocksdb::ColumnFamilyDescriptor& d : descs) {
      d.options.memtable_factory = factory;
    }
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      rocksdb::DB::Open(db_opts, options.path, descs, &handles, &raw);
  if (!s.ok()) {
    return FromRocks(s, absl::StrCat("open ", options.path));
  }
  std::unique_ptr<RocksDbStorage> storage(
      new RocksDbStorage(options, raw, std::move(recovery), std::move(handles)));

  // Format version: written on first open, checked afterwards.
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::optional<std::string> version,
      storage->MaybeGet(kMetaCf, kFormatVersionKey));
  if (!version.has_value()) {
    std::string v;
    PutBE32(&v, kFormatVersion);
    rocksdb::WriteBatch batch;
    batch.Put(storage->cf(kMetaCf), kFormatVersionKey, v);
    PARLEY_STORAGE_RETURN_IF_ERROR(storage->Write(&batch, "init format"));
  } else {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(uint64_t v,
                                    ParseFixed(*version, 4, "format version"));
    if (v < kOldestReadableFormat || v > kFormatVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "storage: database format version ", v, " at ", options.path,
          " is not supported (this build reads versions ",
          kOldestReadableFormat, " to ", kFormatVersion, ")"));
    }
    if (v != kFormatVersion) {
      // Upgrade in place: older versions are valid readings of this one
      // (format 1's "C" keys are valid bounds; formats 1-2 kept a history
      // time index, dropped here in the same batch), but a database written
      // by this build must not be opened by an older one.
      std::string nv;
      PutBE32(&nv, kFormatVersion);
      rocksdb::WriteBatch batch;
      batch.Put(storage->cf(kMetaCf), kFormatVersionKey, nv);
      if (v < 3) batch.DeleteRange(storage->cf(kHistoryCf), "T", "U");
      PARLEY_STORAGE_RETURN_IF_ERROR(storage->Write(&batch, "upgrade format"));
    }
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(storage->InitConversationCount());
  return std::unique_ptr<Storage>(std::move(storage));
}

RocksDbStorage::RocksDbStorage(
    const RocksDbOptions& options, rocksdb::DB* db,
    std::shared_ptr<ErrorRecovery> recovery,
    std::vector<rocksdb::ColumnFamilyHandle*> handles)
    : options_(options),
      db_(db),
      handles_(std::move(handles)),
      recovery_(std::move(recovery)),
      batch_wal_(options.batch_wal_writes && !options.sync),
      conv_stripes_(new ConvStripe[kConvStripes]),
      device_stripes_(new DeviceStripe[kDeviceStripes]) {
  write_options_.sync = options_.sync;
  write_options_.disableWAL = false;
  if (options_.sync || batch_wal_) {
    syncer_ = std::thread([this] { CommitLoop(); });
  }
  recovery_->SetOnResumed([this] { ClearWalError(); });
  recovery_thread_ =
      std::thread([this] { recovery_->Run(db_.get(), options_.path); });
}

RocksDbStorage::~RocksDbStorage() {
  recovery_->Stop();
  recovery_thread_.join();
  recovery_->SetOnResumed(nullptr);  // the listener outlives this object
  if (syncer_.joinable()) {
    {
      absl::MutexLock lock(&durable_mu_);
      stop_syncer_ = true;
    }
    syncer_.join();
  }
  // Best effort, as Close: a buffered record whose writer was answered is
  // already in the log file.
  if (batch_wal_) (void)db_->FlushWAL(false);
  for (rocksdb::ColumnFamilyHandle* h : handles_) {
    db_->DestroyColumnFamilyHandle(h);
  }
  handles_.clear();
  (void)db_->Close();  // Best effort; the WAL makes acknowledged writes durable.
}

absl::Status RocksDbStorage::Flush() {
  if (rocksdb::Status stopped = recovery_->StoppedBy(); !stopped.ok()) {
    return FromRocks(stopped, "flush");
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(db_->FlushWAL(true), "flush wal"));
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return FromRocks(db_->Flush(fo, handles_), "flush memtables");
}

// ------------------------------------------------------------- helpers

absl::StatusOr<std::optional<std::string>> RocksDbStorage::MaybeGet(
    Cf c, absl::string_view key, const rocksdb::Snapshot* snapshot) const {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::string value;
  rocksdb::Status s =
      db_->Get(ro, cf(c), rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, absl::StrCat("get from ", kCfNames[c]));
  return std::optional<std::string>(std::move(value));
}

absl::StatusOr<std::string> RocksDbStorage::Get(
    Cf c, absl::string_view key, absl::string_view what,
    const rocksdb::Snapshot* snapshot) const {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<std::string> v,
                                  MaybeGet(c, key, snapshot));
  if (!v.has_value()) {
    return absl::NotFoundError(absl::StrCat(what, " not found"));
  }
  return std::move(*v);
}

absl::Status RocksDbStorage::Write(rocksdb::WriteBatch* batch,
                                   absl::string_view op,
                                   Durability durability) {
  if (rocksdb::Status stopped = recovery_->StoppedBy(); !stopped.ok()) {
    return FromRocks(stopped, op);
  }
  rocksdb::WriteOptions wo = write_options_;
  wo.sync = wo.sync && durability == Durability::kOnReturn;
  rocksdb::Status s = db_->Write(wo, batch);
  // A write-ahead-log error also reaches ErrorRecovery as a background
  // error; asking again covers any that does not.
  if (!s.ok() && (s.IsNoSpace() || s.IsIOError())) recovery_->Request();
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(s, op));
  if (durability != Durability::kByCaller) return WriteWalThrough();
  return absl::OkStatus();
}

absl::Status RocksDbStorage::WriteWalThrough() {
  if (!batch_wal_) return absl::OkStatus();
  // Every record with a sequence number up to `visible` was appended to the
  // log buffer before it became visible; one FlushWAL after reading it
  // writes them all (FlushWAL is serialized with log appends).
  const uint64_t visible = db_->GetLatestSequenceNumber();
  if (wal_written_seq_.load(std::memory_order_acquire) >= visible) {
    return absl::OkStatus();
  }
  absl::MutexLock lock(&wal_flush_mu_);
  // Another caller's FlushWAL may have covered `visible` meanwhile.
  if (wal_written_seq_.load(std::memory_order_acquire) >= visible) {
    return absl::OkStatus();
  }
  if (!wal_error_.ok()) return wal_error_;  // until the log is replaced
  rocksdb::Status s = db_->FlushWAL(/*sync=*/false);
  if (!s.ok()) {
    wal_error_ = FromRocks(s, "write wal");
    recovery_->Request();
    return wal_error_;
  }
  uint64_t seen = wal_written_seq_.load(std::memory_order_relaxed);
  while (seen < visible && !wal_written_seq_.compare_exchange_weak(
                               seen, visible, std::memory_order_release)) {
  }
  return absl::OkStatus();
}

absl::Status RocksDbStorage::WriteWalThroughForRead() {
  absl::Status s = WriteWalThrough();
  if (absl::IsResourceExhausted(s)) return absl::OkStatus();
  return s;
}

void RocksDbStorage::ClearWalError() {
  if (!batch_wal_) return;
  absl::MutexLock lock(&wal_flush_mu_);
  wal_error_ = absl::OkStatus();
}

absl::StatusOr<DeviceRecord> RocksDbStorage::ReadDevice(
    absl::string_view account_id, uint32_t device_id) const {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string v, Get(kAccountsCf, DeviceKey(account_id, device_id),
                         absl::StrCat("device ", device_id)));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::Device p, Parse<pb::Device>(v, "device"));
  return FromProto(p);
}

absl::StatusOr<ConversationRecord> RocksDbStorage::ReadConversationRecord(
    absl::string_view id, const rocksdb::Snapshot* snapshot) const {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string v, Get(kConversationsCf, ConvRecordKey(id),
                         absl::StrCat("conversation ", id), snapshot));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::Conversation p,
                                  Parse<pb::Conversation>(v, "conversation"));
  return FromProto(p);
}

absl::StatusOr<uint64_t> RocksDbStorage::ReadLastSeq(
    absl::string_view id, const rocksdb::Snapshot* snapshot) const {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::optional<std::string> v,
      MaybeGet(kConversationsCf, ConvSeqKey(id), snapshot));
  if (!v.has_value()) return 0;
  return ParseFixed(*v, 8, "last_seq");
}

absl::StatusOr<std::optional<NumberedValue>> RocksDbStorage::LastNumbered(
    Cf c, absl::string_view what) const {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(c)));
  it->SeekToLast();
  if (!it->Valid()) {
    PARLEY_STORAGE_RETURN_IF_ERROR(
        FromRocks(it->status(), absl::StrCat("read last ", what)));
    return std::optional<NumberedValue>();
  }
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      uint64_t number,
      ParseFixed(View(it->key()), 8, absl::StrCat(what, " key")));
  return std::optional<NumberedValue>(
      NumberedValue{.number = number, .value = it->value().ToString()});
}

absl::Status RocksDbStorage::InitConversationCount() {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                                  MaybeGet(kMetaCf, kConversationCountKey));
  if (stored.has_value()) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        uint64_t count, ParseFixed(*stored, 8, "conversation count"));
    conversation_count_.store(count);
    return absl::OkStatus();
  }
  // A new database, or one written before the counter existed: count the
  // record keys (conversation_id + 0x00 + "r") once.
  uint64_t count = 0;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(kConversationsCf)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::string_view key = View(it->key());
    if (key.size() >= 2 && key[key.size() - 2] == '\0' && key.back() == 'r') {
      ++count;
    }
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(
      FromRocks(it->status(), "count conversations"));
  rocksdb::WriteBatch batch;
  batch.Put(cf(kMetaCf), kConversationCountKey, BE64(count));
  PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "init conversation count"));
  conversation_count_.store(count);
  return absl::OkStatus();
}

size_t RocksDbStorage::ConvStripeIndex(absl::string_view conv_id) const {
  return absl::Hash<absl::string_view>()(conv_id) % kConvStripes;
}

size_t RocksDbStorage::DeviceStripeIndex(absl::string_view scope) const {
  return absl::Hash<absl::string_view>()(scope) % kDeviceStripes;
}

absl::StatusOr<ConvState> RocksDbStorage::LoadConvState(
    ConvStripe& stripe, const std::string& conv_id) {
  auto it = stripe.cache.find(conv_id);
  if (it != stripe.cache.end()) return it->second;
  // All writers of the record and of last_seq hold this stripe, so the two
  // reads see one state.
  PARLEY_STORAGE_ASSIGN_OR_RETURN(ConversationRecord c,
                                  ReadConversationRecord(conv_id));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(uint64_t last_seq, ReadLastSeq(conv_id));
  ConvState state{.last_seq = last_seq, .epoch = c.security.epoch};
  if (stripe.cache.size() >= kMaxCachedPerStripe) stripe.cache.clear();
  stripe.cache.emplace(conv_id, state);
  // The record was read anyway: keep it for GetConversation.
  if (stripe.records.size() >= kMaxRecordsPerStripe) stripe.records.clear();
  stripe.records.insert_or_assign(conv_id, std::move(c));
  return state;
}

absl::StatusOr<std::optional<DeliveryCounter>> RocksDbStorage::LoadCounter(
    DeviceStripe& stripe, const std::string& scope) {
  auto it = stripe.last_delivery.find(scope);
  if (it != stripe.last_delivery.end()) return std::optional(it->second);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<std::string> v,
                                  MaybeGet(kQueuesCf, CounterKey(scope)));
  if (!v.has_value()) return std::optional<DeliveryCounter>();
  PARLEY_STORAGE_ASSIGN_OR_RETURN(uint64_t bound,
                                  ParseFixed(*v, 8, "delivery counter"));
  // Ids up to the bound may have been assigned before a restart: continue
  // above it.
  const DeliveryCounter c{.last = bound, .bound = bound};
  if (stripe.last_delivery.size() >= kMaxCachedPerDeviceStripe) {
    stripe.last_delivery.clear();
  }
  stripe.last_delivery.emplace(scope, c);
  return std::optional(c);
}

// ------------------------------------------------------------ accounts

absl::StatusOr<DeviceRecord> RocksDbStorage::CreateAccount(
    const AccountRecord& account, const DeviceRecord& first_device) {
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("account_id", account.account_id));
  if (account.username.empty()) {
    return absl::InvalidArgumentError("username is empty");
  }
  DeviceRecord device = first_device;
  device.account_id = account.account_id;
  device.device_id = 1;

  absl::MutexLock lock(&accounts_mu_);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::optional<std::string> existing,
      MaybeGet(kAccountsCf, AccountKey(account.account_id)));
  if (existing.has_value()) {
    return absl::AlreadyExistsError("account id already exists");
  }
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::optional<std::string> owner,
      MaybeGet(kAccountsCf, UsernameKey(account.username)));
  if (owner.has_value()) {
    return absl::AlreadyExistsError("username is taken");
  }
  if (!device.token_hash.empty()) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        std::optional<std::string> token,
        MaybeGet(kAccountsCf, TokenKey(device.token_hash)));
    if (token.has_value()) {
      return absl::AlreadyExistsError("device token already registered");
    }
  }

  rocksdb::WriteBatch batch;
  batch.Put(cf(kAccountsCf), AccountKey(account.account_id), Encode(account));
  batch.Put(cf(kAccountsCf), UsernameKey(account.username), account.account_id);
  batch.Put(cf(kAccountsCf), DeviceKey(account.account_id, 1), Encode(device));
  std::string next;
  PutBE32(&next, 1);
  batch.Put(cf(kAccountsCf), NextDeviceKey(account.account_id), next);
  if (!device.token_hash.empty()) {
    batch.Put(cf(kAccountsCf), TokenKey(device.token_hash),
              EncodeDeviceRef(account.account_id, 1));
  }
  batch.Put(cf(kQueuesCf), CounterKey(DeviceScope(account.account_id, 1)),
            BE64(0));
  PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "create account"));
  return device;
}

void RocksDbStorage::InvalidateAuthCache(
    std::initializer_list<absl::string_view> token_hashes,
    absl::string_view account_id) {
  absl::MutexLock lock(&auth_cache_mu_);
  ++auth_cache_gen_;
  for (absl::string_view t : token_hashes) {
    if (!t.empty()) device_by_token_.erase(t);
  }
  if (!account_id.empty()) account_cache_.erase(account_id);
}

absl::StatusOr<AccountRecord> RocksDbStorage::GetAccount(
    const std::string& account_id) {
  uint64_t gen;
  {
    absl::MutexLock lock(&auth_cache_mu_);
    auto it = account_cache_.find(account_id);
    if (it != account_cache_.end()) return it->second;
    gen = auth_cache_gen_;
  }
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string v, Get(kAccountsCf, AccountKey(account_id), "account"));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::Account p,
                                  Parse<pb::Account>(v, "account"));
  AccountRecord r = FromProto(p);
  absl::MutexLock lock(&auth_cache_mu_);
  if (gen == auth_cache_gen_) {
    if (account_cache_.size() >= kMaxCachedAuthRecords) account_cache_.clear();
    account_cache_.emplace(account_id, r);
  }
  return r;
}

absl::StatusOr<AccountRecord> RocksDbStorage::GetAccountByUsername(
    const std::string& username) {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string id, Get(kAccountsCf, UsernameKey(username), "username"));
  return GetAccount(id);
}

absl::Status RocksDbStorage::UpdateAccount(const AccountRecord& account) {
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("account_id", account.account_id));
  if (account.username.empty()) {
    return absl::InvalidArgumentError("username is empty");
  }
  absl::MutexLock lock(&accounts_mu_);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(AccountRecord old,
                                  GetAccount(account.account_id));
  rocksdb::WriteBatch batch;
  if (old.username != account.username) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        std::optional<std::string> owner,
        MaybeGet(kAccountsCf, UsernameKey(account.username)));
    if (owner.has_value()) {
      return absl::AlreadyExistsError("username is taken");
    }
    batch.Delete(cf(kAccountsCf), UsernameKey(old.username));
    batch.Put(cf(kAccountsCf), UsernameKey(account.username),
              account.account_id);
  }
  batch.Put(cf(kAccountsCf), AccountKey(account.account_id), Encode(account));
  absl::Status written = Write(&batch, "update account");
  InvalidateAuthCache({}, account.account_id);
  return written;
}

absl::StatusOr<DeviceRecord> RocksDbStorage::AddDevice(
    const DeviceRecord& device_in) {
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("account_id", device_in.account_id));
  const std::string& account_id = device_in.account_id;
  absl::MutexLock lock(&accounts_mu_);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<std::string> account,
                                  MaybeGet(kAccountsCf, AccountKey(account_id)));
  if (!account.has_value()) return absl::NotFoundError("account not found");
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::optional<std::string> last_raw,
      MaybeGet(kAccountsCf, NextDeviceKey(account_id)));
  uint64_t last = 0;
  if (last_raw.has_value()) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(last,
                                    ParseFixed(*last_raw, 4, "device counter"));
  }
  if (last >= UINT32_MAX) {
    return absl::ResourceExhaustedError("device ids exhausted");
  }
  DeviceRecord device = device_in;
  device.device_id = static_cast<uint32_t>(last + 1);
  if (!device.token_hash.empty()) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        std::optional<std::string> token,
        MaybeGet(kAccountsCf, TokenKey(device.token_hash)));
    if (token.has_value()) {
      return absl::AlreadyExistsError("device token already registered");
    }
  }
  rocksdb::WriteBatch batch;
  batch.Put(cf(kAccountsCf), DeviceKey(account_id, device.device_id),
            Encode(device));
  std::string next;
  PutBE32(&next, device.device_id);
  batch.Put(cf(kAccountsCf), NextDeviceKey(account_id), next);
  if (!device.token_hash.empty()) {
    batch.Put(cf(kAccountsCf), TokenKey(device.token_hash),
              EncodeDeviceRef(account_id, device.device_id));
  }
  batch.Put(cf(kQueuesCf),
            CounterKey(DeviceScope(account_id, device.device_id)), BE64(0));
  PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "add device"));
  return device;
}

absl::StatusOr<DeviceRecord> RocksDbStorage::GetDevice(
    const std::string& account_id, uint32_t device_id) {
  return ReadDevice(account_id, device_id);
}

absl::StatusOr<std::vector<DeviceRecord>> RocksDbStorage::ListDevices(
    const std::string& account_id) {
  const std::string prefix = DevicePrefix(account_id);
  const std::string upper = PrefixSuccessor(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kAccountsCf)));
  std::vector<DeviceRecord> out;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        pb::Device p, Parse<pb::Device>(View(it->value()), "device"));
    out.push_back(FromProto(p));
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "list devices"));
  return out;
}

absl::Status RocksDbStorage::UpdateDevice(const DeviceRecord& device) {
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("account_id", device.account_id));
  absl::MutexLock lock(&accounts_mu_);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      DeviceRecord old, ReadDevice(device.account_id, device.device_id));
  rocksdb::WriteBatch batch;
  if (old.token_hash != device.token_hash) {
    if (!device.token_hash.empty()) {
      PARLEY_STORAGE_ASSIGN_OR_RETURN(
          std::optional<std::string> token,
          MaybeGet(kAccountsCf, TokenKey(device.token_hash)));
      if (token.has_value()) {
        return absl::AlreadyExistsError("device token already registered");
      }
      batch.Put(cf(kAccountsCf), TokenKey(device.token_hash),
                EncodeDeviceRef(device.account_id, device.device_id));
    }
    if (!old.token_hash.empty()) {
      batch.Delete(cf(kAccountsCf), TokenKey(old.token_hash));
    }
  }
  batch.Put(cf(kAccountsCf), DeviceKey(device.account_id, device.device_id),
            Encode(device));
  absl::Status written = Write(&batch, "update device");
  InvalidateAuthCache({old.token_hash, device.token_hash}, "");
  return written;
}

absl::Status RocksDbStorage::RemoveDevice(const std::string& account_id,
                                          uint32_t device_id) {
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("account_id", account_id));
  const std::string scope = DeviceScope(account_id, device_id);
  absl::MutexLock lock(&accounts_mu_);
  DeviceStripe& stripe = device_stripes_[DeviceStripeIndex(scope)];
  absl::MutexLock device_lock(&stripe.mu);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(DeviceRecord old,
                                  ReadDevice(account_id, device_id));
  rocksdb::WriteBatch batch;
  batch.Delete(cf(kAccountsCf), DeviceKey(account_id, device_id));
  if (!old.token_hash.empty()) {
    batch.Delete(cf(kAccountsCf), TokenKey(old.token_hash));
  }
  const std::string queue_prefix = QueuePrefix(scope);
  batch.DeleteRange(cf(kQueuesCf), queue_prefix, PrefixSuccessor(queue_prefix));
  batch.Delete(cf(kQueuesCf), CounterKey(scope));
  // Idempotency records of a removed device can never be hit again (device
  // ids are not reused).
  batch.DeleteRange(cf(kIdempotencyCf), scope, PrefixSuccessor(scope));
  // Its keys (identity, signed and one-time pre-keys): nobody may start a
  // session with a removed device.
  batch.DeleteRange(cf(kKeysCf), scope, PrefixSuccessor(scope));
  absl::Status written = Write(&batch, "remove device");
  InvalidateAuthCache({old.token_hash}, "");
  PARLEY_STORAGE_RETURN_IF_ERROR(written);
  stripe.last_delivery.erase(scope);
  return absl::OkStatus();
}

absl::StatusOr<DeviceRecord> RocksDbStorage::FindDeviceByTokenHash(
    const std::string& token_hash) {
  if (token_hash.empty()) return absl::NotFoundError("device token not found");
  uint64_t gen;
  {
    absl::MutexLock lock(&auth_cache_mu_);
    auto it = device_by_token_.find(token_hash);
    if (it != device_by_token_.end()) return it->second;
    gen = auth_cache_gen_;
  }
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string v, Get(kAccountsCf, TokenKey(token_hash), "device token"));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::DeviceRef ref,
                                  Parse<pb::DeviceRef>(v, "device ref"));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(DeviceRecord d,
                                  ReadDevice(ref.account_id(), ref.device_id()));
  absl::MutexLock lock(&auth_cache_mu_);
  if (gen == auth_cache_gen_) {
    if (device_by_token_.size() >= kMaxCachedAuthRecords) {
      device_by_token_.clear();
    }
    device_by_token_.emplace(token_hash, d);
  }
  return d;
}

absl::Status RocksDbStorage::PutDeviceLink(const DeviceLinkRecord& link) {
  if (link.code_hash.empty()) {
    return absl::InvalidArgumentError("code_hash is empty");
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("account_id", link.account_id));
  rocksdb::WriteBatch batch;
  batch.Put(cf(kAccountsCf), LinkKey(link.code_hash), Encode(link));
  return Write(&batch, "put device link");
}

absl::StatusOr<DeviceLinkRecord> RocksDbStorage::TakeDeviceLink(
    const std::string& code_hash) {
  absl::MutexLock lock(&accounts_mu_);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string v, Get(kAccountsCf, LinkKey(code_hash), "device link"));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::DeviceLink p,
                                  Parse<pb::DeviceLink>(v, "device link"));
  rocksdb::WriteBatch batch;
  batch.Delete(cf(kAccountsCf), LinkKey(code_hash));
  PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "take device link"));
  return FromProto(p);
}

// ------------------------------------------------------- conversations

absl::Status RocksDbStorage::CreateConversation(const ConversationRecord& c) {
  PARLEY_STORAGE_RETURN_IF_ERROR(
      CheckId("conversation_id", c.conversation_id));
  absl::flat_hash_set<absl::string_view> members;
  for (const MemberRecord& m : c.members) {
    PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("member account_id", m.account_id));
    if (!members.insert(m.account_id).second) {
      return absl::InvalidArgumentError("duplicate member");
    }
  }
  const bool direct = c.kind == kDirectKind && c.members.size() == 2;

  absl::MutexLock lock(&create_conv_mu_);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::optional<std::string> existing,
      MaybeGet(kConversationsCf, ConvRecordKey(c.conversation_id)));
  if (existing.has_value()) {
    return absl::AlreadyExistsError("conversation id already exists");
  }
  rocksdb::WriteBatch batch;
  if (direct) {
    const std::string pair =
        PairKey(c.members[0].account_id, c.members[1].account_id);
    PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<std::string> claimed,
                                    MaybeGet(kConvIndexCf, pair));
    if (claimed.has_value()) {
      return absl::AlreadyExistsError(
          "a direct conversation already exists for this pair");
    }
    batch.Put(cf(kConvIndexCf), pair, c.conversation_id);
  }
  batch.Put(cf(kConversationsCf), ConvRecordKey(c.conversation_id), Encode(c));
  batch.Put(cf(kConversationsCf), ConvSeqKey(c.conversation_id),
            BE64(c.last_seq));
  for (const MemberRecord& m : c.members) {
    batch.Put(cf(kConvIndexCf), MemberKey(m.account_id, c.conversation_id),
              "");
  }
  const uint64_t count = conversation_count_.load() + 1;
  batch.Put(cf(kMetaCf), kConversationCountKey, BE64(count));
  PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "create conversation"));
  conversation_count_.store(count);
  return absl::OkStatus();
}

absl::StatusOr<ConversationRecord> RocksDbStorage::GetConversation(
    const std::string& conversation_id) {
  // Every writer of the record and of last_seq holds this stripe, so the
  // cached record and state are one consistent view (as a snapshot was).
  ConvStripe& stripe = conv_stripes_[ConvStripeIndex(conversation_id)];
  absl::MutexLock lock(&stripe.mu);
  // Reads (and keeps) the record too when the state was not cached.
  PARLEY_STORAGE_ASSIGN_OR_RETURN(ConvState state,
                                  LoadConvState(stripe, conversation_id));
  auto it = stripe.records.find(conversation_id);
  if (it == stripe.records.end()) {  // State cached, record evicted.
    PARLEY_STORAGE_ASSIGN_OR_RETURN(ConversationRecord c,
                                    ReadConversationRecord(conversation_id));
    if (stripe.records.size() >= kMaxRecordsPerStripe) stripe.records.clear();
    it = stripe.records.emplace(conversation_id, std::move(c)).first;
  }
  ConversationRecord c = it->second;
  c.last_seq = state.last_seq;
  return c;
}

absl::StatusOr<std::string> RocksDbStorage::FindDirect(
    const std::string& account_a, const std::string& account_b) {
  return Get(kConvIndexCf, PairKey(account_a, account_b),
             "direct conversation");
}

absl::Status RocksDbStorage::UpdateConversation(const ConversationRecord& c) {
  PARLEY_STORAGE_RETURN_IF_ERROR(
      CheckId("conversation_id", c.conversation_id));
  absl::flat_hash_set<absl::string_view> new_members;
  for (const MemberRecord& m : c.members) {
    PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("member account_id", m.account_id));
    if (!new_members.insert(m.account_id).second) {
      return absl::InvalidArgumentError("duplicate member");
    }
  }
  ConvStripe& stripe = conv_stripes_[ConvStripeIndex(c.conversation_id)];
  absl::MutexLock lock(&stripe.mu);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(ConversationRecord old,
                                  ReadConversationRecord(c.conversation_id));
  rocksdb::WriteBatch batch;
  absl::flat_hash_set<absl::string_view> old_members;
  for (const MemberRecord& m : old.members) {
    old_members.insert(m.account_id);
    if (!new_members.contains(m.account_id)) {
      batch.Delete(cf(kConvIndexCf), MemberKey(m.account_id, c.conversation_id));
    }
  }
  for (const MemberRecord& m : c.members) {
    if (!old_members.contains(m.account_id)) {
      batch.Put(cf(kConvIndexCf), MemberKey(m.account_id, c.conversation_id),
                "");
    }
  }
  ConversationRecord updated = std::move(old);
  updated.title = c.title;
  updated.members = c.members;
  updated.security = c.security;
  batch.Put(cf(kConversationsCf), ConvRecordKey(c.conversation_id),
            Encode(updated));
  // Dropped before the write: after a failed write the stored state is
  // read again.
  stripe.records.erase(c.conversation_id);
  PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "update conversation"));
  auto it = stripe.cache.find(c.conversation_id);
  if (it != stripe.cache.end()) it->second.epoch = updated.security.epoch;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> RocksDbStorage::ListConversationIds(
    const std::string& account_id) {
  const std::string prefix = MemberPrefix(account_id);
  const std::string upper = PrefixSuccessor(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kConvIndexCf)));
  std::vector<std::string> out;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    out.emplace_back(View(it->key()).substr(prefix.size()));
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(
      FromRocks(it->status(), "list conversation ids"));
  return out;
}

absl::Status RocksDbStorage::ForEachConversationAfter(
    const std::string& after_id,
    const std::function<bool(const ConversationRecord&)>& visit) {
  // One iterator (an implicit snapshot): each conversation's record key
  // ("\0r") sorts immediately before its last_seq key ("\0s"). Ids hold no
  // NUL (CheckId), so after_id's keys and those of every smaller id sort
  // before after_id + "\x01", and the keys of every larger id at or after it.
  if (!after_id.empty()) {
    PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("after_id", after_id));
  }
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(kConversationsCf)));
  std::optional<ConversationRecord> pending;
  if (after_id.empty()) {
    it->SeekToFirst();
  } else {
    it->Seek(after_id + '\x01');
  }
  for (; it->Valid(); it->Next()) {
    absl::string_view key = View(it->key());
    if (key.size() < 2 || key[key.size() - 2] != '\0') {
      return absl::DataLossError("storage: malformed conversation key");
    }
    absl::string_view id = key.substr(0, key.size() - 2);
    const char tag = key.back();
    if (pending.has_value() && pending->conversation_id != id) {
      if (!visit(*pending)) return absl::OkStatus();
      pending.reset();
    }
    if (tag == 'r') {
      PARLEY_STORAGE_ASSIGN_OR_RETURN(
          pb::Conversation p, Parse<pb::Conversation>(View(it->value()),
                                                       "conversation"));
      pending = FromProto(p);
    } else if (tag == 's' && pending.has_value()) {
      PARLEY_STORAGE_ASSIGN_OR_RETURN(
          pending->last_seq,
          ParseFixed(View(it->value()), 8, "last_seq"));
      if (!visit(*pending)) return absl::OkStatus();
      pending.reset();
    }
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(
      FromRocks(it->status(), "iterate conversations"));
  if (pending.has_value()) visit(*pending);
  return absl::OkStatus();
}

uint64_t RocksDbStorage::EstimateConversationCount() {
  return conversation_count_.load(std::memory_order_relaxed);
}

// ------------------------------------------------------------ policies

absl::Status RocksDbStorage::AppendRevision(const PolicyRevisionRecord& r) {
  // Held across the check and the write: concurrent appenders of the same
  // number are serialized and all but the first fail the check.
  absl::MutexLock lock(&policies_mu_);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<NumberedValue> head,
                                  LastNumbered(kPoliciesCf, "policy revision"));
  const uint64_t head_number = head.has_value() ? head->number : 0;
  if (head_number == UINT64_MAX) {
    return absl::ResourceExhaustedError("policy revision numbers exhausted");
  }
  if (r.number != head_number + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "policy revision ", r.number, " is not the next revision (head is ",
        head_number, ", expected ", head_number + 1, ")"));
  }
  rocksdb::WriteBatch batch;
  batch.Put(cf(kPoliciesCf), BE64(r.number), Encode(r));
  return Write(&batch, "append policy revision");
}

absl::StatusOr<PolicyRevisionRecord> RocksDbStorage::GetRevision(
    uint64_t number) {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string v,
      Get(kPoliciesCf, BE64(number), absl::StrCat("policy revision ", number)));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      pb::PolicyRevision p, Parse<pb::PolicyRevision>(v, "policy revision"));
  return FromProto(p);
}

absl::StatusOr<PolicyRevisionRecord> RocksDbStorage::HeadRevision() {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<NumberedValue> head,
                                  LastNumbered(kPoliciesCf, "policy revision"));
  if (!head.has_value()) {
    return absl::NotFoundError(
        "policy revision not found: no policy has been applied yet");
  }
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      pb::PolicyRevision p,
      Parse<pb::PolicyRevision>(head->value, "policy revision"));
  return FromProto(p);
}

absl::StatusOr<std::vector<PolicyRevisionRecord>> RocksDbStorage::ListRevisions(
    uint64_t before, size_t limit) {
  std::vector<PolicyRevisionRecord> out;
  if (limit == 0 || before == 1) return out;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(kPoliciesCf)));
  if (before == 0) {
    it->SeekToLast();
  } else {
    it->SeekForPrev(BE64(before - 1));
  }
  for (; it->Valid() && out.size() < limit; it->Prev()) {
    if (it->key().size() != 8) {
      return absl::DataLossError("storage: malformed policy revision key");
    }
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        pb::PolicyRevision p,
        Parse<pb::PolicyRevision>(View(it->value()), "policy revision"));
    out.push_back(FromProto(p));
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(
      FromRocks(it->status(), "list policy revisions"));
  return out;
}

// --------------------------------------------------------------- audit

absl::Status RocksDbStorage::AppendAudit(const AuditRecord& r) {
  // Held across the check and the write (see AppendRevision).
  absl::MutexLock lock(&audit_mu_);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<NumberedValue> last,
                                  LastNumbered(kAuditCf, "audit record"));
  const uint64_t last_seq = last.has_value() ? last->number : 0;
  if (last_seq == UINT64_MAX) {
    return absl::ResourceExhaustedError("audit seqs exhausted");
  }
  if (r.seq != last_seq + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "audit record ", r.seq, " is not the next record (last is ", last_seq,
        ", expected ", last_seq + 1, ")"));
  }
  rocksdb::WriteBatch batch;
  batch.Put(cf(kAuditCf), BE64(r.seq), Encode(r));
  return Write(&batch, "append audit record");
}

absl::StatusOr<std::vector<AuditRecord>> RocksDbStorage::ReadAudit(
    uint64_t after_seq, size_t limit) {
  std::vector<AuditRecord> out;
  if (limit == 0 || after_seq == UINT64_MAX) return out;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(kAuditCf)));
  for (it->Seek(BE64(after_seq + 1)); it->Valid() && out.size() < limit;
       it->Next()) {
    if (it->key().size() != 8) {
      return absl::DataLossError("storage: malformed audit key");
    }
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        pb::AuditEntry p, Parse<pb::AuditEntry>(View(it->value()), "audit"));
    out.push_back(FromProto(p));
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "read audit"));
  return out;
}

absl::StatusOr<AuditRecord> RocksDbStorage::LastAudit() {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<NumberedValue> last,
                                  LastNumbered(kAuditCf, "audit record"));
  if (!last.has_value()) {
    return absl::NotFoundError("audit record not found: the log is empty");
  }
  PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::AuditEntry p,
                                  Parse<pb::AuditEntry>(last->value, "audit"));
  return FromProto(p);
}

// -------------------------------------------------------- admin tokens

absl::Status RocksDbStorage::PutAdminToken(const AdminTokenRecord& t) {
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("token_id", t.token_id));
  if (t.token_hash.empty()) {
    return absl::InvalidArgumentError("token_hash is empty");
  }
  absl::MutexLock lock(&admin_tokens_mu_);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::optional<std::string> owner,
      MaybeGet(kAdminTokensCf, AdminTokenHashKey(t.token_hash)));
  if (owner.has_value() && *owner != t.token_id) {
    return absl::AlreadyExistsError(
        "admin token hash already belongs to another token");
  }
  rocksdb::WriteBatch batch;
  if (!owner.has_value()) {
    // A new token, or (against the contract) a changed hash: the index
    // follows the record so that no stale hash keeps authenticating.
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        std::optional<std::string> old_raw,
        MaybeGet(kAdminTokensCf, AdminTokenKey(t.token_id)));
    if (old_raw.has_value()) {
      PARLEY_STORAGE_ASSIGN_OR_RETURN(
          pb::AdminToken old, Parse<pb::AdminToken>(*old_raw, "admin token"));
      batch.Delete(cf(kAdminTokensCf), AdminTokenHashKey(old.token_hash()));
    }
    batch.Put(cf(kAdminTokensCf), AdminTokenHashKey(t.token_hash), t.token_id);
  }
  batch.Put(cf(kAdminTokensCf), AdminTokenKey(t.token_id), Encode(t));
  return Write(&batch, "put admin token");
}

absl::StatusOr<AdminTokenRecord> RocksDbStorage::GetAdminToken(
    const std::string& token_id) {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::string v,
                                  Get(kAdminTokensCf, AdminTokenKey(token_id),
                                      absl::StrCat("admin token ", token_id)));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::AdminToken p,
                                  Parse<pb::AdminToken>(v, "admin token"));
  return FromProto(p);
}

absl::StatusOr<AdminTokenRecord> RocksDbStorage::FindAdminTokenByHash(
    const std::string& token_hash) {
  if (token_hash.empty()) return absl::NotFoundError("admin token not found");
  // One snapshot: the index and the record are read in the same state.
  rocksdb::ManagedSnapshot snapshot(db_.get());
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string token_id, Get(kAdminTokensCf, AdminTokenHashKey(token_hash),
                                "admin token", snapshot.snapshot()));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string v,
      Get(kAdminTokensCf, AdminTokenKey(token_id),
          absl::StrCat("admin token ", token_id), snapshot.snapshot()));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::AdminToken p,
                                  Parse<pb::AdminToken>(v, "admin token"));
  if (p.token_hash() != token_hash) {
    return absl::DataLossError("storage: admin token hash index is stale");
  }
  return FromProto(p);
}

absl::StatusOr<std::vector<AdminTokenRecord>>
RocksDbStorage::ListAdminTokens() {
  const std::string prefix = kAdminTokenPrefix;
  const std::string upper = PrefixSuccessor(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(ro, cf(kAdminTokensCf)));
  std::vector<AdminTokenRecord> out;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        pb::AdminToken p,
        Parse<pb::AdminToken>(View(it->value()), "admin token"));
    out.push_back(FromProto(p));
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "list admin tokens"));
  return out;
}

// ---------------------------------------------------------------- keys

absl::Status RocksDbStorage::CheckDeviceExists(DeviceStripe& stripe,
                                               const std::string& scope,
                                               uint32_t device_id) {
  // The delivery counter key exists exactly while the device does, and is
  // deleted by RemoveDevice under this stripe.
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<DeliveryCounter> counter,
                                  LoadCounter(stripe, scope));
  if (!counter.has_value()) {
    return absl::NotFoundError(absl::StrCat("device ", device_id, " not found"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> RocksDbStorage::ListPreKeyIds(
    const std::string& scope) const {
  const std::string prefix = PreKeyPrefix(scope);
  const std::string upper = PrefixSuccessor(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kKeysCf)));
  std::vector<uint32_t> ids;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    absl::string_view key = View(it->key());
    if (key.size() != prefix.size() + 4) {
      return absl::DataLossError("storage: malformed one-time pre-key key");
    }
    ids.push_back(static_cast<uint32_t>(GetBE(key.substr(prefix.size()))));
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(
      FromRocks(it->status(), "list one-time pre-keys"));
  return ids;
}

absl::Status RocksDbStorage::SetDeviceKeys(const DeviceKeysRecord& keys) {
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("account_id", keys.account_id));
  const std::string scope = DeviceScope(keys.account_id, keys.device_id);
  DeviceStripe& stripe = device_stripes_[DeviceStripeIndex(scope)];
  absl::MutexLock lock(&stripe.mu);
  PARLEY_STORAGE_RETURN_IF_ERROR(
      CheckDeviceExists(stripe, scope, keys.device_id));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<std::string> old_raw,
                                  MaybeGet(kKeysCf, DeviceKeysKey(scope)));
  bool same_identity = false;
  if (old_raw.has_value()) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        pb::DeviceKeys old, Parse<pb::DeviceKeys>(*old_raw, "device keys"));
    same_identity = old.identity_key() == keys.identity_key;
  }
  rocksdb::WriteBatch batch;
  if (!same_identity) {
    // One-time pre-keys belong to the identity they were uploaded under.
    const std::string prefix = PreKeyPrefix(scope);
    batch.DeleteRange(cf(kKeysCf), prefix, PrefixSuccessor(prefix));
  }
  batch.Put(cf(kKeysCf), DeviceKeysKey(scope), Encode(keys));
  return Write(&batch, "set device keys");
}

absl::Status RocksDbStorage::AddOneTimePreKeys(
    const std::string& account_id, uint32_t device_id,
    const std::vector<PreKeyRecord>& keys) {
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("account_id", account_id));
  absl::flat_hash_set<uint32_t> new_ids;
  for (const PreKeyRecord& k : keys) {
    if (!new_ids.insert(k.key_id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("duplicate one-time pre-key id ", k.key_id));
    }
  }
  const std::string scope = DeviceScope(account_id, device_id);
  DeviceStripe& stripe = device_stripes_[DeviceStripeIndex(scope)];
  absl::MutexLock lock(&stripe.mu);
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckDeviceExists(stripe, scope, device_id));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<std::string> device_keys,
                                  MaybeGet(kKeysCf, DeviceKeysKey(scope)));
  if (!device_keys.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", device_id, " has no identity key; set its keys first"));
  }
  if (keys.empty()) return absl::OkStatus();
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::vector<uint32_t> stored,
                                  ListPreKeyIds(scope));
  size_t added = new_ids.size();
  for (uint32_t id : stored) {
    if (new_ids.contains(id)) --added;  // replaced, not added
  }
  if (stored.size() + added > kMaxOneTimePreKeys) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "device ", device_id, " stores ", stored.size(),
        " one-time pre-keys; adding ", added, " would exceed the limit of ",
        kMaxOneTimePreKeys));
  }
  rocksdb::WriteBatch batch;
  for (const PreKeyRecord& k : keys) {
    pb::OneTimePreKey p;
    p.set_public_key(k.public_key);
    batch.Put(cf(kKeysCf), PreKeyKey(scope, k.key_id), p.SerializeAsString());
  }
  return Write(&batch, "add one-time pre-keys");
}

absl::StatusOr<size_t> RocksDbStorage::CountOneTimePreKeys(
    const std::string& account_id, uint32_t device_id) {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::vector<uint32_t> ids,
      ListPreKeyIds(DeviceScope(account_id, device_id)));
  return ids.size();
}

absl::StatusOr<DeviceKeysRecord> RocksDbStorage::GetDeviceKeys(
    const std::string& account_id, uint32_t device_id) {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string v,
      Get(kKeysCf, DeviceKeysKey(DeviceScope(account_id, device_id)),
          absl::StrCat("keys of device ", device_id)));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::DeviceKeys p,
                                  Parse<pb::DeviceKeys>(v, "device keys"));
  return FromProto(p, account_id, device_id);
}

absl::StatusOr<PreKeyRecord> RocksDbStorage::TakeOneTimePreKey(
    const std::string& account_id, uint32_t device_id) {
  const std::string scope = DeviceScope(account_id, device_id);
  const std::string prefix = PreKeyPrefix(scope);
  const std::string upper = PrefixSuccessor(prefix);
  // Held across the read and the delete: the next taker's iterator is
  // created after this delete is written, so it cannot see the same key.
  DeviceStripe& stripe = device_stripes_[DeviceStripeIndex(scope)];
  absl::MutexLock lock(&stripe.mu);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kKeysCf)));
  it->Seek(prefix);
  if (!it->Valid()) {
    PARLEY_STORAGE_RETURN_IF_ERROR(
        FromRocks(it->status(), "take one-time pre-key"));
    return absl::NotFoundError(absl::StrCat(
        "no one-time pre-key left for device ", device_id));
  }
  const std::string key = it->key().ToString();
  if (key.size() != prefix.size() + 4) {
    return absl::DataLossError("storage: malformed one-time pre-key key");
  }
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      pb::OneTimePreKey p,
      Parse<pb::OneTimePreKey>(View(it->value()), "one-time pre-key"));
  it.reset();
  rocksdb::WriteBatch batch;
  batch.Delete(cf(kKeysCf), key);
  PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "take one-time pre-key"));
  return PreKeyRecord{
      .key_id = static_cast<uint32_t>(
          GetBE(absl::string_view(key).substr(prefix.size()))),
      .public_key = std::move(*p.mutable_public_key())};
}

// ------------------------------------------------------------ messages

absl::StatusOr<AppendResult> RocksDbStorage::Append(const AppendRequest& req) {
  // Group commit (sync mode): the append is written without fsync while its
  // locks are held; durability is waited for after releasing them (or by
  // the caller, with defer_durability), so appends to many conversations and
  // devices share one WAL fsync.
  absl::StatusOr<AppendResult> r = AppendUnsynced(req);
  if (r.ok() && !req.defer_durability) {
    PARLEY_STORAGE_RETURN_IF_ERROR(options_.sync ? WaitDurable()
                                                 : WriteWalThrough());
  }
  return r;
}

absl::Status RocksDbStorage::WaitDurable() {
  absl::Notification done;
  absl::Status result;
  WhenDurable([&](absl::Status s) {
    result = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

void RocksDbStorage::WhenDurable(std::function<void(absl::Status)> done) {
  if (!options_.sync && !batch_wal_) {
    done(absl::OkStatus());
    return;
  }
  const uint64_t target = db_->GetLatestSequenceNumber();
  if (batch_wal_ &&
      wal_written_seq_.load(std::memory_order_acquire) >= target) {
    done(absl::OkStatus());
    return;
  }
  {
    absl::MutexLock lock(&durable_mu_);
    if (DurableSeq() < target) {
      durable_waiters_.push_back({target, std::move(done)});
      return;
    }
  }
  done(absl::OkStatus());
}

StorageStats RocksDbStorage::Stats() {
  StorageStats st;
  st.group_commits = group_commits_.load(std::memory_order_relaxed);
  st.group_commit_waiters =
      group_commit_waiters_.load(std::memory_order_relaxed);
  // Properties RocksDB keeps in memory (no I/O); 0 if one is unavailable.
  auto sum = [this](const rocksdb::Slice& property) {
    uint64_t v = 0;
    return db_->GetAggregatedIntProperty(property, &v) ? v : uint64_t{0};
  };
  st.memtable_bytes = sum(rocksdb::DB::Properties::kCurSizeAllMemTables);
  st.table_file_bytes = sum(rocksdb::DB::Properties::kTotalSstFilesSize);
  st.pending_compaction_bytes =
      sum(rocksdb::DB::Properties::kEstimatePendingCompactionBytes);
  st.writes_stopped = !recovery_->StoppedBy().ok();
  return st;
}

uint64_t RocksDbStorage::DurableSeq() const {
  return options_.sync ? durable_seq_
                       : wal_written_seq_.load(std::memory_order_acquire);
}

// The committer: one SyncWAL (sync mode) or one FlushWAL (batch_wal_writes)
// covers every write made before it; then the waiters it covers are
// answered (outside the lock).
void RocksDbStorage::CommitLoop() {
  // Named for profiles and `top -H` (15 characters at most).
  pthread_setname_np(pthread_self(), "parley-commit");
  absl::MutexLock lock(&durable_mu_);
  while (true) {
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(durable_mu_) {
      return stop_syncer_ || !durable_waiters_.empty();
    };
    durable_mu_.Await(absl::Condition(&ready));
    if (durable_waiters_.empty() && stop_syncer_) return;
    const uint64_t covered = db_->GetLatestSequenceNumber();
    durable_mu_.Unlock();
    absl::Status st;
    if (options_.sync) {
      rocksdb::Status s = db_->SyncWAL();
      st = FromRocks(s, "sync wal");
      if (!s.ok()) recovery_->Request();
    } else {
      st = WriteWalThrough();  // covers at least `covered`
    }
    durable_mu_.Lock();
    if (st.ok() && options_.sync) {
      durable_seq_ = std::max(durable_seq_, covered);
    }
    std::vector<DurableWaiter> answered;
    std::vector<DurableWaiter> rest;
    for (auto& w : durable_waiters_) {
      if (!st.ok() || w.target <= DurableSeq()) {
        answered.push_back(std::move(w));
      } else {
        rest.push_back(std::move(w));
      }
    }
    durable_waiters_ = std::move(rest);
    durable_mu_.Unlock();
    group_commits_.fetch_add(1, std::memory_order_relaxed);
    group_commit_waiters_.fetch_add(answered.size(), std::memory_order_relaxed);
    for (auto& w : answered) w.done(st);
    durable_mu_.Lock();
  }
}

absl::StatusOr<AppendResult> RocksDbStorage::AppendUnsynced(const AppendRequest& req) {
  PARLEY_STORAGE_RETURN_IF_ERROR(
      CheckId("conversation_id", req.conversation_id));
  const bool idempotent = !req.client_message_id.empty();
  std::string sender_scope;
  if (idempotent) {
    PARLEY_STORAGE_RETURN_IF_ERROR(
        CheckId("sender_account_id", req.sender_account_id));
    sender_scope = DeviceScope(req.sender_account_id, req.sender_device_id);
  }
  std::vector<std::string> scopes;
  scopes.reserve(req.targets.size());
  std::vector<size_t> stripe_indexes;
  stripe_indexes.reserve(req.targets.size() + 1);
  for (const QueueTarget& t : req.targets) {
    PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("target account_id", t.account_id));
    scopes.push_back(DeviceScope(t.account_id, t.device_id));
    stripe_indexes.push_back(DeviceStripeIndex(scopes.back()));
  }
  if (idempotent) stripe_indexes.push_back(DeviceStripeIndex(sender_scope));
  const bool shared_queue_payload =
      !req.targets.empty() && !req.make_target_payload;
  if ((req.keep_history || shared_queue_payload) && !req.make_payload) {
    return absl::InvalidArgumentError("append: make_payload is not set");
  }

  ConvStripe& cstripe = conv_stripes_[ConvStripeIndex(req.conversation_id)];
  absl::MutexLock conv_lock(&cstripe.mu);
  DeviceLocks device_locks(device_stripes_.get(), stripe_indexes);

  std::string idem_key;
  if (idempotent) {
    idem_key = IdempotencyKey(sender_scope, req.client_message_id);
    PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<std::string> prior,
                                    MaybeGet(kIdempotencyCf, idem_key));
    if (prior.has_value()) {
      PARLEY_STORAGE_ASSIGN_OR_RETURN(
          pb::IdempotencyValue p,
          Parse<pb::IdempotencyValue>(*prior, "idempotency"));
      // Outside the window: a new Send; its record replaces this one.
      if (p.server_time_ms() >= req.idempotency_not_before_ms) {
        return AppendResult{.seq = p.seq(),
                            .server_time_ms = p.server_time_ms(),
                            .duplicate = true,
                            .queued = {}};
      }
    }
  }

  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      ConvState state, LoadConvState(cstripe, req.conversation_id));
  if (req.expect_epoch != 0 && state.epoch != req.expect_epoch) {
    return absl::FailedPreconditionError(
        absl::StrCat("append: security epoch is ", state.epoch, ", expected ",
                     req.expect_epoch));
  }
  const uint64_t seq = state.last_seq + 1;
  ConvState new_state{.last_seq = seq, .epoch = state.epoch};

  rocksdb::WriteBatch batch;
  batch.Put(cf(kConversationsCf), ConvSeqKey(req.conversation_id), BE64(seq));
  if (req.new_security.has_value()) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        ConversationRecord c, ReadConversationRecord(req.conversation_id));
    c.security = *req.new_security;
    new_state.epoch = c.security.epoch;
    cstripe.records.erase(req.conversation_id);
    batch.Put(cf(kConversationsCf), ConvRecordKey(req.conversation_id),
              Encode(c));
  }

  std::optional<std::string> payload;
  if (req.keep_history || shared_queue_payload) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(payload, req.make_payload(seq));
  }
  if (req.keep_history) {
    pb::HistoryValue h;
    h.set_server_time_ms(req.server_time_ms);
    h.set_payload(*payload);
    batch.Put(cf(kHistoryCf), HistoryKey(req.conversation_id, seq),
              h.SerializeAsString());
  }

  // New counter values, by scope, applied to the caches after the write.
  absl::flat_hash_map<absl::string_view,
                      std::pair<DeviceStripe*, DeliveryCounter>>
      counters;
  std::string shared_value;
  std::shared_ptr<const std::string> shared_payload;
  if (shared_queue_payload) {
    shared_value = EncodeQueueValue(*payload, req.server_time_ms);
    if (req.return_queued) {
      shared_payload = std::make_shared<const std::string>(*payload);
    }
  }
  std::vector<QueuedEntry> queued;
  if (req.return_queued) queued.reserve(req.targets.size());
  for (size_t i = 0; i < req.targets.size(); ++i) {
    const std::string& scope = scopes[i];
    auto it = counters.find(scope);
    if (it == counters.end()) {
      DeviceStripe* stripe = &device_stripes_[stripe_indexes[i]];
      stripe->mu.AssertHeld();
      PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<DeliveryCounter> last,
                                      LoadCounter(*stripe, scope));
      if (!last.has_value()) continue;  // The device no longer exists.
      it = counters.emplace(scope, std::make_pair(stripe, *last)).first;
    }
    const uint64_t delivery_id = ++it->second.second.last;
    if (shared_queue_payload) {
      batch.Put(cf(kQueuesCf), QueueKey(scope, delivery_id), shared_value);
      if (req.return_queued) queued.push_back({i, delivery_id, shared_payload});
    } else {
      PARLEY_STORAGE_ASSIGN_OR_RETURN(
          std::string p, req.make_target_payload(seq, req.targets[i]));
      batch.Put(cf(kQueuesCf), QueueKey(scope, delivery_id),
                EncodeQueueValue(p, req.server_time_ms));
      if (req.return_queued) {
        queued.push_back(
            {i, delivery_id, std::make_shared<const std::string>(std::move(p))});
      }
    }
  }
  // A device whose ids passed its stored bound reserves the next block in
  // this batch (see the "C" key); the others write no counter.
  for (auto& [scope, value] : counters) {
    DeliveryCounter& c = value.second;
    if (c.last > c.bound) {
      c.bound = c.last + kDeliveryIdBlock;
      batch.Put(cf(kQueuesCf), CounterKey(scope), BE64(c.bound));
    }
  }
  if (idempotent) {
    pb::IdempotencyValue p;
    p.set_conversation_id(req.conversation_id);
    p.set_seq(seq);
    p.set_server_time_ms(req.server_time_ms);
    batch.Put(cf(kIdempotencyCf), idem_key, p.SerializeAsString());
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(
      Write(&batch, "append", Durability::kByCaller));

  cstripe.cache.insert_or_assign(req.conversation_id, new_state);
  for (const auto& [scope, value] : counters) {
    value.first->mu.AssertHeld();
    value.first->last_delivery.insert_or_assign(std::string(scope),
                                                value.second);
  }
  return AppendResult{.seq = seq,
                      .server_time_ms = req.server_time_ms,
                      .duplicate = false,
                      .queued = std::move(queued)};
}

absl::StatusOr<std::vector<QueueEntry>> RocksDbStorage::ReadQueue(
    const std::string& account_id, uint32_t device_id,
    uint64_t after_delivery_id, size_t limit) {
  std::vector<QueueEntry> out;
  if (limit == 0 || after_delivery_id == UINT64_MAX) return out;
  const std::string prefix = QueuePrefix(DeviceScope(account_id, device_id));
  const std::string upper = PrefixSuccessor(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kQueuesCf)));
  std::string start = prefix;
  PutBE64(&start, after_delivery_id + 1);
  for (it->Seek(start); it->Valid() && out.size() < limit; it->Next()) {
    absl::string_view key = View(it->key());
    if (key.size() != prefix.size() + 8) {
      return absl::DataLossError("storage: malformed queue key");
    }
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        pb::QueueValue v,
        Parse<pb::QueueValue>(View(it->value()), "queue"));
    out.push_back(QueueEntry{.delivery_id = GetBE(key.substr(prefix.size())),
                             .payload = std::move(*v.mutable_payload())});
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "read queue"));
  // What was read is in the log file before anyone can deliver it.
  if (!out.empty()) PARLEY_STORAGE_RETURN_IF_ERROR(WriteWalThroughForRead());
  return out;
}

absl::StatusOr<uint64_t> RocksDbStorage::LastDeliveryId(
    const std::string& account_id, uint32_t device_id) {
  const std::string scope = DeviceScope(account_id, device_id);
  DeviceStripe& stripe = device_stripes_[DeviceStripeIndex(scope)];
  absl::MutexLock lock(&stripe.mu);
  PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<DeliveryCounter> c,
                                  LoadCounter(stripe, scope));
  return c.has_value() ? c->last : 0;
}

absl::StatusOr<size_t> RocksDbStorage::Ack(
    const std::string& account_id, uint32_t device_id,
    const std::vector<uint64_t>& delivery_ids) {
  if (delivery_ids.empty()) return 0;
  const std::string scope = DeviceScope(account_id, device_id);
  std::vector<uint64_t> ids = delivery_ids;
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());

  // Serialized with other writers of this queue so the count is exact.
  DeviceStripe& stripe = device_stripes_[DeviceStripeIndex(scope)];
  absl::MutexLock lock(&stripe.mu);
  // Which of the ids are queued: one iterator walks the acknowledged range
  // in id order (acks are mostly runs of consecutive ids: one seek and a
  // step per id instead of a point lookup per id, BENCHMARKS.md fifth
  // round); it seeks again over a wide gap, so sparse ids cost at most a
  // seek each and never a walk over the entries between them.
  constexpr int kMaxStepsBeforeSeek = 4;
  const std::string upper = QueueKey(scope, ids.back() + 1);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  // ids.back() + 1 wraps to 0 for UINT64_MAX: no upper bound then.
  if (ids.back() != UINT64_MAX) ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kQueuesCf)));
  rocksdb::WriteBatch batch;
  size_t found = 0;
  bool positioned = false;
  for (uint64_t id : ids) {
    const std::string key = QueueKey(scope, id);
    int steps = 0;
    if (positioned) {
      while (it->Valid() && it->key().compare(key) < 0 &&
             steps < kMaxStepsBeforeSeek) {
        it->Next();
        ++steps;
      }
    }
    if (!positioned || (it->Valid() && it->key().compare(key) < 0)) {
      it->Seek(key);
      positioned = true;
    }
    if (!it->Valid()) {
      // The end of the range (or an error, reported below): no id from
      // here on is queued.
      break;
    }
    if (it->key() == rocksdb::Slice(key)) {
      // SingleDelete: a queue key is Put exactly once (delivery ids are
      // never reused, see the "C" key) and is deleted here only while it
      // is visible, under the device's stripe. When the flush finds the Put
      // and its SingleDelete in the same memtable, it drops both, so an
      // entry acknowledged before its memtable is flushed reaches no file
      // at all (a Delete would leave a tombstone for compaction to carry).
      // A later Delete of the same key (the retention purge racing an ack)
      // is harmless: with one Put beneath, every order of the two hides it.
      batch.SingleDelete(cf(kQueuesCf), key);
      ++found;
    }
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "ack lookup"));
  if (found == 0) return 0;
  // Not fsynced even in sync mode: after a power loss an acknowledged entry
  // may be delivered again (at-least-once; clients drop duplicates by
  // message id), and acks no longer queue behind the senders' fsyncs.
  PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "ack", Durability::kWritten));
  return found;
}

absl::StatusOr<std::vector<HistoryEntry>> RocksDbStorage::ReadHistory(
    const std::string& conversation_id, uint64_t before_seq, size_t limit) {
  std::vector<HistoryEntry> out;
  if (limit == 0 || before_seq == 1) return out;
  const std::string prefix = HistoryPrefix(conversation_id);
  const std::string upper =
      before_seq == 0 ? PrefixSuccessor(prefix) : prefix + BE64(before_seq);
  rocksdb::Slice lower_slice(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kHistoryCf)));
  for (it->SeekToLast(); it->Valid() && out.size() < limit; it->Prev()) {
    absl::string_view key = View(it->key());
    if (key.size() != prefix.size() + 8) {
      return absl::DataLossError("storage: malformed history key");
    }
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        pb::HistoryValue v,
        Parse<pb::HistoryValue>(View(it->value()), "history"));
    out.push_back(HistoryEntry{.seq = GetBE(key.substr(prefix.size())),
                               .server_time_ms = v.server_time_ms(),
                               .payload = std::move(*v.mutable_payload())});
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "read history"));
  // What was read is in the log file before anyone can show it.
  if (!out.empty()) PARLEY_STORAGE_RETURN_IF_ERROR(WriteWalThroughForRead());
  return out;
}

absl::StatusOr<size_t> RocksDbStorage::PurgeHistoryBefore(int64_t cutoff_ms) {
  // Walks each conversation's entries from its oldest, deleting those older
  // than the cutoff, and seeks to the next conversation at the first entry
  // inside retention (seq order is time order, to within clock steps; see
  // PurgeConversationHistoryBefore). Deletes go in bounded batches, each
  // atomic; an interrupted purge leaves every conversation's history a
  // suffix of what it was.
  absl::MutexLock lock(&purge_mu_);
  const std::string upper = PrefixSuccessor("H");
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kHistoryCf)));
  size_t purged = 0;
  rocksdb::WriteBatch batch;
  size_t in_batch = 0;
  it->Seek("H");
  while (it->Valid()) {
    absl::string_view key = View(it->key());
    // "H" + conversation_id + 0x00 + BE64(seq)
    if (key.size() < 1 + 1 + 1 + 8 || key[key.size() - 9] != '\0') {
      return absl::DataLossError("storage: malformed history key");
    }
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        pb::HistoryValue h, Parse<pb::HistoryValue>(View(it->value()), "history"));
    if (h.server_time_ms() >= cutoff_ms) {
      // The rest of this conversation is inside retention.
      it->Seek(PrefixSuccessor(std::string(key.substr(0, key.size() - 8))));
      continue;
    }
    batch.Delete(cf(kHistoryCf), it->key());
    if (++in_batch == kPurgeBatchEntries) {
      PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "purge history"));
      purged += in_batch;
      in_batch = 0;
      batch.Clear();
    }
    it->Next();
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "purge history"));
  if (in_batch > 0) {
    PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "purge history"));
    purged += in_batch;
  }
  return purged;
}

absl::StatusOr<size_t> RocksDbStorage::PurgeConversationHistoryBefore(
    const std::string& conversation_id, int64_t cutoff_ms) {
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("conversation_id", conversation_id));
  // Entries are in seq order, and seq order is time order (Append takes the
  // time before assigning the seq under the conversation's lock, to within
  // clock steps), so the walk stops at the first entry inside retention.
  absl::MutexLock lock(&purge_mu_);
  const std::string prefix = HistoryPrefix(conversation_id);
  const std::string upper = PrefixSuccessor(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kHistoryCf)));
  size_t purged = 0;
  rocksdb::WriteBatch batch;
  size_t in_batch = 0;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    absl::string_view key = View(it->key());
    if (key.size() != prefix.size() + 8) {
      return absl::DataLossError("storage: malformed history key");
    }
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        pb::HistoryValue h, Parse<pb::HistoryValue>(View(it->value()), "history"));
    if (h.server_time_ms() >= cutoff_ms) break;
    batch.Delete(cf(kHistoryCf), it->key());
    if (++in_batch == kPurgeBatchEntries) {
      PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "purge conversation history"));
      purged += in_batch;
      in_batch = 0;
      batch.Clear();
    }
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "purge conversation history"));
  if (in_batch > 0) {
    PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "purge conversation history"));
    purged += in_batch;
  }
  return purged;
}

absl::Status RocksDbStorage::DeleteHistoryEntry(const std::string& conversation_id,
                                                uint64_t seq) {
  PARLEY_STORAGE_RETURN_IF_ERROR(CheckId("conversation_id", conversation_id));
  absl::MutexLock lock(&purge_mu_);
  const std::string key = HistoryKey(conversation_id, seq);
  PARLEY_STORAGE_RETURN_IF_ERROR(
      Get(kHistoryCf, key,
          absl::StrCat("history entry ", conversation_id, "#", seq))
          .status());
  rocksdb::WriteBatch batch;
  batch.Delete(cf(kHistoryCf), key);
  return Write(&batch, "delete history entry");
}

absl::StatusOr<size_t> RocksDbStorage::PurgeWalk(
    Cf c, rocksdb::Iterator* it, absl::string_view op,
    absl::FunctionRef<absl::StatusOr<std::optional<absl::string_view>>(
        absl::string_view key, absl::string_view value)>
        expired,
    absl::FunctionRef<absl::StatusOr<bool>(const std::string& key)> recheck) {
  size_t purged = 0;
  std::string scope;  // of the pending deletes
  std::vector<std::string> pending;
  auto flush = [&]() -> absl::Status {
    if (pending.empty()) return absl::OkStatus();
    DeviceStripe& stripe = device_stripes_[DeviceStripeIndex(scope)];
    absl::MutexLock device_lock(&stripe.mu);
    rocksdb::WriteBatch batch;
    size_t n = 0;
    for (const std::string& k : pending) {
      PARLEY_STORAGE_ASSIGN_OR_RETURN(bool still, recheck(k));
      if (!still) continue;
      batch.Delete(cf(c), k);
      ++n;
    }
    if (n > 0) PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, op));
    purged += n;
    pending.clear();
    return absl::OkStatus();
  };
  for (; it->Valid(); it->Next()) {
    absl::string_view key = View(it->key());
    PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<absl::string_view> key_scope,
                                    expired(key, View(it->value())));
    if (!key_scope.has_value()) continue;
    if (*key_scope != scope || pending.size() == kPurgeBatchEntries) {
      PARLEY_STORAGE_RETURN_IF_ERROR(flush());
      scope = std::string(*key_scope);
    }
    pending.emplace_back(key);
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), op));
  PARLEY_STORAGE_RETURN_IF_ERROR(flush());
  return purged;
}

absl::StatusOr<size_t> RocksDbStorage::PurgeQueuesBefore(int64_t cutoff_ms) {
  // Walks every queue entry; deletes of one device's entries are written
  // under that device's stripe (like Ack), in bounded batches.
  absl::MutexLock lock(&purge_mu_);
  const std::string upper = PrefixSuccessor("Q");
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kQueuesCf)));
  it->Seek("Q");
  return PurgeWalk(
      kQueuesCf, it.get(), "purge queues",
      [&](absl::string_view key, absl::string_view value)
          -> absl::StatusOr<std::optional<absl::string_view>> {
        // "Q" + SCOPE + BE64(delivery_id)
        if (key.size() < 1 + 1 + 1 + 4 + 8) {
          return absl::DataLossError("storage: malformed queue key");
        }
        PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::QueueValue v,
                                        Parse<pb::QueueValue>(value, "queue"));
        if (v.enqueued_at_ms() == 0 || v.enqueued_at_ms() >= cutoff_ms) {
          return std::nullopt;
        }
        return key.substr(1, key.size() - 1 - 8);
      },
      // A queue key is written once; only an Ack deletes it meanwhile, and
      // deleting a deleted key is harmless.
      [](const std::string&) -> absl::StatusOr<bool> { return true; });
}

absl::StatusOr<size_t> RocksDbStorage::PurgeIdempotencyBefore(
    int64_t cutoff_ms) {
  // Walks every record; deletes of one sending device's records are written
  // under that device's stripe (Append checks and writes the record under
  // it), each record read again there, so one an Append replaced since the
  // walk saw it is kept.
  absl::MutexLock lock(&purge_mu_);
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(kIdempotencyCf)));
  it->SeekToFirst();
  auto old = [cutoff_ms](absl::string_view value) -> absl::StatusOr<bool> {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        pb::IdempotencyValue v,
        Parse<pb::IdempotencyValue>(value, "idempotency"));
    return v.server_time_ms() < cutoff_ms;
  };
  return PurgeWalk(
      kIdempotencyCf, it.get(), "purge idempotency",
      [&](absl::string_view key, absl::string_view value)
          -> absl::StatusOr<std::optional<absl::string_view>> {
        // SCOPE (ACCOUNT_ID + "\0" + BE32(device_id)) + CLIENT_MESSAGE_ID
        const size_t nul = key.find('\0');
        if (nul == absl::string_view::npos || key.size() < nul + 1 + 4 + 1) {
          return absl::DataLossError("storage: malformed idempotency key");
        }
        PARLEY_STORAGE_ASSIGN_OR_RETURN(bool is_old, old(value));
        if (!is_old) return std::nullopt;
        return key.substr(0, nul + 1 + 4);
      },
      [&](const std::string& key) -> absl::StatusOr<bool> {
        PARLEY_STORAGE_ASSIGN_OR_RETURN(std::optional<std::string> now,
                                        MaybeGet(kIdempotencyCf, key));
        if (!now.has_value()) return false;
        return old(*now);
      });
}

absl::Status RocksDbStorage::Compact() {
  PARLEY_STORAGE_RETURN_IF_ERROR(Flush());
  rocksdb::CompactRangeOptions co;
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (rocksdb::ColumnFamilyHandle* h : handles_) {
    PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(
        db_->CompactRange(co, h, nullptr, nullptr),
        absl::StrCat("compact ", h->GetName())));
  }
  return absl::OkStatus();
}

// -------------------------------------------------------------- safety

namespace {
std::string ReportKey(uint64_t n) { return absl::StrCat("R", BE64(n)); }
std::string OpenReportKey(uint64_t n) { return absl::StrCat("O", BE64(n)); }
std::string NoticeKey(int64_t due_ms, absl::string_view id) {
  std::string k = "N";
  PutBE64(&k, TimeKey(due_ms));
  absl::StrAppend(&k, id);
  return k;
}
}  // namespace

absl::StatusOr<uint64_t> RocksDbStorage::AddReport(const std::string& body) {
  absl::MutexLock lock(&safety_mu_);
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(kSafetyCf)));
  it->SeekForPrev(PrefixSuccessor("R"));
  uint64_t last = 0;
  if (it->Valid() && !it->key().empty() && it->key()[0] == 'R') {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        last, ParseFixed(View(it->key()).substr(1), 8, "report key"));
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "read last report"));
  const uint64_t number = last + 1;
  pb::Report p;
  p.set_open(true);
  p.set_body(body);
  rocksdb::WriteBatch batch;
  batch.Put(cf(kSafetyCf), ReportKey(number), p.SerializeAsString());
  batch.Put(cf(kSafetyCf), OpenReportKey(number), "");
  PARLEY_STORAGE_RETURN_IF_ERROR(Write(&batch, "add report"));
  return number;
}

absl::Status RocksDbStorage::UpdateReport(const StoredReport& r) {
  absl::MutexLock lock(&safety_mu_);
  PARLEY_STORAGE_RETURN_IF_ERROR(
      Get(kSafetyCf, ReportKey(r.number), absl::StrCat("report ", r.number)).status());
  pb::Report p;
  p.set_open(r.open);
  p.set_body(r.body);
  rocksdb::WriteBatch batch;
  batch.Put(cf(kSafetyCf), ReportKey(r.number), p.SerializeAsString());
  if (r.open) {
    batch.Put(cf(kSafetyCf), OpenReportKey(r.number), "");
  } else {
    batch.Delete(cf(kSafetyCf), OpenReportKey(r.number));
  }
  return Write(&batch, "update report");
}

absl::StatusOr<StoredReport> RocksDbStorage::GetReport(uint64_t number) {
  PARLEY_STORAGE_ASSIGN_OR_RETURN(
      std::string raw,
      Get(kSafetyCf, ReportKey(number), absl::StrCat("report ", number)));
  PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::Report p, Parse<pb::Report>(raw, "report"));
  return StoredReport{.number = number, .open = p.open(), .body = p.body()};
}

absl::StatusOr<std::vector<StoredReport>> RocksDbStorage::ListReports(
    bool open_only, uint64_t after, size_t limit) {
  std::vector<StoredReport> out;
  if (limit == 0 || after == UINT64_MAX) return out;
  const std::string prefix = open_only ? "O" : "R";
  const std::string upper = PrefixSuccessor(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kSafetyCf)));
  for (it->Seek(absl::StrCat(prefix, BE64(after + 1))); it->Valid() && out.size() < limit;
       it->Next()) {
    PARLEY_STORAGE_ASSIGN_OR_RETURN(
        uint64_t number, ParseFixed(View(it->key()).substr(1), 8, "report key"));
    if (open_only) {
      PARLEY_STORAGE_ASSIGN_OR_RETURN(StoredReport r, GetReport(number));
      out.push_back(std::move(r));
    } else {
      PARLEY_STORAGE_ASSIGN_OR_RETURN(pb::Report p,
                                      Parse<pb::Report>(View(it->value()), "report"));
      out.push_back(StoredReport{.number = number, .open = p.open(), .body = p.body()});
    }
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "list reports"));
  return out;
}

absl::Status RocksDbStorage::ScheduleNotice(const ScheduledNotice& n) {
  if (n.id.empty()) return absl::InvalidArgumentError("notice id is empty");
  rocksdb::WriteBatch batch;
  batch.Put(cf(kSafetyCf), NoticeKey(n.due_ms, n.id), n.body);
  return Write(&batch, "schedule notice");
}

absl::StatusOr<std::vector<ScheduledNotice>> RocksDbStorage::DueNotices(
    int64_t now_ms, size_t limit) {
  std::vector<ScheduledNotice> out;
  const std::string upper = NoticeKey(now_ms + 1, "");  // due_ms <= now_ms
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kSafetyCf)));
  for (it->Seek("N"); it->Valid() && out.size() < limit; it->Next()) {
    absl::string_view key = View(it->key());
    if (key.size() < 1 + 8) return absl::DataLossError("storage: malformed notice key");
    ScheduledNotice n;
    n.due_ms = static_cast<int64_t>(GetBE(key.substr(1, 8)) ^ (uint64_t{1} << 63));
    n.id = std::string(key.substr(9));
    n.body = it->value().ToString();
    out.push_back(std::move(n));
  }
  PARLEY_STORAGE_RETURN_IF_ERROR(FromRocks(it->status(), "read due notices"));
  return out;
}

absl::Status RocksDbStorage::DeleteNotice(const ScheduledNotice& n) {
  rocksdb::WriteBatch batch;
  batch.Delete(cf(kSafetyCf), NoticeKey(n.due_ms, n.id));
  return Write(&batch, "delete notice");
}

absl::Status RocksDbStorage::PutSafetyValue(const std::string& name,
                                            const std::string& value) {
  if (name.empty()) return absl::InvalidArgumentError("safety value name is empty");
  rocksdb::WriteBatch batch;
  batch.Put(cf(kSafetyCf), absl::StrCat("V", name), value);
  return Write(&batch, "put safety value");
}

absl::StatusOr<std::string> RocksDbStorage::GetSafetyValue(const std::string& name) {
  return Get(kSafetyCf, absl::StrCat("V", name), absl::StrCat("safety value ", name));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Storage>> OpenRocksDbStorage(
    const RocksDbOptions& options) {
  return RocksDbStorage::Open(options);
}

}  // namespace parley::storage
