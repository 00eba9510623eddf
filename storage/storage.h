// Parley storage interfaces.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Contract
// - These interfaces know nothing of gRPC, protobuf API types or RocksDB, so a
//   networked backend (PostgreSQL) can implement them. Message payloads are
//   opaque bytes produced by the server (a serialized parley.v1.Message).
// - Thread safety: every method may be called concurrently from any thread.
// - Errors are values: absl::NotFoundError when a named object does not exist,
//   absl::AlreadyExistsError on a uniqueness conflict, absl::UnavailableError /
//   absl::InternalError / absl::ResourceExhaustedError (disk full) when the
//   backend fails. Nothing throws.
// - Atomicity: every mutating method either applies completely or not at all.
// - Durability: when a mutating method returns OK its effect survives a crash
//   of the process (and of the machine when the backend is opened with sync).
#ifndef PARLEY_STORAGE_STORAGE_H_
#define PARLEY_STORAGE_STORAGE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace parley::storage {

// ------------------------------------------------------------------ records
// Enumerations are stored as the numeric values of the parley.v1 enums.

struct SecurityStateRecord {
  int mode = 0;  // parley.v1.SecurityMode
  uint64_t epoch = 0;
  std::string policy_revision;
  std::string rule_id;
  std::string reason;
  int64_t effective_at_ms = 0;
  bool e2ee_ever_enabled = false;
  bool locked = false;
  // A scheduled change (e.g. downgrade after notice); pending_mode == 0: none.
  int pending_mode = 0;
  int64_t pending_effective_at_ms = 0;
  std::string pending_reason;
  std::string pending_rule_id;
  std::string pending_policy_revision;
  // The current mode was set by participants' consent (they turned E2EE on
  // or off), not by policy.
  bool set_by_participants = false;
  std::string notice;  // what users must be shown (rendered by the policy)
  // Distinct accounts that asked to turn E2EE on / off and wait for the
  // others' consent. Cleared when the mode changes.
  std::vector<std::string> enable_requests;
  std::vector<std::string> disable_requests;
};

struct AccountRecord {
  std::string account_id;
  std::string username;  // canonical (lower case)
  std::string display_name;
  int kind = 0;      // parley.v1.AccountKind
  int age_band = 0;  // parley.v1.AgeBand
  std::string region_code;
  std::string organization;
  int64_t created_at_ms = 0;
  bool suspended = false;
};

struct DeviceRecord {
  std::string account_id;
  uint32_t device_id = 0;
  std::string name;
  std::string token_hash;  // SHA-256 of the bearer token (32 raw bytes)
  int64_t created_at_ms = 0;
  int64_t last_seen_at_ms = 0;
  uint32_t registration_id = 0;
};

struct MemberRecord {
  std::string account_id;
  bool admin = false;
  int64_t joined_at_ms = 0;
};

struct ConversationRecord {
  std::string conversation_id;
  int kind = 0;  // parley.v1.ConversationKind
  std::string title;
  std::vector<MemberRecord> members;
  SecurityStateRecord security;
  int64_t created_at_ms = 0;
  uint64_t last_seq = 0;  // maintained by MessageStore::Append
};

// A single-use code that lets a new device join an account.
struct DeviceLinkRecord {
  std::string code_hash;  // SHA-256 of the code (32 raw bytes)
  std::string account_id;
  int64_t expires_at_ms = 0;
};

// ----------------------------------------------------------------- accounts

class AccountStore {
 public:
  virtual ~AccountStore() = default;

  // Creates the account and its first device atomically. AlreadyExists when
  // the username (or account id) is taken. The device's device_id is assigned
  // by the store (1) and returned.
  virtual absl::StatusOr<DeviceRecord> CreateAccount(
      const AccountRecord& account, const DeviceRecord& first_device) = 0;

  virtual absl::StatusOr<AccountRecord> GetAccount(
      const std::string& account_id) = 0;
  virtual absl::StatusOr<AccountRecord> GetAccountByUsername(
      const std::string& username) = 0;
  virtual absl::Status UpdateAccount(const AccountRecord& account) = 0;

