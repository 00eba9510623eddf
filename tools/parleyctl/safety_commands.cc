// SPDX-License-Identifier: GPL-3.0-or-later
//
// parleyctl's safety commands: audit verify, reports, accounts, access
// export, retention (declared in commands.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "tools/parleyctl/commands.h"
#include "tools/parleyctl/format.h"
#include "tools/parleyctl/safety_format.h"

namespace parley::ctl {
namespace {

// The server's limits (core/safety.cc): notes 2000 bytes, case references
// 128, ids 64.
constexpr size_t kMaxNote = 2000;
constexpr size_t kMaxCaseReference = 128;
constexpr size_t kMaxId = 64;

constexpr std::string_view kE2eeExport =
    "end-to-end encrypted: metadata only, no message content";

// "" when `text` is a usable id, else the problem.
std::string CheckId(std::string_view text) {
  if (text.empty() || text.find_first_not_of(" \t\r\n\f\v") ==
                          std::string_view::npos) {
    return "must not be empty";
  }
  if (text.size() > kMaxId) {
    return "is too long (at most " + std::to_string(kMaxId) + " bytes)";
  }
  for (char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b == 0x7f) {
      return "must not contain spaces or control characters";
    }
  }
  return "";
}

// Reports a bad argument: "<what>: <problem>" (exit 2).
int Bad(const Env& env, std::string_view what, const std::string& problem) {
  return env.Usage(std::string(what) + ": " + problem);
}

// Writes all of `data` to `fd`; false (errno set) on failure.
bool WriteAll(int fd, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

// ----------------------------------------------------------------- audit

int AuditVerify(const Env& env) {
  v1::VerifyAuditResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->VerifyAudit(&ctx, {}, &resp); !s.ok()) {
    return env.RpcFail("VerifyAudit", s);
  }
  env.Emit(FormatVerify(resp), VerifyJson(resp));
  return VerifyExitCode(resp);
}

// --------------------------------------------------------------- reports

int ReportsList(const Env& env, const ReportsListArgs& args) {
  const std::optional<v1::ReportStatus> status =
      ParseReportStatusFilter(args.status);
  if (!status) {
    return env.Usage("--status: unknown status \"" + args.status +
                     "\" (expected open, resolved or all)");
  }
  if (args.limit == 0) return env.Usage("--limit must be at least 1");
  std::vector<v1::ReportSummary> all;
  std::string page_token;
  while (all.size() < args.limit) {
    v1::ListReportsRequest req;
    req.set_status(*status);
    req.set_page_token(page_token);
    req.set_limit(
        static_cast<uint32_t>(std::min<size_t>(args.limit - all.size(), 500)));
    v1::ListReportsResponse resp;
    grpc::ClientContext ctx;
    env.Prepare(&ctx);
    if (grpc::Status s = env.stub()->ListReports(&ctx, req, &resp); !s.ok()) {
      return env.RpcFail("ListReports", s);
    }
    for (const v1::ReportSummary& r : resp.reports()) {
      if (all.size() < args.limit) all.push_back(r);
    }
    // Stop at the end, and on a page that makes no progress.
    if (resp.next_page_token().empty() || resp.reports().empty() ||
        resp.next_page_token() == page_token) {
      page_token.clear();
      break;
    }
    page_token = resp.next_page_token();
  }
  const bool more = !page_token.empty();

  nlohmann::json list = nlohmann::json::array();
  for (const v1::ReportSummary& r : all) list.push_back(ReportJson(r));
  std::string text = all.empty() ? std::string() : FormatReportTable(all);
  const std::string filter =
      *status == v1::REPORT_STATUS_UNSPECIFIED
          ? std::string()
          : " " + ReportStatusName(*status);
  text += std::to_string(all.size()) + filter +
          (all.size() == 1 ? " report" : " reports") +
          (more ? " (more exist: raise --limit)" : "") + "\n";
  env.Emit(text, {{"reports", list}, {"more", more}});
  return kExitOk;
}

int ReportsShow(const Env& env, const std::string& report_id) {
  if (std::string p = CheckId(report_id); !p.empty()) {
    return Bad(env, "report id", p);
  }
  v1::GetReportRequest req;
  req.set_report_id(report_id);
  v1::GetReportResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->GetReport(&ctx, req, &resp); !s.ok()) {
    return env.RpcFail("GetReport", s);
  }
  env.Emit(FormatReport(resp), ReportDetailJson(resp));
  return kExitOk;
}

