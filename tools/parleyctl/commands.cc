// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/parleyctl/commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <ostream>
#include <utility>
#include <vector>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "policy/policy.h"
#include "tools/parleyctl/diff.h"
#include "tools/parleyctl/format.h"

namespace parley::ctl {
namespace {

constexpr std::string_view kWhitespace = " \t\r\n\f\v";

std::string_view Trim(std::string_view s) {
  const size_t begin = s.find_first_not_of(kWhitespace);
  if (begin == std::string_view::npos) return {};
  const size_t end = s.find_last_not_of(kWhitespace);
  return s.substr(begin, end - begin + 1);
}

absl::Status ErrnoStatus(int err, const std::string& message) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InvalidArgumentError(message);
  }
}

std::vector<std::string> Strings(const std::vector<std::string_view>& views) {
  return {views.begin(), views.end()};
}

std::vector<std::string> ErrorLines(std::string_view message) {
  std::vector<std::string> lines;
  for (std::string_view line : SplitLines(message)) {
    line = Trim(line);
    if (!line.empty()) lines.emplace_back(line);
  }
  return lines;
}

// A locally validated candidate policy document.
struct Candidate {
  std::string content;
  policy::Policy policy;
};

// Reads and parses `file`; reports (exit 2) and returns nullopt on failure.
std::optional<Candidate> LoadCandidate(const Env& env, const std::string& file,
                                       int* rc) {
  absl::StatusOr<std::string> content = ReadFile(file, "policy file");
  if (!content.ok()) {
    *rc = env.Fail(content.status(), kExitUsage);
    return std::nullopt;
  }
  absl::StatusOr<policy::Policy> parsed =
      policy::ParsePolicy(*content, file, "local");
  if (!parsed.ok()) {
    const std::string message(parsed.status().message());
    const std::vector<std::string> errors = ErrorLines(message);
    const std::string summary = file + ": invalid policy (" +
                                std::to_string(errors.size()) +
                                (errors.size() == 1 ? " error)" : " errors)");
    if (env.json()) {
      env.out() << JsonText(
                       {{"file", file},
                        {"valid", false},
                        {"errors", errors},
                        {"error",
                         {{"code", "INVALID_ARGUMENT"}, {"message", message}}}})
                << std::endl;
    } else {
      for (const std::string& e : errors) env.err() << Sanitize(e) << "\n";
      env.err() << "parleyctl: " << Sanitize(summary) << " [INVALID_ARGUMENT]"
                << std::endl;
    }
    *rc = kExitUsage;
    return std::nullopt;
  }
  return Candidate{*std::move(content), *std::move(parsed)};
}

std::string RuleList(const std::vector<std::string>& ids) {
  std::string out;
  for (const std::string& id : ids) out += (out.empty() ? "" : ", ") + id;
  return out;
}

int RequireComment(const Env& env, const std::string& comment) {
  if (Trim(comment).empty()) {
    return env.Usage("a comment is required: -m \"why this change\"");
  }
  return kExitOk;
}

// Human output of ApplyPolicy / RollbackPolicy.
std::string ApplyText(const std::string& headline,
                      const v1::ApplyPolicyResponse& r) {
  const uint64_t n = r.conversations_changed();
  std::string out = headline + "\n";
  if (n == 0) {
    out += "no conversation changed\n\n";
  } else {
    out += std::to_string(n) + (n == 1 ? " conversation" : " conversations") +
           " changed (epoch + 1 and a security event to every member "
           "device)\n\n";
  }
  return out + FormatPlan(r.result());
}

nlohmann::json ApplyJson(const v1::ApplyPolicyResponse& r) {
  return {{"revision", RevisionJson(r.revision())},
          {"conversations_changed", r.conversations_changed()},
          {"result", PlanJson(r.result())}};
}

}  // namespace

// ------------------------------------------------------------------- Env

void Env::SetStub(std::unique_ptr<v1::AdminService::StubInterface> stub,
                  std::string server, std::string token, double timeout_s) {
  stub_ = std::move(stub);
  server_ = std::move(server);
  token_ = std::move(token);
  timeout_s_ = timeout_s;
}

