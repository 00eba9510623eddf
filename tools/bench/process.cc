// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/process.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tools/bench/cpus.h"

namespace parley::bench {

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::vector<std::string>& argv, const std::string& port_file,
    const std::string& log_file, absl::Duration timeout,
    const std::vector<int>& cpus) {
  if (argv.empty()) return absl::InvalidArgumentError("no server binary");
  if (::access(argv[0].c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat(argv[0], ": not an executable (build it first)"));
  }
  ::unlink(port_file.c_str());
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  absl::StatusOr<cpu_set_t> cpu_set = ToCpuSet(cpus);
  if (!cpu_set.ok()) return cpu_set.status();
  const pid_t parent = ::getpid();
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  p->log_file_ = log_file;
  // Only async-signal-safe calls between fork and exec.
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in >= 0) ::dup2(in, 0);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    if (!cpus.empty() &&
        ::sched_setaffinity(0, sizeof(*cpu_set), &*cpu_set) != 0) {
      ::_exit(126);
    }
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  p->pid_ = pid;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::ifstream in(port_file);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    int port = 0;
    if (!text.empty() && text.back() == '\n' &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port) && port > 0) {
      p->port_ = port;
      return p;
    }
    if (!p->running()) {
      return absl::UnavailableError(
          absl::StrCat(argv[0], " exited with code ", p->exit_code_,
                       p->exit_code_ == 126 && !cpus.empty()
                           ? " (could not run on the CPUs asked for)"
                           : "",
                       " before serving; see ", log_file));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(argv[0], " did not write ", port_file, " within ",
                   absl::FormatDuration(timeout), "; see ", log_file));
}

bool ServerProcess::Reap() {
  if (exited_ || pid_ <= 0) return true;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    exited_ = true;
    exit_code_ =
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return exited_;
}

bool ServerProcess::running() { return !Reap(); }

absl::StatusOr<int> ServerProcess::Stop(absl::Duration grace) {
  if (running()) {
    ::kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + grace;
    while (running() && absl::Now() < deadline)
      absl::SleepFor(absl::Milliseconds(20));
    if (running()) {
      ::kill(pid_, SIGKILL);
      const absl::Time kill_deadline = absl::Now() + absl::Seconds(30);
      while (running() && absl::Now() < kill_deadline) {
        absl::SleepFor(absl::Milliseconds(10));
      }
      if (running())
        return absl::InternalError(absl::StrCat("pid ", pid_, " did not die"));
    }
  }
  return exit_code_;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && running()) {
    ::kill(pid_, SIGKILL);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (running() && absl::Now() < deadline)
      absl::SleepFor(absl::Milliseconds(10));
  }
}

}  // namespace parley::bench