  // Adds a device with the next free device id (ids are never reused within
  // an account) and returns it. NotFound if the account does not exist.
  virtual absl::StatusOr<DeviceRecord> AddDevice(const DeviceRecord& device) = 0;
  virtual absl::StatusOr<DeviceRecord> GetDevice(const std::string& account_id,
                                                 uint32_t device_id) = 0;
  virtual absl::StatusOr<std::vector<DeviceRecord>> ListDevices(
      const std::string& account_id) = 0;
  virtual absl::Status UpdateDevice(const DeviceRecord& device) = 0;
  // Removes the device, its token, its delivery queue and its keys
  // (KeyStore) atomically.
  virtual absl::Status RemoveDevice(const std::string& account_id,
                                    uint32_t device_id) = 0;
  // Looks a device up by the SHA-256 of its bearer token.
  virtual absl::StatusOr<DeviceRecord> FindDeviceByTokenHash(
      const std::string& token_hash) = 0;

  virtual absl::Status PutDeviceLink(const DeviceLinkRecord& link) = 0;
  // Returns and deletes the link (single use). NotFound if absent.
  virtual absl::StatusOr<DeviceLinkRecord> TakeDeviceLink(
      const std::string& code_hash) = 0;
};

// ------------------------------------------------------------ conversations

class ConversationStore {
 public:
  virtual ~ConversationStore() = default;

  // Creates a conversation. For kind DIRECT (1) with two members, also claims
  // the pair: AlreadyExists if the pair already has a conversation.
  virtual absl::Status CreateConversation(const ConversationRecord& c) = 0;
  virtual absl::StatusOr<ConversationRecord> GetConversation(
      const std::string& conversation_id) = 0;
  // Returns the conversation id of the direct conversation of two accounts
  // (order does not matter), or NotFound.
  virtual absl::StatusOr<std::string> FindDirect(const std::string& account_a,
                                                 const std::string& account_b) = 0;
  // Replaces members, title and security state; keeps last_seq. Maintains the
  // per-account membership index.
  virtual absl::Status UpdateConversation(const ConversationRecord& c) = 0;
  virtual absl::StatusOr<std::vector<std::string>> ListConversationIds(
      const std::string& account_id) = 0;
  // Visits every conversation in id order (bytewise), for policy planning
  // and re-evaluation; stops early when the visitor returns false.
  absl::Status ForEachConversation(
      const std::function<bool(const ConversationRecord&)>& visit) {
    return ForEachConversationAfter("", visit);
  }
  // The same, starting with the first conversation whose id sorts after
  // `after_id` ("": from the first); the cost does not depend on how many
  // come before it (admin listings page with it).
  virtual absl::Status ForEachConversationAfter(
      const std::string& after_id,
      const std::function<bool(const ConversationRecord&)>& visit) = 0;
  // A cheap estimate of the number of conversations (for progress bars); may
  // be off by a few percent, never fails.
  virtual uint64_t EstimateConversationCount() = 0;
};

// ----------------------------------------------------------------- policies

// One applied policy document. Revisions are immutable once appended.
struct PolicyRevisionRecord {
  uint64_t number = 0;        // 1, 2, 3, ... in order of application
  std::string content;        // the YAML document exactly as applied
  std::string content_hash;   // lower-case hex SHA-256 of content
  std::string previous_hash;  // content_hash of revision number-1; "" for 1
  std::string author;         // admin token name, or "parleyd" at start
  std::string comment;
  int64_t created_at_ms = 0;
  uint64_t rollback_of = 0;   // the revision whose content this restores, or 0
};

