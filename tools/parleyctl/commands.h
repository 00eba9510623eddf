// SPDX-License-Identifier: GPL-3.0-or-later
//
// The parleyctl commands. Each takes an Env (the admin stub, the token, output
// streams) and its arguments and returns a process exit code (format.h).
// Results go to Env::out (human text, or exactly one JSON document with
// --json); errors to Env::err as "parleyctl: <message> [CODE]", or with
// --json as {"error":{"code":...,"message":...}} on Env::out. The admin token
// is sent as `authorization: Bearer <token>` metadata and never printed.
#ifndef PARLEY_TOOLS_PARLEYCTL_COMMANDS_H_
#define PARLEY_TOOLS_PARLEYCTL_COMMANDS_H_

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "nlohmann/json.hpp"
#include "parley/v1/admin.grpc.pb.h"

namespace parley::ctl {

struct GlobalOptions {
  std::string server = "127.0.0.1:7444";
  std::string ca = "./var/parley/tls/ca.pem";
  std::string token_file = "./var/parley/admin/operator.token";
  bool json = false;
  double timeout_s = 30;  // per RPC; 0: no deadline
};

class Env {
 public:
  Env(bool json, std::ostream* out, std::ostream* err)
      : json_(json), out_(out), err_(err) {}

  // Used by commands that talk to parleyd. `server` only names it in errors.
  void SetStub(std::unique_ptr<v1::AdminService::StubInterface> stub,
               std::string server, std::string token, double timeout_s);
  v1::AdminService::StubInterface* stub() const { return stub_.get(); }
  // Draw the `policy plan` progress bar on err (when it is a terminal).
  void set_progress(bool on) { progress_ = on; }
  bool progress() const { return progress_; }
  bool json() const { return json_; }
  std::ostream& out() const { return *out_; }
  std::ostream& err() const { return *err_; }

  // Adds the authorization metadata and the deadline.
  void Prepare(grpc::ClientContext* context) const;

  // Human text (as is) or the JSON document to out.
  void Emit(std::string_view human, const nlohmann::json& json) const;
  // Reports an error and returns `exit_code`.
  int Error(int exit_code, std::string_view code,
            std::string_view message) const;
  // INVALID_ARGUMENT, exit 2.
  int Usage(std::string_view message) const;
  // A local failure (absl status) with the given exit code.
  int Fail(const absl::Status& status, int exit_code) const;
  // A failed RPC: exit code by ExitCodeFor(); UNAVAILABLE is reported as
  // "cannot reach parleyd admin at H:P".
  int RpcFail(std::string_view rpc, const grpc::Status& status) const;

 private:
  bool json_;
  std::ostream* out_;
  std::ostream* err_;
  bool progress_ = false;
  std::unique_ptr<v1::AdminService::StubInterface> stub_;
  std::string server_;
  std::string token_;
  double timeout_s_ = 30;
};

// Reads a whole file. Errors name `what` and the path (NotFound,
// PermissionDenied, InvalidArgument for directories, ...).
absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     std::string_view what);
// The admin token: the file's content with surrounding whitespace trimmed.
// Missing/unreadable file, empty content or characters that cannot go into a
// header are errors (exit 2); the message never contains the token.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// Reads the CA and the token and sets up the TLS channel and stub in `env`.
// On failure reports and returns the exit code (2: bad option or file).
int Connect(const GlobalOptions& options, Env* env);

int PolicyValidate(const Env& env, const std::string& file);
int PolicyShow(const Env& env, uint64_t number);
int PolicyDiff(const Env& env, const std::string& file);

struct PlanArgs {
  std::string file;
  uint32_t samples = 0;  // 0: the server's default (3)
};
int PolicyPlan(const Env& env, const PlanArgs& args);

struct ApplyArgs {
  std::string file;
  std::string comment;
};
int PolicyApply(const Env& env, const ApplyArgs& args);

struct RollbackArgs {
  std::string revision;  // "3", "r3" or "r3-abcd1234"
  std::string comment;
};
int PolicyRollback(const Env& env, const RollbackArgs& args);

int PolicyHistory(const Env& env, uint32_t limit);

struct ExplainArgs {
  std::string conversation_id;
  std::string policy_file;  // empty: the current revision
};
int PolicyExplain(const Env& env, const ExplainArgs& args);

struct ListArgs {
  std::string mode;  // empty: every mode
  uint32_t limit = 100;
};
int ConversationsList(const Env& env, const ListArgs& args);

struct AuditArgs {
  uint32_t count = 20;
  uint64_t after_seq = 0;
};
int AuditTail(const Env& env, const AuditArgs& args);

struct TokenCreateArgs {
  std::string role;
  std::string name;
  std::string out_file;  // empty: print the secret
};
int TokensCreate(const Env& env, const TokenCreateArgs& args);
int TokensList(const Env& env);
int TokensRevoke(const Env& env, const std::string& token_id);
int WhoAmI(const Env& env);

// ---------------------------------------------------------------- safety
// (safety_commands.cc; rendering in safety_format.h)

// VerifyAudit: exit 0 when the chain is intact, 1 when it is broken (the
// result is printed to out either way), as for any failed RPC otherwise.
int AuditVerify(const Env& env);

struct ReportsListArgs {
  std::string status = "all";  // open, resolved or all
  uint32_t limit = 100;        // pages are followed up to this many reports
};
int ReportsList(const Env& env, const ReportsListArgs& args);
int ReportsShow(const Env& env, const std::string& report_id);

struct ReportsResolveArgs {
  std::string report_id;
  std::string action;  // dismiss, warn, suspend, remove-message
  std::string note;    // required: the reasoning (audit log)
};
int ReportsResolve(const Env& env, const ReportsResolveArgs& args);

struct AccountSuspendArgs {
  std::string account_id;
  bool suspended = true;
  std::string note;  // required
};
int AccountsSetSuspended(const Env& env, const AccountSuspendArgs& args);

struct ExportArgs {
  std::string conversation_id;
  std::string case_reference;
  std::string from;      // RFC 3339 or Unix ms; empty: from the beginning
  std::string to;        // empty: until now
  std::string out_file;  // empty: the export to out
};
// The local checks of `access export` (ids, case reference, --from/--to,
// from <= to): fills `req` and returns kExitOk, or reports a usage error
// naming the flag and returns kExitUsage. Needs no server.
int CheckExportArgs(const Env& env, const ExportArgs& args,
                    v1::ExportConversationRequest* req);
// Writes the export document to a new file (mode 0600, never overwritten,
// created before the request so that a bad path costs no audited access) or
// to out; the server's note and, for E2EE conversations, "end-to-end
// encrypted: metadata only, no message content" go to err.
int AccessExport(const Env& env, const ExportArgs& args);

int RetentionStatus(const Env& env);
// Exit 1 when the run reports an error.
int RetentionRun(const Env& env);

// The server's counters and gauges; exit 1 while its writes are stopped.
int ServerStats(const Env& env);

}  // namespace parley::ctl

#endif  // PARLEY_TOOLS_PARLEYCTL_COMMANDS_H_
