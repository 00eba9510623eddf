// The Parley domain service: accounts, devices, conversations and messaging.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Transport-agnostic: takes and returns parley.v1 messages and absl::Status;
// the gRPC adapters (grpc_services.h) authenticate, call these methods and
// convert statuses. Every error names the field or object it concerns.
//
// Thread-safe: all methods may be called concurrently. The ParleyService does not
// own its storage, hub or clock; they must outlive it.
#ifndef PARLEY_CORE_SERVICE_H_
#define PARLEY_CORE_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api/parley/latency/latency_histogram.h"
#include "core/delivery.h"
#include "core/franker.h"
#include "core/rate_limiter.h"
#include "core/policy_engine.h"
#include "core/statement.h"
#include "core/server.h"
#include "parley/v1/parley.pb.h"
#include "storage/storage.h"

namespace parley::core {

// Type URL of the DeviceMismatch payload on a refused E2EE Send's status.
inline constexpr char kDeviceMismatchTypeUrl[] = "type.googleapis.com/parley.v1.DeviceMismatch";

// The authenticated device making a call.
struct Caller {
  std::string account_id;
  uint32_t device_id = 0;
};

void ToProto(const storage::SecurityStateRecord& r, v1::SecurityState* out);

class Safety;

class ParleyService {
 public:
  struct Deps {
    storage::Storage* storage = nullptr;
    DeliveryHub* hub = nullptr;
    std::function<int64_t()> now_ms;  // Unix epoch milliseconds
    // Decides every conversation's security state (required).
    PolicyEngine* policy = nullptr;
    // Signs every security state handed to clients (required).
    const StatementSigner* signer = nullptr;
    Limits limits;
    int64_t history_retention_days = 90;
    // The idempotency window (days): a Send whose client_message_id was
    // last used longer ago is a new message (storage::AppendRequest::
    // idempotency_not_before_ms). 0: every earlier use counts.
    int64_t idempotency_window_days = 7;
    // Stamps E2EE franking commitments and checks reports' reveals
    // (required).
    const Franker* franker = nullptr;
    // Files reports and scans transport messages (optional: without it
    // ReportMessage is UNIMPLEMENTED).
    Safety* safety = nullptr;
    // Per-device call rate limit, applied by Authenticate (optional).
    RateLimiter* rate_limiter = nullptr;
  };
  explicit ParleyService(Deps deps);

  // Resolves a bearer token ("Bearer <hex>" header value) to its device,
  // and charges the device's rate limit (RESOURCE_EXHAUSTED with retry
  // information when it is exceeded).
  absl::StatusOr<Caller> Authenticate(absl::string_view authorization) const;

  // Accounts and devices.
  absl::StatusOr<v1::CreateAccountResponse> CreateAccount(const v1::CreateAccountRequest& req);
  absl::StatusOr<v1::GetAccountResponse> GetAccount(const Caller& c, const v1::GetAccountRequest& req);
  absl::StatusOr<v1::CreateDeviceLinkResponse> CreateDeviceLink(const Caller& c);
  absl::StatusOr<v1::LinkDeviceResponse> LinkDevice(const v1::LinkDeviceRequest& req);
  absl::StatusOr<v1::ListDevicesResponse> ListDevices(const Caller& c);
  absl::Status RemoveDevice(const Caller& c, const v1::RemoveDeviceRequest& req);

  // Conversations.
  absl::StatusOr<v1::CreateDirectResponse> CreateDirect(const Caller& c, const v1::CreateDirectRequest& req);
  absl::StatusOr<v1::CreateGroupResponse> CreateGroup(const Caller& c, const v1::CreateGroupRequest& req);
  absl::StatusOr<v1::GetConversationResponse> GetConversation(const Caller& c, const v1::GetConversationRequest& req);
  absl::StatusOr<v1::ListConversationsResponse> ListConversations(const Caller& c);
  absl::StatusOr<v1::AddMembersResponse> AddMembers(const Caller& c, const v1::AddMembersRequest& req);
  absl::Status RemoveMember(const Caller& c, const v1::RemoveMemberRequest& req);
  // A participant asks to turn E2EE on or off; applied when the policy's
  // transitions allow it and enough participants consented.
  absl::StatusOr<v1::RequestSecurityChangeResponse> RequestSecurityChange(
      const Caller& c, const v1::RequestSecurityChangeRequest& req);

  // Policy re-evaluation (live switching). Re-decides one conversation under
  // the current policy; if its state changes, stores the new state (epoch +
  // 1) together with a SecurityChange event to every member device. Returns
  // whether it changed.
  absl::StatusOr<bool> Reevaluate(const std::string& conversation_id);
  struct ReevaluateResult {
    v1::PolicyPlan plan;     // what the evaluation found
    uint64_t changed = 0;    // conversations that got a new state
  };
  // Re-evaluates every stored conversation (after a policy commit, and at
  // start). `schedule_pending` (start only): the same walk also hands every
  // unchanged conversation's announced change to the policy engine's
  // scheduler (changed ones are scheduled by their re-evaluation).
  absl::StatusOr<ReevaluateResult> ReevaluateAll(size_t samples, bool schedule_pending);
  // Re-evaluates conversations whose announced change is due.
  absl::StatusOr<uint64_t> RunDueChanges();

  // Messaging. Send hands the message to the hub for every target device
  // once storage().WhenDurable reports it (so a connected recipient never
  // gets a message a kill -9 could lose). It is stored on return but
  // durable only once WhenDurable reports: callers must wait for that
  // before acknowledging it (the gRPC adapter does).
  absl::StatusOr<v1::SendResponse> Send(const Caller& c, const v1::SendRequest& req);
  absl::StatusOr<v1::AckResponse> Ack(const Caller& c, const v1::AckRequest& req);

