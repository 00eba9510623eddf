// SPDX-License-Identifier: GPL-3.0-or-later
//
// parleyctl: the operators' tool, a client of parleyd's admin API
// (api/parley/v1/admin.proto).
//
// parleyctl [--server H:P] [--ca FILE] [--token-file FILE] [--json]
//           [--timeout SEC] <command> ...
// Exit codes: 0 ok, 1 failed (server/RPC error or parleyd unreachable, policy
// refused, `audit verify` found the chain broken, `retention run` failed), 2
// invalid input (flags, arguments, files). CLI11 reports through exceptions;
// they are caught here.
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "tools/parleyctl/commands.h"
#include "tools/parleyctl/format.h"

namespace parley::ctl {
namespace {

bool WantsJson(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) return true;
  }
  return false;
}

int Run(int argc, char** argv) {
  CLI::App app{
      "Operators' tool for parleyd: the deployment's conversation security "
      "policy, conversations metadata, the audit log, admin tokens, "
      "moderation (reports, suspensions), lawful-access exports and "
      "retention.",
      "parleyctl"};
  app.fallthrough();
  app.require_subcommand(1);
  app.set_version_flag("--version", "parleyctl 0.1.0");

  GlobalOptions g;
  app.add_option("--server", g.server, "parleyd admin listener HOST:PORT")
      ->capture_default_str();
  app.add_option("--ca", g.ca, "PEM CA certificate of parleyd's TLS")
      ->capture_default_str();
  app.add_option("--token-file", g.token_file,
                 "file holding the admin token secret")
      ->envname("PARLEYCTL_TOKEN_FILE")
      ->capture_default_str();
  app.add_flag("--json", g.json, "machine output: one JSON document on stdout");
  app.add_option("--timeout", g.timeout_s, "seconds per RPC (0: no limit)")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();

  // policy ...
  CLI::App* policy = app.add_subcommand("policy", "the deployment policy");
  policy->require_subcommand(1);

  std::string validate_file;
  CLI::App* validate = policy->add_subcommand(
      "validate", "check a policy document locally (no server needed)");
  validate->add_option("file", validate_file, "policy YAML")->required();

  uint64_t show_number = 0;
  CLI::App* show = policy->add_subcommand("show", "print a policy revision");
  show->add_option("--revision", show_number,
                   "revision number (default: the current one)");

  std::string diff_file;
  CLI::App* diff = policy->add_subcommand(
      "diff", "compare the current policy with a document");
  diff->add_option("file", diff_file, "policy YAML")->required();

  PlanArgs plan_args;
  CLI::App* plan = policy->add_subcommand(
      "plan", "what a document would change, without applying it");
  plan->add_option("file", plan_args.file, "policy YAML")->required();
  plan->add_option("--samples", plan_args.samples,
                   "sample conversation ids per row (default 3, max 20)")
      ->check(CLI::Range(0, 20));

  ApplyArgs apply_args;
  CLI::App* apply =
      policy->add_subcommand("apply", "make a document the deployment policy");
  apply->add_option("file", apply_args.file, "policy YAML")->required();
  apply->add_option("-m,--message", apply_args.comment, "why (required)")
      ->required();

  RollbackArgs rollback_args;
  CLI::App* rollback = policy->add_subcommand(
      "rollback", "restore the content of an earlier revision");
  rollback
      ->add_option("revision", rollback_args.revision,
                   "revision number or id (3, r3, r3-abcd1234)")
      ->required();
  rollback->add_option("-m,--message", rollback_args.comment, "why (required)")
      ->required();

  uint32_t history_limit = 0;
  CLI::App* history =
      policy->add_subcommand("history", "list policy revisions, newest first");
  history->add_option("--limit", history_limit, "at most N (default 50)")
      ->check(CLI::Range(1, 500));

  ExplainArgs explain_args;
  CLI::App* explain = policy->add_subcommand(
      "explain", "why a conversation has (or would get) its mode");
  explain
      ->add_option("conversation", explain_args.conversation_id,
                   "conversation id")
      ->required();
  explain->add_option("--policy", explain_args.policy_file,
                      "evaluate this document instead of the current policy");

  // conversations list
  CLI::App* conversations =
      app.add_subcommand("conversations", "stored conversations (metadata)");
  conversations->require_subcommand(1);
  ListArgs list_args;
  CLI::App* list = conversations->add_subcommand(
      "list", "list conversations with their security state");
  list->add_option("--mode", list_args.mode, "e2ee, opt-in or transport");
  list->add_option("--limit", list_args.limit, "at most N (default 100)")
      ->check(CLI::Range(1, 1000000));

  // audit tail
  CLI::App* audit = app.add_subcommand("audit", "the audit log");
  audit->require_subcommand(1);
  AuditArgs audit_args;
  CLI::App* tail = audit->add_subcommand("tail", "the newest audit records");
  tail->add_option("-n,--count", audit_args.count, "records (default 20)")
      ->check(CLI::Range(1, 1000));
  tail->add_option("--after", audit_args.after_seq,
                   "records after sequence number SEQ");
  CLI::App* verify = audit->add_subcommand(
      "verify",
      "recompute the hash chain (exit 1 if a record was changed, removed or "
      "reordered)");

  // reports list|show|resolve
  CLI::App* reports =
      app.add_subcommand("reports", "reported messages (moderation)");
  reports->require_subcommand(1);
  ReportsListArgs reports_list_args;
  CLI::App* reports_list =
      reports->add_subcommand("list", "list reports, oldest first");
  reports_list
      ->add_option("--status", reports_list_args.status,
                   "open, resolved or all")
      ->capture_default_str();
  reports_list
      ->add_option("--limit", reports_list_args.limit,
                   "at most N (default 100)")
      ->check(CLI::Range(1, 1000000));
  std::string show_report_id;
  CLI::App* reports_show = reports->add_subcommand(
      "show", "a report with the reported message (an audited content access)");
  reports_show->add_option("report_id", show_report_id, "report id (rep-N)")
      ->required();
  ReportsResolveArgs resolve_args;
  CLI::App* reports_resolve =
      reports->add_subcommand("resolve", "decide a report");
  reports_resolve
      ->add_option("report_id", resolve_args.report_id, "report id (rep-N)")
      ->required();
  reports_resolve
      ->add_option("--action", resolve_args.action,
                   "dismiss, warn, suspend or remove-message")
      ->required();
  reports_resolve
      ->add_option("--note", resolve_args.note,
                   "why (required; kept in the audit log)")
      ->required();

  // accounts suspend|unsuspend
  CLI::App* accounts = app.add_subcommand("accounts", "user accounts");
  accounts->require_subcommand(1);
  AccountSuspendArgs suspend_args;
  CLI::App* suspend = accounts->add_subcommand(
      "suspend", "refuse every call of an account's devices");
  suspend->add_option("account_id", suspend_args.account_id, "account id")
      ->required();
  suspend
      ->add_option("--note", suspend_args.note,
                   "why (required; kept in the audit log)")
      ->required();
  AccountSuspendArgs unsuspend_args;
  unsuspend_args.suspended = false;
  CLI::App* unsuspend =
      accounts->add_subcommand("unsuspend", "lift an account's suspension");
  unsuspend->add_option("account_id", unsuspend_args.account_id, "account id")
      ->required();
  unsuspend
      ->add_option("--note", unsuspend_args.note,
                   "why (required; kept in the audit log)")
      ->required();

  // access export
  CLI::App* access =
      app.add_subcommand("access", "lawful access (lawful_access role)");
  access->require_subcommand(1);
  ExportArgs export_args;
  CLI::App* export_cmd = access->add_subcommand(
      "export",
      "export a conversation's readable history for a legal case (audited; "
      "E2EE conversations: metadata only)");
  export_cmd
      ->add_option("--conversation", export_args.conversation_id,
                   "conversation id")
      ->required();
  export_cmd
      ->add_option("--case", export_args.case_reference,
                   "case reference (1-128 characters)")
      ->required();
  export_cmd->add_option("--from", export_args.from,
                         "from time T: RFC 3339 UTC (2026-11-27T10:00:00Z) or "
                         "Unix ms (default: the beginning)");
  export_cmd->add_option("--to", export_args.to,
                         "until time T, same forms (default: now)");
  export_cmd->add_option(
      "--out", export_args.out_file,
      "write the export to this new file (mode 0600) instead of stdout");

  // retention status|run
  CLI::App* retention =
      app.add_subcommand("retention", "the retention task (history, queues)");
  retention->require_subcommand(1);
  CLI::App* retention_status = retention->add_subcommand(
      "status", "the last run, totals and settings");
  CLI::App* retention_run = retention->add_subcommand(
      "run", "run the retention task now (exit 1 if it fails)");

  CLI::App* stats = app.add_subcommand(
      "stats",
      "the server's counters and gauges: messages, streams, group commit, "
      "storage (operator; exit 1 while its writes are stopped)");

  // tokens create|list|revoke
  CLI::App* tokens = app.add_subcommand("tokens", "admin tokens");
  tokens->require_subcommand(1);
  TokenCreateArgs create_args;
  CLI::App* create = tokens->add_subcommand("create", "create an admin token");
  create
      ->add_option("--role", create_args.role,
                   "operator, auditor, moderator or lawful_access")
      ->required();
  create->add_option("--name", create_args.name, "unique name")->required();
  create->add_option("--out", create_args.out_file,
                     "write the secret to this new file (mode 0600)");
  CLI::App* tokens_list = tokens->add_subcommand("list", "list admin tokens");
  std::string revoke_id;
  CLI::App* revoke = tokens->add_subcommand("revoke", "revoke an admin token");
  revoke->add_option("token_id", revoke_id, "token id")->required();

  CLI::App* whoami = app.add_subcommand("whoami", "the token in use");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e) == 0 ? kExitOk : kExitUsage;
    Env env(WantsJson(argc, argv), &std::cout, &std::cerr);
    return env.Usage(std::string(e.what()) + " (see --help)");
  }

  Env env(g.json, &std::cout, &std::cerr);
  if (*validate) return PolicyValidate(env, validate_file);

  if (*export_cmd) {  // check the arguments before reading CA and token
    v1::ExportConversationRequest req;
    if (int rc = CheckExportArgs(env, export_args, &req); rc != kExitOk) {
      return rc;
    }
  }

  if (int rc = Connect(g, &env); rc != kExitOk) return rc;
  env.set_progress(::isatty(STDERR_FILENO) == 1);
  if (*show) return PolicyShow(env, show_number);
  if (*diff) return PolicyDiff(env, diff_file);
  if (*plan) return PolicyPlan(env, plan_args);
  if (*apply) return PolicyApply(env, apply_args);
  if (*rollback) return PolicyRollback(env, rollback_args);
  if (*history) return PolicyHistory(env, history_limit);
  if (*explain) return PolicyExplain(env, explain_args);
  if (*list) return ConversationsList(env, list_args);
  if (*tail) return AuditTail(env, audit_args);
  if (*verify) return AuditVerify(env);
  if (*reports_list) return ReportsList(env, reports_list_args);
  if (*reports_show) return ReportsShow(env, show_report_id);
  if (*reports_resolve) return ReportsResolve(env, resolve_args);
  if (*suspend) return AccountsSetSuspended(env, suspend_args);
  if (*unsuspend) return AccountsSetSuspended(env, unsuspend_args);
  if (*export_cmd) return AccessExport(env, export_args);
  if (*retention_status) return RetentionStatus(env);
  if (*retention_run) return RetentionRun(env);
  if (*stats) return ServerStats(env);
  if (*create) return TokensCreate(env, create_args);
  if (*tokens_list) return TokensList(env);
  if (*revoke) return TokensRevoke(env, revoke_id);
  if (*whoami) return WhoAmI(env);
  return env.Usage("no command given (see --help)");
}

}  // namespace
}  // namespace parley::ctl

int main(int argc, char** argv) {
  try {
    return parley::ctl::Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "parleyctl: internal error: " << e.what() << std::endl;
    return parley::ctl::kExitFailed;
  }
}