class PolicyStore {
 public:
  virtual ~PolicyStore() = default;
  // Appends `r`, whose number must be the head's number + 1 (1 when empty):
  // FailedPrecondition otherwise (another apply won the race).
  virtual absl::Status AppendRevision(const PolicyRevisionRecord& r) = 0;
  // NotFound if no such revision.
  virtual absl::StatusOr<PolicyRevisionRecord> GetRevision(uint64_t number) = 0;
  // The newest revision; NotFound when none has been applied yet.
  virtual absl::StatusOr<PolicyRevisionRecord> HeadRevision() = 0;
  // Newest first: revisions with number < before (0: from the newest), at
  // most `limit`.
  virtual absl::StatusOr<std::vector<PolicyRevisionRecord>> ListRevisions(
      uint64_t before, size_t limit) = 0;
};

// -------------------------------------------------------------------- audit

// One entry of the append-only, hash-chained audit log. The hash is computed
// by the writer (core/audit.h); the store only keeps records in order.
struct AuditRecord {
  uint64_t seq = 0;  // 1, 2, 3, ...
  int64_t time_ms = 0;
  std::string actor;      // "operator:ops-1 (t_...)", "parleyd", ...
  std::string action;     // "policy.apply", "admin.login", ...
  std::string target;     // what it concerns (revision, conversation id)
  std::string details;    // a JSON object
  std::string prev_hash;  // hash of record seq-1 (32 raw bytes); "" for 1
  std::string hash;       // 32 raw bytes
};

class AuditStore {
 public:
  virtual ~AuditStore() = default;
  // Appends `r`, whose seq must be the last seq + 1 (1 when empty):
  // FailedPrecondition otherwise. There is no update or delete.
  virtual absl::Status AppendAudit(const AuditRecord& r) = 0;
  // Records with seq > after_seq, ascending, at most `limit`.
  virtual absl::StatusOr<std::vector<AuditRecord>> ReadAudit(uint64_t after_seq,
                                                             size_t limit) = 0;
  // The newest record; NotFound when the log is empty.
  virtual absl::StatusOr<AuditRecord> LastAudit() = 0;
};

// ------------------------------------------------------------- admin tokens

struct AdminTokenRecord {
  std::string token_id;    // public id, "t_" + 16 hex
  std::string token_hash;  // SHA-256 of the secret token (32 raw bytes)
  std::string role;        // "operator", "auditor", "moderator", "lawful_access"
  std::string name;        // human label
  std::string created_by;  // token id of the creator, or "parleyd"
  int64_t created_at_ms = 0;
  bool revoked = false;
  int64_t revoked_at_ms = 0;
};

class AdminTokenStore {
 public:
  virtual ~AdminTokenStore() = default;
  // Creates or replaces the token with this token_id (the hash index follows
  // token_hash, which must not change for an existing id).
  virtual absl::Status PutAdminToken(const AdminTokenRecord& t) = 0;
  virtual absl::StatusOr<AdminTokenRecord> GetAdminToken(
      const std::string& token_id) = 0;
  virtual absl::StatusOr<AdminTokenRecord> FindAdminTokenByHash(
      const std::string& token_hash) = 0;
  // All tokens (revoked ones included), ordered by token_id.
  virtual absl::StatusOr<std::vector<AdminTokenRecord>> ListAdminTokens() = 0;
};

// ----------------------------------------------------------------- messages

// One queue entry to create: the device and the payload it will receive.
struct QueueTarget {
  std::string account_id;
  uint32_t device_id = 0;
};