void Env::Prepare(grpc::ClientContext* context) const {
  context->AddMetadata("authorization", "Bearer " + token_);
  if (timeout_s_ > 0) {
    context->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::milliseconds(std::llround(timeout_s_ * 1000)));
  }
}

void Env::Emit(std::string_view human, const nlohmann::json& json) const {
  if (json_) {
    *out_ << JsonText(json) << std::endl;
  } else {
    *out_ << human;
    if (human.empty() || human.back() != '\n') *out_ << '\n';
    out_->flush();
  }
}

int Env::Error(int exit_code, std::string_view code,
               std::string_view message) const {
  if (json_) {
    *out_ << JsonText({{"error", {{"code", code}, {"message", message}}}})
          << std::endl;
  } else {
    *err_ << "parleyctl: " << Sanitize(message, /*multiline=*/true) << " ["
          << code << "]" << std::endl;
  }
  return exit_code;
}

int Env::Usage(std::string_view message) const {
  return Error(kExitUsage, "INVALID_ARGUMENT", message);
}

int Env::Fail(const absl::Status& status, int exit_code) const {
  return Error(exit_code, absl::StatusCodeToString(status.code()),
               std::string(status.message()));
}

int Env::RpcFail(std::string_view rpc, const grpc::Status& status) const {
  std::string message(rpc);
  message += ": ";
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      message = "cannot reach parleyd admin at " + server_ + ": " +
                status.error_message();
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED: {
      char secs[32];
      std::snprintf(secs, sizeof secs, "%g", timeout_s_);
      message += "no answer from parleyd admin at " + server_ + " within " +
                 secs + " s (see --timeout)";
      if (rpc == "ApplyPolicy" || rpc == "RollbackPolicy") {
        message +=
            "; the change may still complete: check `parleyctl policy "
            "history`";
      }
      break;
    }
    case grpc::StatusCode::UNAUTHENTICATED:
      message += status.error_message() +
                 " (check --token-file / PARLEYCTL_TOKEN_FILE)";
      break;
    default:
      message += status.error_message();
  }
  return Error(ExitCodeFor(status.error_code()),
               StatusCodeName(status.error_code()), message);
}

// ----------------------------------------------------------------- files

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     std::string_view what) {
  const std::string prefix = "cannot read " + std::string(what) + " " + path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return ErrnoStatus(err, prefix + ": " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(prefix + ": is a directory");
  }
  std::string content;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, prefix + ": " + std::strerror(err));
    }
    content.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return content;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> content = ReadFile(path, "admin token file");
  if (!content.ok()) {
    return absl::Status(content.status().code(),
                        std::string(content.status().message()) +
                            " (set --token-file or PARLEYCTL_TOKEN_FILE)");
  }
  const std::string_view token = Trim(*content);
  if (token.empty()) {
    return absl::InvalidArgumentError("admin token file " + path + " is empty");
  }
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "admin token file " + path +
          " does not hold a single token (only printable ASCII without "
          "spaces is allowed)");
    }
  }
  return std::string(token);
}

int Connect(const GlobalOptions& options, Env* env) {
  const std::string& server = options.server;
  const size_t colon = server.rfind(':');
  const std::string port =
      colon == std::string::npos ? "" : server.substr(colon + 1);
  if (colon == 0 || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535) {
    return env->Usage("invalid --server \"" + server +
                      "\" (expected HOST:PORT, e.g. 127.0.0.1:7444)");
  }
  if (!(options.timeout_s >= 0)) return env->Usage("--timeout must be >= 0");
  absl::StatusOr<std::string> ca = ReadFile(options.ca, "CA file");
  if (!ca.ok()) {
    return env->Fail(
        absl::Status(ca.status().code(), std::string(ca.status().message()) +
                                             " (pass --ca FILE; parleyd writes "
                                             "<data_dir>/tls/ca.pem)"),
        kExitUsage);
  }
  if (ca->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return env->Usage("CA file " + options.ca + " holds no PEM certificate");
  }
  absl::StatusOr<std::string> token = ReadTokenFile(options.token_file);
  if (!token.ok()) return env->Fail(token.status(), kExitUsage);

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = *ca;
  grpc::ChannelArguments args;
  args.SetUserAgentPrefix("parleyctl/0.1.0");
  auto channel =
      grpc::CreateCustomChannel(server, grpc::SslCredentials(ssl), args);
  env->SetStub(v1::AdminService::NewStub(channel), server, *std::move(token),
               options.timeout_s);
  return kExitOk;
}

