// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/audit.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/ids.h"
#include "core/status_macros.h"

namespace parley::core {
namespace {

void PutField(std::string* out, const std::string& s) {
  uint64_t n = s.size();
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out->append(s);
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

std::string RecordHash(const storage::AuditRecord& r) {
  std::string buf = "parley-audit-v1";
  PutField(&buf, r.prev_hash);
  PutU64(&buf, r.seq);
  PutU64(&buf, static_cast<uint64_t>(r.time_ms));
  PutField(&buf, r.actor);
  PutField(&buf, r.action);
  PutField(&buf, r.target);
  PutField(&buf, r.details);
  return Sha256(buf);
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(storage::AuditStore* store,
                                                         std::function<int64_t()> now_ms) {
  std::unique_ptr<AuditLog> log(new AuditLog(store, std::move(now_ms)));
  auto last = store->LastAudit();
  if (last.ok()) {
    absl::MutexLock lock(&log->mu_);
    log->last_seq_ = last->seq;
    log->last_hash_ = last->hash;
  } else if (!absl::IsNotFound(last.status())) {
    return last.status();
  }
  return log;
}

absl::StatusOr<uint64_t> AuditLog::Append(const std::string& actor, const std::string& action,
                                          const std::string& target,
                                          const std::string& details_json) {
  absl::MutexLock lock(&mu_);
  storage::AuditRecord r;
  r.seq = last_seq_ + 1;
  r.time_ms = now_ms_();
  r.actor = actor;
  r.action = action;
  r.target = target;
  r.details = details_json.empty() ? "{}" : details_json;
  r.prev_hash = last_hash_;
  r.hash = RecordHash(r);
  PARLEY_RETURN_IF_ERROR(store_->AppendAudit(r));
  last_seq_ = r.seq;
  last_hash_ = r.hash;
  return r.seq;
}

absl::StatusOr<AuditVerifyResult> AuditLog::Verify() {
  AuditVerifyResult res;
  uint64_t after = 0;
  std::string prev_hash;
  uint64_t expect_seq = 1;
  while (true) {
    PARLEY_ASSIGN_OR_RETURN(auto batch, store_->ReadAudit(after, 1000));
    if (batch.empty()) break;
    for (const auto& r : batch) {
      ++res.records;
      std::string problem;
      if (r.seq != expect_seq) {
        problem = absl::StrCat("expected record ", expect_seq, " but found ", r.seq,
                               " (a record was removed or reordered)");
      } else if (r.prev_hash != prev_hash) {
        problem = "its prev_hash does not match the previous record (a record before it was "
                  "changed, removed or reordered)";
      } else if (RecordHash(r) != r.hash) {
        problem = "its content does not match its hash (the record was changed)";
      }
      if (!problem.empty()) {
        res.ok = false;
        res.first_bad_seq = r.seq == expect_seq ? r.seq : expect_seq;
        res.problem = std::move(problem);
        return res;
      }
      prev_hash = r.hash;
      ++expect_seq;
      after = r.seq;
    }
  }
  return res;
}

std::string JsonQuote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

}  // namespace parley::core