struct AppendRequest {
  std::string conversation_id;
  // Idempotency scope: the sending device and its client message id. Empty
  // client_message_id: no idempotency (server-generated events).
  std::string sender_account_id;
  uint32_t sender_device_id = 0;
  std::string client_message_id;
  int64_t server_time_ms = 0;
  // The idempotency window: a record of the same client_message_id written
  // before this time (Unix ms) is treated as absent, so the Send is stored
  // anew and the record replaced. 0 (default): every record counts.
  int64_t idempotency_not_before_ms = 0;
  // Builds the stored payload once the sequence number is known. Called at
  // most once, under the store's per-conversation ordering; must be cheap.
  // An error aborts the Append: nothing is written, and Append returns it.
  std::function<absl::StatusOr<std::string>(uint64_t seq)> make_payload;
  // Optional per-target payload (E2EE: each device gets its own ciphertext).
  // When set, it is called once per target instead of using make_payload for
  // the queue entries (make_payload still makes the history entry). An error
  // aborts the Append as above, whichever target it comes from.
  std::function<absl::StatusOr<std::string>(uint64_t seq, const QueueTarget&)>
      make_target_payload;
  std::vector<QueueTarget> targets;
  bool keep_history = false;  // store make_payload(seq) in readable history
  // true: return once the append is written and visible, without waiting
  // for it to be durable; the caller must not acknowledge it before
  // Storage::WhenDurable reports (group commit without blocking a thread).
  // false (default): durable on return, as every other write.
  bool defer_durability = false;
  // If set, the conversation's security state is replaced in the same atomic
  // write (a SecurityChange event together with its new state).
  std::optional<SecurityStateRecord> new_security;
  // Appended only if the conversation's security epoch equals this value
  // (0: no check). FailedPrecondition otherwise.
  uint64_t expect_epoch = 0;
  // true: AppendResult::queued lists the entries written (for handing them
  // to connected receivers without reading them back).
  bool return_queued = false;
};

// A queue entry written by an Append.
struct QueuedEntry {
  size_t target = 0;  // index into AppendRequest::targets
  uint64_t delivery_id = 0;
  // The stored payload; shared by all targets when they get the same one.
  std::shared_ptr<const std::string> payload;
};

struct AppendResult {
  uint64_t seq = 0;
  int64_t server_time_ms = 0;
  bool duplicate = false;  // the idempotency key existed; nothing was stored
  // With AppendRequest::return_queued, in target order; targets whose device
  // no longer exists have no entry.
  std::vector<QueuedEntry> queued;
};

struct QueueEntry {
  uint64_t delivery_id = 0;
  std::string payload;
};

struct HistoryEntry {
  uint64_t seq = 0;
  int64_t server_time_ms = 0;
  std::string payload;
};

class MessageStore {
 public:
  virtual ~MessageStore() = default;

  // Atomically: checks the idempotency key (returning the original result
  // with duplicate=true if present and not older than
  // idempotency_not_before_ms), assigns the conversation's next seq,
  // writes the history entry (if keep_history), one queue entry per target
  // (each with that device's next delivery id) and the idempotency record.
  // Appends to one conversation are serialized, so seq order equals delivery
  // order on every device. NotFound if the conversation does not exist.
  virtual absl::StatusOr<AppendResult> Append(const AppendRequest& req) = 0;

  // Reads up to `limit` entries of a device's queue with delivery_id >
  // after_delivery_id, in order.
  virtual absl::StatusOr<std::vector<QueueEntry>> ReadQueue(
      const std::string& account_id, uint32_t device_id,
      uint64_t after_delivery_id, size_t limit) = 0;
  // No delivery id above this was ever assigned to the device (0 if none);
  // the next one is higher. The highest id assigned while the process runs;
  // after a restart it may be higher than any assigned (ids are reserved in
  // blocks, see the backend).
  virtual absl::StatusOr<uint64_t> LastDeliveryId(const std::string& account_id,
                                                  uint32_t device_id) = 0;
  // Deletes the given entries of the device's queue; returns how many
  // existed. Unknown ids are ignored. Acks need not be power-loss durable
  // (a lost ack means a redelivery, which clients drop by message id).
  virtual absl::StatusOr<size_t> Ack(const std::string& account_id,
                                     uint32_t device_id,
                                     const std::vector<uint64_t>& delivery_ids) = 0;

  // Readable history, newest first: entries with seq < before_seq (0: from
  // the newest), at most `limit`.
  virtual absl::StatusOr<std::vector<HistoryEntry>> ReadHistory(
      const std::string& conversation_id, uint64_t before_seq, size_t limit) = 0;