int ReportsResolve(const Env& env, const ReportsResolveArgs& args) {
  if (std::string p = CheckId(args.report_id); !p.empty()) {
    return Bad(env, "report id", p);
  }
  const std::optional<v1::ReportAction> action = ParseReportAction(args.action);
  if (!action) {
    return env.Usage("--action: unknown action \"" + args.action +
                     "\" (expected dismiss, warn, suspend or remove-message)");
  }
  if (std::string p = CheckText(args.note, kMaxNote); !p.empty()) {
    return Bad(env, "--note", p + " (say why; it is kept in the audit log)");
  }
  v1::ResolveReportRequest req;
  req.set_report_id(args.report_id);
  req.set_action(*action);
  req.set_note(args.note);
  v1::ResolveReportResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->ResolveReport(&ctx, req, &resp); !s.ok()) {
    return env.RpcFail("ResolveReport", s);
  }
  env.Emit("resolved " + Sanitize(resp.report().report_id()) + ": " +
               ReportActionName(resp.report().action()) + "\n" +
               FormatReportSummary(resp.report()),
           {{"report", ReportJson(resp.report())}});
  return kExitOk;
}

// -------------------------------------------------------------- accounts

int AccountsSetSuspended(const Env& env, const AccountSuspendArgs& args) {
  if (std::string p = CheckId(args.account_id); !p.empty()) {
    return Bad(env, "account id", p);
  }
  if (std::string p = CheckText(args.note, kMaxNote); !p.empty()) {
    return Bad(env, "--note", p + " (say why; it is kept in the audit log)");
  }
  v1::SetAccountSuspendedRequest req;
  req.set_account_id(args.account_id);
  req.set_suspended(args.suspended);
  req.set_note(args.note);
  v1::SetAccountSuspendedResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->SetAccountSuspended(&ctx, req, &resp);
      !s.ok()) {
    return env.RpcFail("SetAccountSuspended", s);
  }
  const std::string id = Sanitize(resp.account_id());
  env.Emit(resp.suspended()
               ? "account " + id +
                     " suspended: its devices are refused and their open "
                     "streams closed"
               : "account " + id + " unsuspended: its devices may connect "
                                   "again",
           {{"account_id", resp.account_id()},
            {"suspended", resp.suspended()}});
  return kExitOk;
}

// --------------------------------------------------------- lawful access

int CheckExportArgs(const Env& env, const ExportArgs& args,
                    v1::ExportConversationRequest* req) {
  if (std::string p = CheckId(args.conversation_id); !p.empty()) {
    return Bad(env, "--conversation", p);
  }
  if (std::string p = CheckText(args.case_reference, kMaxCaseReference);
      !p.empty()) {
    return Bad(env, "--case", p);
  }
  int64_t from_ms = 0, to_ms = 0;
  auto parse_time = [&](std::string_view flag, const std::string& text,
                        int64_t* ms) {
    if (text.empty()) return kExitOk;
    std::string why;
    const std::optional<int64_t> t = ParseTimeArg(text, &why);
    if (!t) {
      return env.Usage(std::string(flag) + ": invalid time \"" + text +
                       "\": " + why + " (" + std::string(kTimeArgHint) + ")");
    }
    *ms = *t;
    return kExitOk;
  };
  if (int rc = parse_time("--from", args.from, &from_ms); rc != kExitOk) {
    return rc;
  }
  if (int rc = parse_time("--to", args.to, &to_ms); rc != kExitOk) return rc;
  if (to_ms != 0 && from_ms > to_ms) {
    return env.Usage("--from (" + FormatTime(from_ms) +
                     ") is later than --to (" + FormatTime(to_ms) + ")");
  }
  req->set_conversation_id(args.conversation_id);
  req->set_case_reference(args.case_reference);
  req->set_from_ms(from_ms);
  req->set_to_ms(to_ms);
  return kExitOk;
}

