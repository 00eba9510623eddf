// Safety and compliance: moderation reports, the scanning hook, lawful
// access exports, access notices and retention (../shared/PRODUCT.md §2-3).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// What staff may see is decided per conversation by the policy in force
// (policy::StaffAccess): moderation none/reports/full_review, lawful_access,
// automated_scanning, notify_access, retention_days. In E2EE conversations
// parleyd has no content: staff see only what a reporter revealed, verified
// by message franking (core/franker.h), and exports hold metadata only.
//
// Every read of content (report view, export), every report decision and
// every suspension is written to the audit log (core/audit.h) with the
// acting principal; access notices go to the conversation as in-band events
// (parley.v1.AccessNotice), immediately or when due.
//
// Threading: all methods may be called concurrently. Ownership: owns
// nothing; every dependency must outlive it.
#ifndef PARLEY_CORE_SAFETY_H_
#define PARLEY_CORE_SAFETY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/admin_tokens.h"
#include "core/audit.h"
#include "core/delivery.h"
#include "core/policy_engine.h"
#include "core/scanner.h"
#include "parley/v1/admin.pb.h"
#include "parley/v1/parley.pb.h"
#include "storage/storage.h"

namespace parley::core {

class Safety {
 public:
  struct Options {
    // Undelivered queue entries older than this are purged (0: never).
    int32_t queue_retention_days = 30;
    // Idempotency records (client_message_id) older than this are purged
    // (0: never); ServerOptions::idempotency_window_days.
    int32_t idempotency_window_days = 7;
    // Readable history of conversations that are E2EE now (their history
    // predates E2EE), and the cap for every conversation (0: no cap).
    int32_t history_retention_days = 90;
    // How often the retention task runs (parleyd runs it at start too).
    int64_t retention_interval_ms = 3600 * 1000;
  };
  // Appends a server event to a conversation. `only_accounts` empty: every
  // member's devices and history; otherwise only those accounts' devices.
  using PostEvent = std::function<absl::Status(const std::string& conversation_id,
                                               const std::function<void(v1::Message*)>& fill,
                                               const std::vector<std::string>& only_accounts)>;
  struct Deps {
    storage::Storage* storage = nullptr;
    PolicyEngine* policy = nullptr;
    AuditLog* audit = nullptr;
    DeliveryHub* hub = nullptr;
    const ContentScanner* scanner = nullptr;  // optional
    std::function<int64_t()> now_ms;
    PostEvent post_event;
  };
  Safety(Deps deps, Options options);

  // Files a report (from ParleyService::ReportMessage, which has checked
  // membership and franking). `draft.report` has every field but the id.
  absl::StatusOr<std::string> FileReport(v1::GetReportResponse draft);

  // Scans one accepted message of a server-readable conversation if the
  // policy asks for it and a scanner is configured; files a report on a hit.
  // Never fails the Send: errors are logged.
  void ScanMessage(const storage::ConversationRecord& conv, const v1::Message& message);
  bool scanning_configured() const { return d_.scanner != nullptr; }

  // Admin (roles are checked by the adapter; `p` is the caller).
  absl::StatusOr<v1::ListReportsResponse> ListReports(const v1::ListReportsRequest& req);
  absl::StatusOr<v1::GetReportResponse> GetReport(const AdminPrincipal& p, const v1::GetReportRequest& req);
  absl::StatusOr<v1::ResolveReportResponse> ResolveReport(const AdminPrincipal& p,
                                                          const v1::ResolveReportRequest& req);
  absl::StatusOr<v1::SetAccountSuspendedResponse> SetAccountSuspended(
      const AdminPrincipal& p, const v1::SetAccountSuspendedRequest& req);
  absl::StatusOr<v1::ExportConversationResponse> ExportConversation(
      const AdminPrincipal& p, const v1::ExportConversationRequest& req);
  absl::StatusOr<v1::VerifyAuditResponse> VerifyAudit();
  absl::StatusOr<v1::GetRetentionStatusResponse> GetRetentionStatus();

  // Background work (parleyd's scheduler thread).
  absl::StatusOr<v1::RetentionRun> RunRetention();
  // Runs retention if its interval has passed since the last run.
  void MaybeRunRetention();
  // Delivers access notices that are due; returns how many.
  absl::StatusOr<uint64_t> RunDueNotices();

 private:
  int64_t Now() const { return d_.now_ms(); }
  // The policy's staff access for a stored conversation now.
  absl::StatusOr<policy::StaffAccess> StaffAccessFor(const storage::ConversationRecord& conv,
                                                     std::string* rule_id);
  // Tells the conversation's members of a content access, as the policy
  // says (now, later, or not at all).
  absl::Status NoticeAccess(const storage::ConversationRecord& conv, v1::AccessNotice::Kind kind,
                            uint32_t message_count);
  absl::StatusOr<std::pair<uint64_t, v1::GetReportResponse>> LoadReport(const std::string& report_id);
  absl::Status Suspend(const std::string& account_id, bool suspended);

  Deps d_;
  Options o_;
  absl::Mutex retention_mu_;  // one retention run at a time
  int64_t last_retention_ms_ ABSL_GUARDED_BY(retention_mu_) = 0;
};

// "rep-<number>" <-> number.
std::string ReportId(uint64_t number);
absl::StatusOr<uint64_t> ParseReportId(const std::string& id);

}  // namespace parley::core

#endif  // PARLEY_CORE_SAFETY_H_