  // Deletes history entries older than the cutoff; returns how many.
  virtual absl::StatusOr<size_t> PurgeHistoryBefore(int64_t cutoff_ms) = 0;
  // Deletes one conversation's history entries older than the cutoff;
  // returns how many.
  virtual absl::StatusOr<size_t> PurgeConversationHistoryBefore(
      const std::string& conversation_id, int64_t cutoff_ms) = 0;
  // Deletes one history entry (moderation removal). NotFound if absent.
  virtual absl::Status DeleteHistoryEntry(const std::string& conversation_id,
                                          uint64_t seq) = 0;
  // Deletes undelivered queue entries (of every device) enqueued before the
  // cutoff; returns how many. Entries written before enqueue times were
  // recorded (none in a store created by this version) are kept.
  virtual absl::StatusOr<size_t> PurgeQueuesBefore(int64_t cutoff_ms) = 0;
  // Deletes idempotency records (AppendRequest::client_message_id) written
  // before the cutoff; returns how many. A record kept or replaced by a
  // concurrent Append is not deleted.
  virtual absl::StatusOr<size_t> PurgeIdempotencyBefore(int64_t cutoff_ms) = 0;
};

// --------------------------------------------------------------------- keys
// The Signal-protocol key directory: per device, the public keys others need
// to start an end-to-end encrypted session with it (X3DH). Keys are opaque
// bytes to the store; validation (lengths, signatures) is the caller's job.

struct SignedPreKeyRecord {
  uint32_t key_id = 0;
  std::string public_key;  // serialized Curve25519 public key (33 bytes)
  std::string signature;   // by the identity key over public_key (64 bytes)
};

struct PreKeyRecord {
  uint32_t key_id = 0;
  std::string public_key;  // serialized Curve25519 public key (33 bytes)
};

// The long-lived keys of one device.
struct DeviceKeysRecord {
  std::string account_id;
  uint32_t device_id = 0;
  std::string identity_key;  // serialized Curve25519 public key (33 bytes)
  uint32_t registration_id = 0;
  SignedPreKeyRecord signed_pre_key;
};

// Keys exist only for existing devices: every mutating method returns
// NotFound for a device that does not exist (or was removed), and
// AccountStore::RemoveDevice deletes the device's keys in its own atomic
// write. One-time pre-keys belong to the identity key they were uploaded
// under (see SetDeviceKeys).
class KeyStore {
 public:
  // Upper bound of the one-time pre-keys stored per device.
  static constexpr size_t kMaxOneTimePreKeys = 1000;

  virtual ~KeyStore() = default;

  // Creates or replaces the device's identity key, registration id and signed
  // pre-key. When the identity key differs from the stored one (a reinstall)
  // the device's one-time pre-keys are deleted in the same atomic write, so a
  // fetcher never gets a new identity key together with an old pre-key.
  // NotFound if the device does not exist.
  virtual absl::Status SetDeviceKeys(const DeviceKeysRecord& keys) = 0;

  // Adds one-time pre-keys; a key with the id of a stored one replaces it.
  // All or nothing: ResourceExhausted (nothing stored) when the device would
  // then hold more than kMaxOneTimePreKeys; InvalidArgument on duplicate ids
  // within `keys`; FailedPrecondition when the device has no keys yet
  // (SetDeviceKeys first); NotFound if the device does not exist.
  virtual absl::Status AddOneTimePreKeys(const std::string& account_id,
                                         uint32_t device_id,
                                         const std::vector<PreKeyRecord>& keys) = 0;

  // Number of stored one-time pre-keys (0 for an unknown device).
  virtual absl::StatusOr<size_t> CountOneTimePreKeys(
      const std::string& account_id, uint32_t device_id) = 0;

  // NotFound when the device has not set keys (or does not exist).
  virtual absl::StatusOr<DeviceKeysRecord> GetDeviceKeys(
      const std::string& account_id, uint32_t device_id) = 0;

  // Atomically removes and returns the device's one-time pre-key with the
  // lowest id. Concurrent callers never get the same key: every stored key is
  // handed out at most once. NotFound when none is left.
  virtual absl::StatusOr<PreKeyRecord> TakeOneTimePreKey(
      const std::string& account_id, uint32_t device_id) = 0;
};