  // Counts since the service was made (GetServerStats). Sends refused
  // before reaching Send (token, rate limit) are not counted here.
  struct Counters {
    uint64_t sends_stored = 0;     // new messages
    uint64_t sends_duplicate = 0;  // retries answered from the idempotency record
    uint64_t sends_refused = 0;    // Send returned an error
    uint64_t acked = 0;            // queue entries Ack removed
  };
  Counters counters() const;
  // Send latency inside the server (GetServerStats.send_latency): the gRPC
  // adapters record, for each Send answered after its durable write, the
  // time from their handler starting to the reply being issued.
  void RecordSendLatency(absl::Duration d) { send_latency_.Record(d); }
  void SendLatency(v1::LatencyHistogram* out) const { send_latency_.ToProto(out); }
  absl::StatusOr<v1::GetHistoryResponse> GetHistory(const Caller& c, const v1::GetHistoryRequest& req);
  // Files a report about message `seq`; E2EE messages need a franking
  // reveal that checks (INVALID_ARGUMENT otherwise, nothing filed).
  absl::StatusOr<v1::ReportMessageResponse> ReportMessage(const Caller& c,
                                                          const v1::ReportMessageRequest& req);

  // Appends a server event (access/moderation notices) to a conversation:
  // to every member (and history) if `only_accounts` is empty, else to
  // those accounts' devices only. NotFound if the conversation is gone.
  absl::Status PostEvent(const std::string& conversation_id,
                         const std::function<void(v1::Message*)>& fill,
                         const std::vector<std::string>& only_accounts);

  // Queue reads for Receive streams: the entries after `after_delivery_id`,
  // each payload a serialized v1::Message (checked to parse: DATA_LOSS names
  // the first entry that does not).
  absl::StatusOr<std::vector<storage::QueueEntry>> ReadQueue(const Caller& c, uint64_t after_delivery_id,
                                                             size_t limit);
  absl::StatusOr<uint64_t> LastDeliveryId(const Caller& c);
  // Records that the device connected (last seen).
  void Touch(const Caller& c);

  storage::Storage& storage() { return *d_.storage; }

 private:
  int64_t Now() const { return d_.now_ms(); }
  // Send without counting it.
  absl::StatusOr<v1::SendResponse> SendUncounted(const Caller& c, const v1::SendRequest& req);
  // Idempotency records written before this time do not count (0: all do).
  int64_t IdempotencyNotBefore(int64_t now_ms) const {
    return d_.idempotency_window_days > 0 ? now_ms - d_.idempotency_window_days * 24 * 3600 * 1000 : 0;
  }
  // ToProto of a conversation's security state, signed.
  absl::Status SignedState(const std::string& conversation_id, const storage::SecurityStateRecord& r,
                           v1::SecurityState* out) const;
  absl::StatusOr<v1::SendResponse> SendOnce(const Caller& c, const v1::SendRequest& req);
  // Offers what an Append queued to the targets' streams once the store
  // reports it durable (at once when it already is).
  void OfferWhenDurable(std::vector<storage::QueueTarget> targets, std::vector<storage::QueuedEntry> queued);
  absl::StatusOr<v1::SendResponse> SendEncrypted(const Caller& c, const v1::SendRequest& req,
                                                 const storage::ConversationRecord& conv);
  absl::StatusOr<v1::Conversation> ConversationToProto(const storage::ConversationRecord& r);
  absl::StatusOr<storage::ConversationRecord> LoadMemberConversation(const Caller& c,
                                                                     const std::string& id,
                                                                     absl::string_view field);
  // All devices of every member, except `exclude` (the sending device).
  absl::StatusOr<std::vector<storage::QueueTarget>> Targets(const storage::ConversationRecord& conv,
                                                            const Caller* exclude);
  absl::StatusOr<std::vector<uint32_t>> DeviceIds(const std::string& account_id);
  void InvalidateDevices(const std::string& account_id);
  // Appends a server event (membership/security) to the conversation and
  // wakes the receivers.
  absl::Status AppendEvent(const storage::ConversationRecord& conv, const Caller* by,
                           const std::function<void(v1::Message*)>& fill,
                           const std::vector<storage::QueueTarget>& extra_targets = {},
                           const storage::SecurityStateRecord* new_security = nullptr);
  // The security state of a conversation being created.
  absl::StatusOr<storage::SecurityStateRecord> InitialSecurity(
      const storage::ConversationRecord& conv, const std::vector<storage::AccountRecord>& members);
  // Stores `next` as conv's state with a SecurityChange event (caller holds
  // the conversation lock).
  absl::Status ApplySecurity(const storage::ConversationRecord& conv,
                             const storage::SecurityStateRecord& next, const Caller* by);
  // Re-evaluates `conv` (loaded under its lock) and applies a change.
  absl::StatusOr<bool> ReevaluateLocked(const storage::ConversationRecord& conv, const Caller* by);
  absl::Mutex* ConversationLock(const std::string& conversation_id);

  Deps d_;
  // Device ids per account (cache of storage; parleyd is the only writer).
  absl::Mutex devices_mu_;
  absl::flat_hash_map<std::string, std::vector<uint32_t>> devices_ ABSL_GUARDED_BY(devices_mu_);
  // Serializes membership changes per conversation (striped).
  static constexpr size_t kConversationLocks = 64;
  absl::Mutex conversation_locks_[kConversationLocks];
  // Counters (relaxed: each is a count on its own).
  std::atomic<uint64_t> sends_stored_{0};
  std::atomic<uint64_t> sends_duplicate_{0};
  std::atomic<uint64_t> sends_refused_{0};
  std::atomic<uint64_t> acked_{0};
  latency::LatencyHistogram send_latency_;
};

}  // namespace parley::core

#endif  // PARLEY_CORE_SERVICE_H_