// --------------------------------------------------------------- policy

int PolicyValidate(const Env& env, const std::string& file) {
  int rc = kExitOk;
  std::optional<Candidate> c = LoadCandidate(env, file, &rc);
  if (!c) return rc;
  const std::vector<std::string> ids = Strings(c->policy.rule_ids());
  env.Emit(file + ": valid (" + std::to_string(ids.size()) +
               " rules: " + RuleList(ids) + ")",
           {{"file", file},
            {"valid", true},
            {"name", std::string(c->policy.name())},
            {"rules", ids}});
  return kExitOk;
}

int PolicyShow(const Env& env, uint64_t number) {
  v1::GetPolicyRequest req;
  req.set_number(number);
  v1::GetPolicyResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->GetPolicy(&ctx, req, &resp); !s.ok()) {
    return env.RpcFail("GetPolicy", s);
  }
  const v1::PolicyRevision& r = resp.revision();
  std::string text = "revision  " + RevisionHeader(r) + "\n";
  if (!r.name().empty()) text += "name      " + Sanitize(r.name()) + "\n";
  text += "author    " + Sanitize(r.author()) + "\n";
  text += "time      " + FormatTime(r.created_at_ms()) + "\n";
  text += "comment   " + Sanitize(r.comment()) + "\n";
  text += "hash      " + Sanitize(r.content_hash()) + "\n---\n";
  text += Sanitize(resp.content(), /*multiline=*/true);
  env.Emit(text, {{"revision", RevisionJson(r)}, {"content", resp.content()}});
  return kExitOk;
}

int PolicyDiff(const Env& env, const std::string& file) {
  int rc = kExitOk;
  std::optional<Candidate> c = LoadCandidate(env, file, &rc);
  if (!c) return rc;
  v1::GetPolicyResponse cur;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->GetPolicy(&ctx, {}, &cur); !s.ok()) {
    return env.RpcFail("GetPolicy", s);
  }
  const std::string& rev = cur.revision().revision_id();
  const std::string diff =
      UnifiedDiff(cur.content(), c->content, "current (" + rev + ")", file);

  const std::vector<std::string> mine = Strings(c->policy.rule_ids());
  std::vector<std::string> theirs;
  absl::StatusOr<policy::Policy> current =
      policy::ParsePolicy(cur.content(), "current", rev);
  if (current.ok()) theirs = Strings(current->rule_ids());
  auto missing_from = [](const std::vector<std::string>& from,
                         const std::vector<std::string>& in) {
    std::vector<std::string> out;
    for (const std::string& id : from) {
      if (std::find(in.begin(), in.end(), id) == in.end()) out.push_back(id);
    }
    return out;
  };
  const std::vector<std::string> added = missing_from(mine, theirs);
  const std::vector<std::string> removed = missing_from(theirs, mine);
  // Relative order of the rules present in both.
  std::vector<std::string> common_mine, common_theirs;
  for (const std::string& id : mine) {
    if (std::find(theirs.begin(), theirs.end(), id) != theirs.end()) {
      common_mine.push_back(id);
    }
  }
  for (const std::string& id : theirs) {
    if (std::find(mine.begin(), mine.end(), id) != mine.end()) {
      common_theirs.push_back(id);
    }
  }
  const bool reordered = common_mine != common_theirs;

  std::string text;
  if (diff.empty()) {
    text = "no differences (" + file + " matches " + Sanitize(rev) + ")\n";
  } else {
    text = Sanitize(diff, /*multiline=*/true) + "\n";
    if (!current.ok()) {
      text +=
          "rules: the current revision does not parse locally; no rule "
          "summary\n";
    } else {
      if (!added.empty()) text += "rules added: " + RuleList(added) + "\n";
      if (!removed.empty())
        text += "rules removed: " + RuleList(removed) + "\n";
      if (reordered) text += "rule order changed\n";
      if (added.empty() && removed.empty() && !reordered) {
        text += "rules: same ids in the same order (" + RuleList(mine) + ")\n";
      }
    }
  }
  nlohmann::json j = {{"file", file},
                      {"current_revision", rev},
                      {"different", !diff.empty()},
                      {"diff", diff},
                      {"rules_added", added},
                      {"rules_removed", removed},
                      {"rule_order_changed", reordered}};
  if (!current.ok()) j["rules_added"] = j["rules_removed"] = nullptr;
  env.Emit(text, j);
  return kExitOk;
}