// ------------------------------------------------------------------ safety
// Moderation reports, scheduled in-band notices and the retention task's
// status. Values are opaque to the store (core serializes them); the store
// keeps order and the open-report index.

struct StoredReport {
  uint64_t number = 0;  // 1, 2, 3, ... assigned by AddReport
  bool open = true;
  std::string body;     // opaque
};

struct ScheduledNotice {
  int64_t due_ms = 0;
  std::string id;       // unique among notices due at the same time
  std::string body;     // opaque
};

class SafetyStore {
 public:
  virtual ~SafetyStore() = default;
  // Stores a new open report; returns its number (last + 1).
  virtual absl::StatusOr<uint64_t> AddReport(const std::string& body) = 0;
  // Replaces an existing report (NotFound if there is none).
  virtual absl::Status UpdateReport(const StoredReport& r) = 0;
  virtual absl::StatusOr<StoredReport> GetReport(uint64_t number) = 0;
  // Reports with number > after, ascending, at most `limit`; only open ones
  // if `open_only`.
  virtual absl::StatusOr<std::vector<StoredReport>> ListReports(
      bool open_only, uint64_t after, size_t limit) = 0;

  virtual absl::Status ScheduleNotice(const ScheduledNotice& n) = 0;
  // Notices with due_ms <= now_ms, earliest first, at most `limit`.
  virtual absl::StatusOr<std::vector<ScheduledNotice>> DueNotices(
      int64_t now_ms, size_t limit) = 0;
  virtual absl::Status DeleteNotice(const ScheduledNotice& n) = 0;

  // A small named value (e.g. "retention"); NotFound when never written.
  virtual absl::Status PutSafetyValue(const std::string& name,
                                      const std::string& value) = 0;
  virtual absl::StatusOr<std::string> GetSafetyValue(const std::string& name) = 0;
};

// All stores of one backend, opened together.
// What a backend reports about itself (Storage::Stats): counters since it
// was opened, and gauges read at the call.
struct StorageStats {
  // WhenDurable's group commit: the rounds that made waiting writes durable
  // (RocksDB: one log write with batched log writes, one fsync in sync
  // mode), and the WhenDurable calls they answered; waiters / commits is
  // the mean batch. Both 0 for a backend whose writes are durable as they are made.
  uint64_t group_commits = 0;
  uint64_t group_commit_waiters = 0;
  uint64_t memtable_bytes = 0;            // written, held in memory
  uint64_t table_file_bytes = 0;          // in table files on disk
  uint64_t pending_compaction_bytes = 0;  // compaction's backlog, estimated
  // A background error (e.g. a full disk) stops writes until recovery.
  bool writes_stopped = false;
};

class Storage {
 public:
  virtual ~Storage() = default;
  virtual AccountStore& accounts() = 0;
  virtual ConversationStore& conversations() = 0;
  virtual MessageStore& messages() = 0;
  virtual PolicyStore& policies() = 0;
  virtual AuditStore& audit() = 0;
  virtual AdminTokenStore& admin_tokens() = 0;
  virtual KeyStore& keys() = 0;
  virtual SafetyStore& safety() = 0;
  // Flushes buffered writes to durable storage (used at shutdown).
  virtual absl::Status Flush() = 0;
  // Calls `done` once every write made before this call is as durable as
  // the backend promises (RocksDB sync mode: fsynced, shared by every
  // waiter at that moment; otherwise at once, inline). `done` may run on
  // the calling thread or on the backend's own thread; it must not block.
  virtual void WhenDurable(std::function<void(absl::Status)> done) = 0;
  // Flushes and compacts everything, so deleted data is physically removed
  // from the files (after a retention purge). Slow; call rarely.
  virtual absl::Status Compact() = 0;
  // Cheap (no I/O); safe to call at any time from any thread.
  virtual StorageStats Stats() = 0;
};

}  // namespace parley::storage

#endif  // PARLEY_STORAGE_STORAGE_H_