int AccessExport(const Env& env, const ExportArgs& args) {
  v1::ExportConversationRequest req;
  if (int rc = CheckExportArgs(env, args, &req); rc != kExitOk) return rc;

  // Create the output file first: a bad path must fail before the export,
  // which is an audited content access.
  int fd = -1;
  if (!args.out_file.empty()) {
    fd = ::open(args.out_file.c_str(),
                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      const int err = errno;
      return env.Usage(err == EEXIST ? "--out: " + args.out_file +
                                           " exists; refusing to overwrite it"
                                     : "--out: cannot create " +
                                           args.out_file + ": " +
                                           std::strerror(err));
    }
    ::fchmod(fd, 0600);  // whatever the umask
  }

  v1::ExportConversationResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->ExportConversation(&ctx, req, &resp);
      !s.ok()) {
    if (fd >= 0) {
      ::close(fd);
      ::unlink(args.out_file.c_str());
    }
    return env.RpcFail("ExportConversation", s);
  }

  const std::string what =
      "exported conversation " + Sanitize(args.conversation_id) +
      " for case \"" + Sanitize(args.case_reference) + "\": " +
      (resp.content_included()
           ? std::to_string(resp.message_count()) +
                 (resp.message_count() == 1 ? " message" : " messages") +
                 " with content"
           : std::string(kE2eeExport));
  nlohmann::json j = {{"conversation_id", args.conversation_id},
                      {"case_reference", args.case_reference},
                      {"from_ms", req.from_ms()},
                      {"to_ms", req.to_ms()},
                      {"content_included", resp.content_included()},
                      {"message_count", resp.message_count()},
                      {"note", resp.note()}};
  if (!resp.content_included()) j["warning"] = kE2eeExport;
  auto notes = [&] {
    if (env.json()) return;
    if (!resp.note().empty()) {
      env.err() << "parleyctl: note: " << Sanitize(resp.note()) << "\n";
    }
    if (!resp.content_included()) {
      env.err() << "parleyctl: " << kE2eeExport << "\n";
    }
    env.err().flush();
  };

  if (fd >= 0) {
    std::string data = resp.export_json();
    if (data.empty() || data.back() != '\n') data += '\n';
    const bool ok = WriteAll(fd, data) && ::fsync(fd) == 0;
    const int err = errno;
    if (::close(fd) != 0 || !ok) {
      ::unlink(args.out_file.c_str());
      return env.Error(kExitFailed, "INTERNAL",
                       what + ", but writing " + args.out_file + " failed (" +
                           std::strerror(err) +
                           "); the export is in the audit log: run it again");
    }
    notes();
    j["out_file"] = args.out_file;
    env.Emit(what + "\nwritten to " + args.out_file + " (mode 0600)", j);
    return kExitOk;
  }
  if (env.json()) {
    j["export"] = EmbeddedJson(resp.export_json());
    env.Emit("", j);
    return kExitOk;
  }
  notes();
  env.err() << "parleyctl: " << what << std::endl;
  env.out() << resp.export_json();
  if (resp.export_json().empty() || resp.export_json().back() != '\n') {
    env.out() << '\n';
  }
  env.out().flush();
  return kExitOk;
}

// ------------------------------------------------------------- retention

int RetentionStatus(const Env& env) {
  v1::GetRetentionStatusResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->GetRetentionStatus(&ctx, {}, &resp);
      !s.ok()) {
    return env.RpcFail("GetRetentionStatus", s);
  }
  env.Emit(FormatRetentionStatus(resp), RetentionStatusJson(resp));
  return kExitOk;
}

// ----------------------------------------------------------------- stats

int ServerStats(const Env& env) {
  v1::GetServerStatsResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->GetServerStats(&ctx, {}, &resp); !s.ok()) {
    return env.RpcFail("GetServerStats", s);
  }
  env.Emit(FormatServerStats(resp), ServerStatsJson(resp));
  return ServerStatsExitCode(resp);
}

int RetentionRun(const Env& env) {
  v1::RunRetentionResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->RunRetention(&ctx, {}, &resp); !s.ok()) {
    return env.RpcFail("RunRetention", s);
  }
  const v1::RetentionRun& run = resp.run();
  env.Emit(std::string(run.error().empty() ? "retention run finished"
                                           : "retention run FAILED") +
               ":\n" + FormatRetentionRun(run, "  "),
           {{"run", RetentionRunJson(run)}});
  return RetentionRunExitCode(run);
}

}  // namespace parley::ctl