int PolicyPlan(const Env& env, const PlanArgs& args) {
  int rc = kExitOk;
  std::optional<Candidate> c = LoadCandidate(env, args.file, &rc);
  if (!c) return rc;
  v1::PlanPolicyRequest req;
  req.set_content(c->content);
  req.set_file_name(args.file);
  req.set_samples(args.samples);
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  const auto start = std::chrono::steady_clock::now();
  auto reader = env.stub()->PlanPolicy(&ctx, req);
  v1::PlanPolicyResponse resp;
  std::optional<v1::PolicyPlan> plan;
  bool drawn = false;
  while (reader->Read(&resp)) {
    if (resp.has_plan()) {
      plan = resp.plan();
    } else if (resp.has_progress() && env.progress() &&
               std::chrono::steady_clock::now() - start >
                   std::chrono::seconds(1)) {
      env.err() << "\rplanning "
                << ProgressLine(resp.progress().scanned(),
                                resp.progress().total_estimate())
                << "\033[K" << std::flush;
      drawn = true;
    }
  }
  const grpc::Status status = reader->Finish();
  if (drawn) env.err() << "\r\033[K" << std::flush;
  if (!status.ok()) return env.RpcFail("PlanPolicy", status);
  if (!plan) {
    return env.Error(kExitFailed, "INTERNAL",
                     "PlanPolicy: the stream ended without a plan");
  }
  env.Emit("plan for " + Sanitize(args.file) + " (candidate sha256 " +
               Sanitize(plan->candidate_hash()) + ")\n" + FormatPlan(*plan),
           {{"file", args.file}, {"plan", PlanJson(*plan)}});
  return kExitOk;
}

int PolicyApply(const Env& env, const ApplyArgs& args) {
  if (int rc = RequireComment(env, args.comment); rc != kExitOk) return rc;
  int rc = kExitOk;
  std::optional<Candidate> c = LoadCandidate(env, args.file, &rc);
  if (!c) return rc;
  v1::ApplyPolicyRequest req;
  req.set_content(c->content);
  req.set_file_name(args.file);
  req.set_comment(args.comment);
  v1::ApplyPolicyResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->ApplyPolicy(&ctx, req, &resp); !s.ok()) {
    return env.RpcFail("ApplyPolicy", s);
  }
  env.Emit(ApplyText("applied " + Sanitize(args.file) + " as " +
                         RevisionHeader(resp.revision()),
                     resp),
           ApplyJson(resp));
  return kExitOk;
}

