// Test helper: run real binaries (parleyd, parley) as subprocesses.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Every wait is bounded; a Process that is still running when destroyed is
// killed (SIGKILL) and reaped.
#ifndef PARLEY_TESTS_SUPPORT_SUBPROCESS_H_
#define PARLEY_TESTS_SUPPORT_SUBPROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace parley::testing {

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Process {
 public:
  // Starts argv[0] with stdout and stderr redirected to files.
  Process(const std::vector<std::string>& argv, const std::string& out_path, const std::string& err_path,
          const std::vector<std::string>& extra_env = {}) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<std::string> env_store;
    for (char** e = environ; *e != nullptr; ++e) env_store.push_back(*e);
    for (const auto& e : extra_env) env_store.push_back(e);
    std::vector<char*> env;
    for (auto& e : env_store) env.push_back(e.data());
    env.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0].c_str(), &fa, nullptr, args.data(), env.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Process() {
    if (running()) Kill(SIGKILL);
  }
  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !exited_; }
  void Kill(int sig) {
    if (!running()) return;
    ::kill(pid_, sig);
    if (sig == SIGKILL) Wait(std::chrono::seconds(30));
  }
  // Waits for exit; returns the exit code, 128+signal, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!exited_) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return code_;
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
};

// Runs a command to completion (bounded); returns exit code and output.
struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

inline RunResult Run(const std::vector<std::string>& argv, const std::string& scratch_dir,
                     const std::vector<std::string>& extra_env = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  static int counter = 0;
  std::string base = scratch_dir + "/run" + std::to_string(++counter);
  Process p(argv, base + ".out", base + ".err", extra_env);
  RunResult r;
  if (!p.started()) return r;
  r.code = p.Wait(timeout);
  if (r.code == -1) p.Kill(SIGKILL);
  r.out = Slurp(base + ".out");
  r.err = Slurp(base + ".err");
  return r;
}

// Starts parleyd on 127.0.0.1 port 0 (admin service too) and waits (bounded)
// for its port file.
class Parleyd {
 public:
  Parleyd(const std::string& binary, const std::string& data_dir, const std::string& log_dir,
          std::vector<std::string> extra_args = {}) {
    port_file_ = log_dir + "/port";
    ::unlink(port_file_.c_str());
    admin_port_file_ = log_dir + "/admin-port";
    ::unlink(admin_port_file_.c_str());
    // A "--listen HOST:PORT" in extra_args (e.g. to restart on the same
    // port) replaces the default 127.0.0.1:0.
    const bool has_listen = std::find(extra_args.begin(), extra_args.end(), "--listen") != extra_args.end();
    std::vector<std::string> argv = {binary, "--data-dir", data_dir};
    if (!has_listen) argv.insert(argv.end(), {"--listen", "127.0.0.1:0"});
    argv.insert(argv.end(), {"--port-file", port_file_, "--admin-listen", "127.0.0.1:0", "--admin-port-file",
                             admin_port_file_});
    data_dir_ = data_dir;
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    static int n = 0;
    ++n;
    out_ = log_dir + "/parleyd" + std::to_string(n) + ".out";
    err_ = log_dir + "/parleyd" + std::to_string(n) + ".log";
    proc_ = std::make_unique<Process>(argv, out_, err_);
    for (int i = 0; i < 1500 && proc_->running(); ++i) {  // at most 15 s
      std::string p = Slurp(port_file_);
      if (!p.empty() && p.back() == '\n') {
        port_ = std::stoi(p);
        std::string a = Slurp(admin_port_file_);  // written before the port file
        if (!a.empty()) admin_port_ = std::stoi(a);
        break;
      }
      if (proc_->Wait(std::chrono::milliseconds(10)) != -1) break;
    }
  }
  int port() const { return port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  int admin_port() const { return admin_port_; }
  std::string admin_target() const { return "127.0.0.1:" + std::to_string(admin_port_); }
  std::string ca_file() const { return data_dir_ + "/tls/ca.pem"; }
  std::string operator_token_file() const { return data_dir_ + "/admin/operator.token"; }
  Process& process() { return *proc_; }
  std::string log() const { return Slurp(err_); }
  std::string out() const { return Slurp(out_); }

 private:
  std::string port_file_, admin_port_file_, data_dir_, out_, err_;
  std::unique_ptr<Process> proc_;
  int port_ = 0;
  int admin_port_ = 0;
};

}  // namespace parley::testing

#endif  // PARLEY_TESTS_SUPPORT_SUBPROCESS_H_
