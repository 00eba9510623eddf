// The append-only, hash-chained audit log of admin actions and content access.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Every record carries the SHA-256 of the previous record, and its own hash
// covers every field (see RecordHash), so changing, removing or reordering a
// stored record breaks the chain at that record: Verify() finds it.
//
// Threading: Append and Verify may be called concurrently; appends are
// serialized so sequence numbers and the chain have no gaps.
// Ownership: the AuditLog does not own its store; it must outlive the log.
// Secrets: callers must not put tokens, keys or message plaintext in records.
#ifndef PARLEY_CORE_AUDIT_H_
#define PARLEY_CORE_AUDIT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/storage.h"

namespace parley::core {

// SHA-256 over prev_hash and every field of `r` except `hash` itself, each
// length-prefixed (format version 1; do not change: it would break every
// stored chain).
std::string RecordHash(const storage::AuditRecord& r);

struct AuditVerifyResult {
  uint64_t records = 0;       // records checked
  bool ok = true;
  uint64_t first_bad_seq = 0; // first record whose chain does not hold
  std::string problem;        // what is wrong with it
};

class AuditLog {
 public:
  // Reads the last record (if any) to continue the chain.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(
      storage::AuditStore* store, std::function<int64_t()> now_ms);

  // Appends one record; returns its seq. `details_json` must be a JSON
  // object ("{}" if nothing to add).
  absl::StatusOr<uint64_t> Append(const std::string& actor,
                                  const std::string& action,
                                  const std::string& target,
                                  const std::string& details_json);

  // Recomputes the whole chain from the store.
  absl::StatusOr<AuditVerifyResult> Verify();

 private:
  AuditLog(storage::AuditStore* store, std::function<int64_t()> now_ms)
      : store_(store), now_ms_(std::move(now_ms)) {}
  storage::AuditStore* const store_;
  const std::function<int64_t()> now_ms_;
  absl::Mutex mu_;
  uint64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_hash_ ABSL_GUARDED_BY(mu_);
};

// Escapes `s` as a JSON string literal (with quotes).
std::string JsonQuote(const std::string& s);

}  // namespace parley::core

#endif  // PARLEY_CORE_AUDIT_H_