int PolicyRollback(const Env& env, const RollbackArgs& args) {
  const std::optional<RevisionRef> ref = ParseRevisionRef(args.revision);
  if (!ref) {
    return env.Usage("invalid revision \"" + args.revision +
                     "\" (expected a number, rN or a revision id rN-HASH)");
  }
  if (int rc = RequireComment(env, args.comment); rc != kExitOk) return rc;
  if (!ref->hash_prefix.empty()) {
    // A full revision id: make sure it names the server's revision N.
    v1::GetPolicyRequest req;
    req.set_number(ref->number);
    v1::GetPolicyResponse target;
    grpc::ClientContext ctx;
    env.Prepare(&ctx);
    if (grpc::Status s = env.stub()->GetPolicy(&ctx, req, &target); !s.ok()) {
      return env.RpcFail("GetPolicy", s);
    }
    if (target.revision().content_hash().rfind(ref->hash_prefix, 0) != 0) {
      return env.Usage("revision " + args.revision +
                       " does not match the "
                       "server's revision " +
                       std::to_string(ref->number) + " (" +
                       target.revision().revision_id() + ")");
    }
  }
  v1::RollbackPolicyRequest req;
  req.set_number(ref->number);
  req.set_comment(args.comment);
  v1::ApplyPolicyResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->RollbackPolicy(&ctx, req, &resp); !s.ok()) {
    return env.RpcFail("RollbackPolicy", s);
  }
  env.Emit(ApplyText("rolled back to r" + std::to_string(ref->number) +
                         ": new revision " + RevisionHeader(resp.revision()),
                     resp),
           ApplyJson(resp));
  return kExitOk;
}

int PolicyHistory(const Env& env, uint32_t limit) {
  v1::ListPolicyRevisionsRequest req;
  req.set_limit(limit);
  v1::ListPolicyRevisionsResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->ListPolicyRevisions(&ctx, req, &resp);
      !s.ok()) {
    return env.RpcFail("ListPolicyRevisions", s);
  }
  nlohmann::json revisions = nlohmann::json::array();
  for (const v1::PolicyRevision& r : resp.revisions()) {
    revisions.push_back(RevisionJson(r));
  }
  env.Emit(FormatHistory(resp), {{"revisions", revisions}});
  return kExitOk;
}

int PolicyExplain(const Env& env, const ExplainArgs& args) {
  if (Trim(args.conversation_id).empty()) {
    return env.Usage("a conversation id is required");
  }
  v1::ExplainConversationRequest req;
  req.set_conversation_id(args.conversation_id);
  if (!args.policy_file.empty()) {
    int rc = kExitOk;
    std::optional<Candidate> c = LoadCandidate(env, args.policy_file, &rc);
    if (!c) return rc;
    req.set_content(c->content);
    req.set_file_name(args.policy_file);
  }
  v1::ExplainConversationResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->ExplainConversation(&ctx, req, &resp);
      !s.ok()) {
    return env.RpcFail("ExplainConversation", s);
  }
  std::string text = "conversation  " + Sanitize(resp.conversation_id()) +
                     " (" + KindName(resp.kind()) + ", " +
                     std::to_string(resp.member_count()) + " members)\n";
  text += "stored        " + DescribeState(resp.current()) + "\n";
  text += "decided       " + ModeName(resp.decided_mode()) + " (policy " +
          Sanitize(resp.policy_revision()) + ")\n";
  text += std::string("would change  ") + (resp.would_change() ? "yes" : "no") +
          "\n\n" + Sanitize(resp.explanation(), /*multiline=*/true);
  env.Emit(text, {{"conversation_id", resp.conversation_id()},
                  {"kind", KindName(resp.kind())},
                  {"member_count", resp.member_count()},
                  {"current", StateJson(resp.current())},
                  {"decided_mode", ModeName(resp.decided_mode())},
                  {"would_change", resp.would_change()},
                  {"policy_revision", resp.policy_revision()},
                  {"decision", EmbeddedJson(resp.decision_json())},
                  {"explanation", resp.explanation()}});
  return kExitOk;
}

// -------------------------------------------------------- conversations

