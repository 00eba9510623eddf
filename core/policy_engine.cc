// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/policy_engine.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/ids.h"
#include "core/status_macros.h"
#include "spdlog/spdlog.h"

namespace parley::core {
namespace {

constexpr int kE2ee = static_cast<int>(policy::SecurityMode::kE2ee);
constexpr int64_t kMsPerDay = 24 * 3600 * 1000;

void AddSample(std::vector<std::string>* v, size_t n, const std::string& id) {
  if (v->size() < n) v->push_back(id);
}

}  // namespace

std::string ContentHash(const std::string& content) {
  return absl::BytesToHexString(Sha256(content));
}

std::string RevisionId(uint64_t number, const std::string& content_hash) {
  return absl::StrCat("r", number, "-", content_hash.substr(0, 8));
}

void ToProto(const storage::PolicyRevisionRecord& r, const std::string& name, bool current,
             v1::PolicyRevision* out) {
  out->set_number(r.number);
  out->set_revision_id(RevisionId(r.number, r.content_hash));
  out->set_content_hash(r.content_hash);
  out->set_previous_hash(r.previous_hash);
  out->set_author(r.author);
  out->set_comment(r.comment);
  out->set_created_at_ms(r.created_at_ms);
  out->set_rollback_of(r.rollback_of);
  out->set_name(name);
  out->set_current(current);
}

void ToProto(const PolicyVersion& v, bool current, v1::PolicyRevision* out) {
  ToProto(v.record, std::string(v.policy.name()), current, out);
}

// ------------------------------------------------------------------ facts

absl::StatusOr<const policy::ParticipantFacts*> FactsBuilder::Participant(
    const std::string& account_id) {
  auto it = cache_.find(account_id);
  if (it != cache_.end()) return &it->second;
  PARLEY_ASSIGN_OR_RETURN(storage::AccountRecord a, accounts_->GetAccount(account_id));
  policy::ParticipantFacts pf;
  pf.account_kind = static_cast<policy::AccountKind>(a.kind);
  pf.age_band = static_cast<policy::AgeBand>(a.age_band);
  pf.region_code = a.region_code;
  pf.organization = a.organization;
  return &cache_.emplace(account_id, std::move(pf)).first->second;
}

absl::StatusOr<policy::Facts> FactsBuilder::Build(const storage::ConversationRecord& conv,
                                                  int64_t now_ms, int64_t applied_at_ms) {
  policy::Facts f;
  absl::Status s = BuildInto(conv, now_ms, applied_at_ms, &f);
  if (!s.ok()) return s;
  return f;
}

absl::Status FactsBuilder::BuildInto(const storage::ConversationRecord& conv, int64_t now_ms,
                                     int64_t applied_at_ms, policy::Facts* f) {
  f->kind = static_cast<policy::ConversationKind>(conv.kind);
  f->member_count = static_cast<uint32_t>(conv.members.size());
  f->participants.clear();
  for (const auto& m : conv.members) {
    auto p = Participant(m.account_id);
    if (absl::IsNotFound(p.status())) continue;  // account deleted: not a participant
    if (!p.ok()) return p.status();
    f->participants.push_back(**p);
  }
  f->mutual_contacts = false;  // not tracked yet
  f->now_ms = now_ms;
  f->created_at_ms = conv.created_at_ms;
  f->current.reset();
  f->requests = {};
  const storage::SecurityStateRecord& s = conv.security;
  if (s.epoch > 0) {
    policy::CurrentSecurity cur;
    cur.mode = static_cast<policy::SecurityMode>(s.mode);
    cur.epoch = s.epoch;
    cur.e2ee_ever_enabled = s.e2ee_ever_enabled;
    cur.set_by_participants = s.set_by_participants;
    f->current = cur;
    f->requests.enable_e2ee = static_cast<uint32_t>(s.enable_requests.size());
    f->requests.disable_e2ee = static_cast<uint32_t>(s.disable_requests.size());
  }
  // The notice period of an announced change runs from its announcement
  // (the state that carries it took effect then), or from the revision's
  // application, whichever is earlier.
  f->policy_applied_at_ms = applied_at_ms;
  if (s.pending_mode != 0 && s.effective_at_ms < applied_at_ms) {
    f->policy_applied_at_ms = s.effective_at_ms;
  }
  return absl::OkStatus();
}

absl::StatusOr<policy::Facts> FactsBuilder::BuildNew(
    const storage::ConversationRecord& conv, const std::vector<storage::AccountRecord>& members,
    int64_t now_ms) {
  for (const auto& a : members) {
    policy::ParticipantFacts pf;
    pf.account_kind = static_cast<policy::AccountKind>(a.kind);
    pf.age_band = static_cast<policy::AgeBand>(a.age_band);
    pf.region_code = a.region_code;
    pf.organization = a.organization;
    cache_[a.account_id] = std::move(pf);
  }
  storage::ConversationRecord fresh = conv;
  fresh.security = {};
  return Build(fresh, now_ms, now_ms);
}

// ------------------------------------------------------------- evaluation

std::string StateReason(const policy::Decision& d) {
  if (d.adjustment_reason.empty()) return std::string(d.reason);
  std::string out(d.adjustment_reason);
  if (!out.empty()) out[0] = static_cast<char>(absl::ascii_toupper(static_cast<unsigned char>(out[0])));
  absl::StrAppend(&out, ". The rule's reason: ", std::string(d.reason));
  return out;
}

Evaluation Evaluate(const PolicyVersion& v, const storage::ConversationRecord& conv,
                    const policy::Facts& facts, int64_t now_ms, bool full_state) {
  Evaluation e;
  e.decision = policy::Decide(v.policy, facts);
  const policy::Decision& d = e.decision;
  const storage::SecurityStateRecord& cur = conv.security;
  const bool exists = cur.epoch > 0;

  const int mode = static_cast<int>(d.mode);
  const int pending_mode = d.pending ? static_cast<int>(d.pending->new_mode) : 0;
  const int64_t pending_at = d.pending ? d.pending->effective_at_ms : 0;
  std::string reason = StateReason(d);
  // What users are shown changes: mode, lock, an announced change, or the
  // rule, reason or notice behind it. A new revision that decides the same
  // thing for the same reason is not a change (the stored state keeps the
  // revision that last changed it).
  e.changed = !exists || mode != cur.mode || d.locked != cur.locked || pending_mode != cur.pending_mode ||
              (pending_mode != 0 && pending_at != cur.pending_effective_at_ms) ||
              d.rule_id != cur.rule_id || reason != cur.reason || d.notice != cur.notice;
  if (!e.changed) {
    if (full_state) e.state = cur;
    return e;
  }
  storage::SecurityStateRecord& s = e.state;
  s.mode = mode;
  s.locked = d.locked;
  s.pending_mode = pending_mode;
  s.pending_effective_at_ms = pending_at;
  s.epoch = cur.epoch + 1;
  s.effective_at_ms = now_ms;
  if (!full_state) return e;

  s.policy_revision = v.revision_id;
  s.rule_id = std::string(d.rule_id);
  s.reason = std::move(reason);
  s.notice = d.notice;
  if (d.pending) {
    s.pending_reason = std::string(d.reason);
    s.pending_rule_id = std::string(d.rule_id);
    s.pending_policy_revision = v.revision_id;
  }
  using A = policy::Adjustment;
  switch (d.adjustment) {
    case A::kEnabledByParticipants:
    case A::kDisabledByParticipants:
      s.set_by_participants = true;
      break;
    case A::kParticipantChoiceKept:
      s.set_by_participants = cur.set_by_participants;
      break;
    default:
      s.set_by_participants = false;
  }
  s.e2ee_ever_enabled = cur.e2ee_ever_enabled || s.mode == kE2ee;
  if (s.mode == cur.mode && exists) {
    // Same mode: consent requests still stand.
    s.enable_requests = cur.enable_requests;
    s.disable_requests = cur.disable_requests;
  }
  return e;
}

// ------------------------------------------------------------------ plans

void PlanTally::Add(const storage::ConversationRecord& conv, const Evaluation& e) {
  ++conversations_;
  ++rules_[e.decision.rule_id];
  const int from = conv.security.mode;
  if (e.decision.adjustment == policy::Adjustment::kExistingE2eeKept) {
    ++kept_;
    AddSample(&kept_samples_, samples_, conv.conversation_id);
  } else if (e.decision.adjustment == policy::Adjustment::kParticipantChoiceKept &&
             e.decision.mode == policy::SecurityMode::kE2ee) {
    ++kept_by_participants_;
  }
  if (!e.changed) {
    ++unchanged_;
    return;
  }
  if (e.state.mode != from) {
    auto& t = transitions_[{from, e.state.mode}];
    ++t.first;
    AddSample(&t.second, samples_, conv.conversation_id);
  } else if (e.state.pending_mode != 0) {
    const int64_t at = e.state.pending_effective_at_ms;
    auto& d = downgrades_[at - ((at % kMsPerDay) + kMsPerDay) % kMsPerDay];
    ++d.first;
    AddSample(&d.second, samples_, conv.conversation_id);
  } else {
    ++other_;
  }
}

v1::PolicyPlan PlanTally::Finish(int64_t evaluated_at_ms, uint64_t elapsed_ms) const {
  v1::PolicyPlan p;
  p.set_conversations(conversations_);
  p.set_unchanged(unchanged_);
  for (const auto& [k, v] : transitions_) {
    auto* t = p.add_transitions();
    t->set_from_mode(static_cast<v1::SecurityMode>(k.first));
    t->set_to_mode(static_cast<v1::SecurityMode>(k.second));
    t->set_count(v.first);
    for (const auto& id : v.second) t->add_sample_conversation_ids(id);
  }
  for (const auto& [day, v] : downgrades_) {
    auto* d = p.add_downgrades();
    d->set_effective_at_ms(day);
    d->set_count(v.first);
    for (const auto& id : v.second) d->add_sample_conversation_ids(id);
  }
  p.set_e2ee_kept(kept_);
  p.set_e2ee_kept_by_participants(kept_by_participants_);
  for (const auto& id : kept_samples_) p.add_kept_sample_conversation_ids(id);
  std::vector<std::pair<std::string_view, uint64_t>> rules(rules_.begin(), rules_.end());
  std::sort(rules.begin(), rules.end());
  for (const auto& [rule, n] : rules) {
    auto* r = p.add_rules();
    r->set_rule_id(std::string(rule));
    r->set_count(n);
  }
  p.set_evaluated_at_ms(evaluated_at_ms);
  p.set_elapsed_ms(elapsed_ms);
  p.set_other_changes(other_);
  return p;
}

// ----------------------------------------------------------------- engine

absl::StatusOr<std::shared_ptr<const PolicyVersion>> PolicyEngine::Load(
    const storage::PolicyRevisionRecord& r, const std::string& file_name) const {
  std::string id = r.number == 0 ? absl::StrCat("candidate-", r.content_hash.substr(0, 8))
                                  : RevisionId(r.number, r.content_hash);
  auto p = policy::ParsePolicy(r.content, file_name, id);
  if (!p.ok()) return p.status();
  auto v = std::make_shared<PolicyVersion>(PolicyVersion{std::move(*p), r, id, r.created_at_ms});
  return std::shared_ptr<const PolicyVersion>(std::move(v));
}

absl::StatusOr<std::pair<std::unique_ptr<PolicyEngine>, bool>> PolicyEngine::Open(Options o) {
  if (o.storage == nullptr || !o.now_ms) std::abort();  // wiring bug
  std::unique_ptr<PolicyEngine> e(new PolicyEngine(std::move(o)));
  auto head = e->o_.storage->policies().HeadRevision();
  if (!head.ok() && !absl::IsNotFound(head.status())) return head.status();
  bool committed = false;
  std::string content, file, comment;
  if (!e->o_.start_content.empty()) {
    if (!head.ok() || head->content_hash != ContentHash(e->o_.start_content)) {
      content = e->o_.start_content;
      file = e->o_.start_file_name;
      comment = absl::StrCat("applied at start from ", file);
    }
  } else if (!head.ok()) {
    content = e->o_.default_content;
    file = e->o_.default_file_name;
    comment = absl::StrCat("default policy on first start (", file, ")");
  }
  if (!content.empty()) {
    PARLEY_ASSIGN_OR_RETURN(auto v, e->Commit(content, file, "parleyd", comment, 0));
    (void)v;
    committed = true;
  } else {
    PARLEY_ASSIGN_OR_RETURN(auto v, e->Load(*head, absl::StrCat("revision ", head->number)));
    absl::MutexLock lock(&e->mu_);
    e->current_ = std::move(v);
  }
  return std::make_pair(std::move(e), committed);
}

std::shared_ptr<const PolicyVersion> PolicyEngine::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

absl::StatusOr<std::shared_ptr<const PolicyVersion>> PolicyEngine::ParseCandidate(
    const std::string& content, const std::string& file_name) const {
  if (content.empty()) return absl::InvalidArgumentError("content: the policy document is empty");
  storage::PolicyRevisionRecord r;
  r.content = content;
  r.content_hash = ContentHash(content);
  r.created_at_ms = o_.now_ms();
  return Load(r, file_name.empty() ? "policy.yaml" : file_name);
}

absl::StatusOr<std::shared_ptr<const PolicyVersion>> PolicyEngine::Commit(
    const std::string& content, const std::string& file_name, const std::string& author,
    const std::string& comment, uint64_t rollback_of) {
  absl::MutexLock commit(&commit_mu_);
  PARLEY_ASSIGN_OR_RETURN(auto candidate, ParseCandidate(content, file_name));
  auto head = o_.storage->policies().HeadRevision();
  if (!head.ok() && !absl::IsNotFound(head.status())) return head.status();
  storage::PolicyRevisionRecord r;
  r.number = head.ok() ? head->number + 1 : 1;
  r.content = content;
  r.content_hash = candidate->record.content_hash;
  r.previous_hash = head.ok() ? head->content_hash : "";
  if (head.ok() && head->content_hash == r.content_hash) {
    return absl::AlreadyExistsError(absl::StrCat(
        "the document is identical to the current revision ", RevisionId(head->number, head->content_hash)));
  }
  r.author = author;
  r.comment = comment;
  r.created_at_ms = o_.now_ms();
  r.rollback_of = rollback_of;
  PARLEY_ASSIGN_OR_RETURN(auto v, Load(r, file_name));
  PARLEY_RETURN_IF_ERROR(o_.storage->policies().AppendRevision(r));
  spdlog::info("event=policy_commit revision={} name=\"{}\" author=\"{}\" rollback_of={}", v->revision_id,
               std::string(v->policy.name()), author, rollback_of);
  absl::MutexLock lock(&mu_);
  current_ = v;
  return v;
}

absl::StatusOr<v1::PolicyPlan> PolicyEngine::Plan(
    const PolicyVersion& v, size_t samples,
    const std::function<void(uint64_t, uint64_t)>& progress) const {
  const auto start = std::chrono::steady_clock::now();
  const int64_t now = o_.now_ms();
  const uint64_t estimate = o_.storage->conversations().EstimateConversationCount();
  FactsBuilder facts(&o_.storage->accounts());
  PlanTally tally(samples);
  absl::Status err;
  uint64_t scanned = 0;
  policy::Facts f;
  PARLEY_RETURN_IF_ERROR(o_.storage->conversations().ForEachConversation(
      [&](const storage::ConversationRecord& c) {
        err = facts.BuildInto(c, now, v.applied_at_ms, &f);
        if (!err.ok()) return false;
        tally.Add(c, Evaluate(v, c, f, now, /*full_state=*/false));
        if (++scanned % 4096 == 0 && progress) progress(scanned, estimate);
        return true;
      }));
  PARLEY_RETURN_IF_ERROR(err);
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  v1::PolicyPlan p = tally.Finish(now, static_cast<uint64_t>(elapsed.count()));
  p.set_candidate_hash(v.record.content_hash);
  return p;
}

void PolicyEngine::Schedule(const std::string& conversation_id, int64_t effective_at_ms) {
  absl::MutexLock lock(&schedule_mu_);
  schedule_.emplace(effective_at_ms, conversation_id);
}

std::vector<std::string> PolicyEngine::TakeDue(int64_t now_ms) {
  std::vector<std::string> due;
  absl::MutexLock lock(&schedule_mu_);
  while (!schedule_.empty() && schedule_.begin()->first <= now_ms) {
    due.push_back(schedule_.begin()->second);
    schedule_.erase(schedule_.begin());
  }
  return due;
}

}  // namespace parley::core
