// The deployment policy in force: revisions in storage, evaluation of stored
// conversations, planning, and the schedule of announced changes.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// The pure decision engine (policy/policy.h) decides one conversation from
// its facts; this component supplies the facts from storage, turns a
// decision into a conversation security state (epoch, pending change,
// participants' consent), keeps the revision history and answers "what would
// this candidate policy change" without writing anything.
//
// Threading: all methods may be called concurrently. current() returns an
// immutable snapshot; Commit swaps it atomically. Ownership: does not own the
// storage; it must outlive the engine.
#ifndef PARLEY_CORE_POLICY_ENGINE_H_
#define PARLEY_CORE_POLICY_ENGINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "parley/v1/admin.pb.h"
#include "policy/policy.h"
#include "storage/storage.h"

namespace parley::core {

// A parsed policy revision (stored) or candidate (not stored).
struct PolicyVersion {
  policy::Policy policy;
  storage::PolicyRevisionRecord record;  // number 0 for a candidate
  std::string revision_id;               // "r3-1a2b3c4d" / "candidate-1a2b3c4d"
  int64_t applied_at_ms = 0;             // record.created_at_ms; now for a candidate
};

// "r<number>-<first 8 hex of content_hash>".
std::string RevisionId(uint64_t number, const std::string& content_hash);
// Lower-case hex SHA-256.
std::string ContentHash(const std::string& content);
void ToProto(const PolicyVersion& v, bool current, v1::PolicyRevision* out);
void ToProto(const storage::PolicyRevisionRecord& r, const std::string& name, bool current,
             v1::PolicyRevision* out);

// Builds policy facts for stored conversations, caching account attributes
// (one builder per request; not thread-safe).
class FactsBuilder {
 public:
  explicit FactsBuilder(storage::AccountStore* accounts) : accounts_(accounts) {}
  // Facts of `conv` as it is stored (current state and consent requests
  // included). `applied_at_ms`: when the evaluated revision took effect.
  absl::StatusOr<policy::Facts> Build(const storage::ConversationRecord& conv, int64_t now_ms,
                                      int64_t applied_at_ms);
  // The same into `*f`, reusing its allocations (for scans).
  absl::Status BuildInto(const storage::ConversationRecord& conv, int64_t now_ms,
                         int64_t applied_at_ms, policy::Facts* f);
  // Facts of a conversation being created (no current state).
  absl::StatusOr<policy::Facts> BuildNew(const storage::ConversationRecord& conv,
                                         const std::vector<storage::AccountRecord>& members,
                                         int64_t now_ms);

 private:
  absl::StatusOr<const policy::ParticipantFacts*> Participant(const std::string& account_id);
  storage::AccountStore* const accounts_;
  absl::flat_hash_map<std::string, policy::ParticipantFacts> cache_;
};

// What a policy decides for one conversation, as a state to store.
struct Evaluation {
  policy::Decision decision;  // views into the evaluated PolicyVersion
  // true when the state must change (mode, lock or announced change): the
  // new state has epoch + 1 and members get a SecurityChange event. Always
  // true for a conversation being created (epoch 1).
  bool changed = false;
  storage::SecurityStateRecord state;  // the state to store; == current if !changed
};

// The reason stored with a decision: the rule's reason, preceded by why the
// decided mode differs from the rule's (an adjustment), if it does.
std::string StateReason(const policy::Decision& d);

// Decides `conv` (its stored state in conv.security; epoch 0 = new) under
// `v` with `facts` (from FactsBuilder). With full_state false (plans), only
// `changed` and the state's mode, lock and pending change are filled.
Evaluation Evaluate(const PolicyVersion& v, const storage::ConversationRecord& conv,
                    const policy::Facts& facts, int64_t now_ms, bool full_state = true);

// Adds one evaluated conversation to a plan's tallies.
class PlanTally {
 public:
  explicit PlanTally(size_t samples) : samples_(samples) {}
  void Add(const storage::ConversationRecord& conv, const Evaluation& e);
  v1::PolicyPlan Finish(int64_t evaluated_at_ms, uint64_t elapsed_ms) const;

 private:
  size_t samples_;
  uint64_t conversations_ = 0, unchanged_ = 0, kept_ = 0, kept_by_participants_ = 0, other_ = 0;
  std::vector<std::string> kept_samples_;
  // (from, to) -> count, samples
  std::map<std::pair<int, int>, std::pair<uint64_t, std::vector<std::string>>> transitions_;
  // day (ms at 00:00 UTC of effective time; exact time of the first) -> ...
  std::map<int64_t, std::pair<uint64_t, std::vector<std::string>>> downgrades_;
  // Rule ids are views into the evaluated PolicyVersion, which outlives the
  // tally.
  absl::flat_hash_map<std::string_view, uint64_t> rules_;
};

class PolicyEngine {
 public:
  struct Options {
    storage::Storage* storage = nullptr;
    std::function<int64_t()> now_ms;
    // The document to put in force at start, if it differs from the stored
    // head (parleyd --policy FILE). Empty: keep the head; with no head at
    // all, `default_content` becomes revision 1.
    std::string start_content;
    std::string start_file_name;
    std::string default_content;    // the default preset's document
    std::string default_file_name;  // e.g. "preset:messenger-2016"
  };

  // Loads (and if needed commits) the policy in force. Returns the engine
  // and whether a new revision was committed (the caller then re-evaluates
  // stored conversations).
  static absl::StatusOr<std::pair<std::unique_ptr<PolicyEngine>, bool>> Open(Options options);

  std::shared_ptr<const PolicyVersion> current() const;

  // Parses a document without storing it ("candidate-<hash8>" revision).
  // INVALID_ARGUMENT with file:line: field: message lines.
  absl::StatusOr<std::shared_ptr<const PolicyVersion>> ParseCandidate(
      const std::string& content, const std::string& file_name) const;

  // Stores `content` as the next revision and makes it current. ALREADY_EXISTS
  // when it is identical to the current revision.
  absl::StatusOr<std::shared_ptr<const PolicyVersion>> Commit(const std::string& content,
                                                              const std::string& file_name,
                                                              const std::string& author,
                                                              const std::string& comment,
                                                              uint64_t rollback_of);

  // Evaluates every stored conversation under `v` without writing.
  // `progress(scanned, estimate)` is called about every 4096 conversations.
  absl::StatusOr<v1::PolicyPlan> Plan(const PolicyVersion& v, size_t samples,
                                      const std::function<void(uint64_t, uint64_t)>& progress) const;

  // Schedule of announced changes (downgrades after notice).
  void Schedule(const std::string& conversation_id, int64_t effective_at_ms);
  // Conversations whose announced change is due at `now_ms` (removed from
  // the schedule; re-evaluating them re-schedules what is still pending).
  std::vector<std::string> TakeDue(int64_t now_ms);

  storage::Storage& storage() const { return *o_.storage; }
  int64_t Now() const { return o_.now_ms(); }

 private:
  explicit PolicyEngine(Options o) : o_(std::move(o)) {}
  absl::StatusOr<std::shared_ptr<const PolicyVersion>> Load(const storage::PolicyRevisionRecord& r,
                                                            const std::string& file_name) const;

  Options o_;
  absl::Mutex commit_mu_;  // serializes Commit
  mutable absl::Mutex mu_;
  std::shared_ptr<const PolicyVersion> current_ ABSL_GUARDED_BY(mu_);
  absl::Mutex schedule_mu_;
  std::set<std::pair<int64_t, std::string>> schedule_ ABSL_GUARDED_BY(schedule_mu_);
};

}  // namespace parley::core

#endif  // PARLEY_CORE_POLICY_ENGINE_H_