int ConversationsList(const Env& env, const ListArgs& args) {
  v1::SecurityMode mode = v1::SECURITY_MODE_UNSPECIFIED;
  if (!args.mode.empty()) {
    const std::optional<v1::SecurityMode> m = ParseMode(args.mode);
    if (!m) {
      return env.Usage("unknown mode \"" + args.mode +
                       "\" (expected e2ee, opt-in or transport)");
    }
    mode = *m;
  }
  if (args.limit == 0) return env.Usage("--limit must be at least 1");
  std::vector<v1::ConversationSummary> all;
  std::string page_token;
  while (all.size() < args.limit) {
    v1::AdminListConversationsRequest req;
    req.set_mode(mode);
    req.set_page_token(page_token);
    req.set_limit(
        static_cast<uint32_t>(std::min<size_t>(args.limit - all.size(), 1000)));
    v1::AdminListConversationsResponse resp;
    grpc::ClientContext ctx;
    env.Prepare(&ctx);
    if (grpc::Status s = env.stub()->ListConversations(&ctx, req, &resp);
        !s.ok()) {
      return env.RpcFail("ListConversations", s);
    }
    for (const v1::ConversationSummary& c : resp.conversations()) {
      if (all.size() < args.limit) all.push_back(c);
    }
    // Stop at the end, and on a page that makes no progress.
    if (resp.next_page_token().empty() || resp.conversations().empty() ||
        resp.next_page_token() == page_token) {
      page_token.clear();
      break;
    }
    page_token = resp.next_page_token();
  }
  const bool more = !page_token.empty();

  Table t({"ID", "KIND", "MEMBERS", "MODE", "EPOCH", "RULE", "REVISION"});
  t.AlignRight(2);
  t.AlignRight(4);
  nlohmann::json list = nlohmann::json::array();
  for (const v1::ConversationSummary& c : all) {
    t.AddRow({c.conversation_id(), KindName(c.kind()),
              std::to_string(c.member_count()), ModeName(c.security().mode()),
              std::to_string(c.security().epoch()), c.security().rule_id(),
              c.security().policy_revision()});
    list.push_back(ConversationJson(c));
  }
  std::string text = all.empty() ? std::string() : t.Render();
  text += std::to_string(all.size()) + " conversations" +
          (more ? " (more exist: raise --limit)" : "") + "\n";
  env.Emit(text, {{"conversations", list}, {"more", more}});
  return kExitOk;
}

// ----------------------------------------------------------------- audit

int AuditTail(const Env& env, const AuditArgs& args) {
  v1::TailAuditRequest req;
  req.set_limit(args.count);
  req.set_after_seq(args.after_seq);
  v1::TailAuditResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->TailAudit(&ctx, req, &resp); !s.ok()) {
    return env.RpcFail("TailAudit", s);
  }
  Table t({"SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DETAILS"});
  t.AlignRight(0);
  nlohmann::json records = nlohmann::json::array();
  for (const v1::AuditRecord& r : resp.records()) {
    const nlohmann::json details = EmbeddedJson(r.details_json());
    t.AddRow({std::to_string(r.seq()), FormatTime(r.time_ms()), r.actor(),
              r.action(), r.target(),
              details.is_null()     ? ""
              : details.is_string() ? details.get<std::string>()
                                    : JsonText(details)});
    records.push_back(AuditJson(r));
  }
  env.Emit(t.rows() == 0 ? "no audit records\n" : t.Render(),
           {{"records", records}});
  return kExitOk;
}

// ---------------------------------------------------------------- tokens

int TokensCreate(const Env& env, const TokenCreateArgs& args) {
  const std::optional<v1::AdminRole> role = ParseRole(args.role);
  if (!role) {
    return env.Usage("unknown role \"" + args.role +
                     "\" (expected operator, auditor, moderator or "
                     "lawful_access)");
  }
  if (Trim(args.name).empty()) return env.Usage("--name must not be empty");
  // Create the secret file before the token exists, so that a bad path
  // fails without leaving a token nobody holds.
  int fd = -1;
  if (!args.out_file.empty()) {
    fd = ::open(args.out_file.c_str(),
                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      const int err = errno;
      return env.Usage(err == EEXIST
                           ? args.out_file + " exists; refusing to overwrite it"
                           : "cannot create " + args.out_file + ": " +
                                 std::strerror(err));
    }
    ::fchmod(fd, 0600);  // whatever the umask
  }
  auto discard = [&] {
    if (fd < 0) return;
    ::close(fd);
    ::unlink(args.out_file.c_str());
    fd = -1;
  };
  v1::CreateTokenRequest req;
  req.set_role(*role);
  req.set_name(args.name);
  v1::CreateTokenResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->CreateToken(&ctx, req, &resp); !s.ok()) {
    discard();
    return env.RpcFail("CreateToken", s);
  }
  const v1::AdminToken& tok = resp.token();
  const std::string what = "created token " + Sanitize(tok.token_id()) + " (" +
                           RoleName(tok.role()) + ", name \"" +
                           Sanitize(tok.name()) + "\")";
  if (fd >= 0) {
    const std::string data = resp.secret() + "\n";
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    const bool ok = done == data.size() && ::fsync(fd) == 0;
    const int err = errno;
    if (::close(fd) != 0 || !ok) {
      ::unlink(args.out_file.c_str());
      return env.Error(kExitFailed, "INTERNAL",
                       what + " but writing " + args.out_file + " failed (" +
                           std::strerror(err) +
                           "); revoke it: parleyctl tokens revoke " +
                           tok.token_id());
    }
    env.Emit(what + "; secret written to " + args.out_file + " (mode 0600)",
             {{"token", TokenJson(tok)}, {"secret_file", args.out_file}});
    return kExitOk;
  }
  if (!env.json()) {
    env.err() << "parleyctl: warning: the secret is shown only this once; "
                 "store it in a file with mode 0600 (or use --out FILE)"
              << std::endl;
  }
  env.Emit(what + "\nsecret: " + Sanitize(resp.secret()),
           {{"token", TokenJson(tok)}, {"secret", resp.secret()}});
  return kExitOk;
}

int TokensList(const Env& env) {
  v1::ListTokensResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->ListTokens(&ctx, {}, &resp); !s.ok()) {
    return env.RpcFail("ListTokens", s);
  }
  Table t({"TOKEN_ID", "ROLE", "NAME", "CREATED_BY", "CREATED", "STATUS"});
  nlohmann::json tokens = nlohmann::json::array();
  for (const v1::AdminToken& tok : resp.tokens()) {
    t.AddRow({tok.token_id(), RoleName(tok.role()), tok.name(),
              tok.created_by(), FormatTime(tok.created_at_ms()),
              tok.revoked() ? "revoked " + FormatTime(tok.revoked_at_ms())
                            : "active"});
    tokens.push_back(TokenJson(tok));
  }
  env.Emit(t.rows() == 0 ? "no admin tokens\n" : t.Render(),
           {{"tokens", tokens}});
  return kExitOk;
}

int TokensRevoke(const Env& env, const std::string& token_id) {
  if (Trim(token_id).empty()) return env.Usage("a token id is required");
  v1::RevokeTokenRequest req;
  req.set_token_id(token_id);
  v1::RevokeTokenResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->RevokeToken(&ctx, req, &resp); !s.ok()) {
    return env.RpcFail("RevokeToken", s);
  }
  env.Emit("revoked token " + Sanitize(resp.token().token_id()) + " (" +
               RoleName(resp.token().role()) + ", name \"" +
               Sanitize(resp.token().name()) + "\")",
           {{"token", TokenJson(resp.token())}});
  return kExitOk;
}

int WhoAmI(const Env& env) {
  v1::WhoAmIResponse resp;
  grpc::ClientContext ctx;
  env.Prepare(&ctx);
  if (grpc::Status s = env.stub()->WhoAmI(&ctx, {}, &resp); !s.ok()) {
    return env.RpcFail("WhoAmI", s);
  }
  const v1::AdminToken& tok = resp.token();
  env.Emit("token " + Sanitize(tok.token_id()) + ": " + Sanitize(tok.name()) +
               " (" + RoleName(tok.role()) + "), created by " +
               Sanitize(tok.created_by()) + " at " +
               FormatTime(tok.created_at_ms()),
           {{"token", TokenJson(tok)}});
  return kExitOk;
}

}  // namespace parley::ctl
