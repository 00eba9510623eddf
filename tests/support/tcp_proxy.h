// A loopback TCP proxy for tests that need a network that fails silently.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// TcpProxy listens on 127.0.0.1 (a free port) and forwards every connection
// to 127.0.0.1:<target>. DropExisting() turns every connection open so far
// into a black hole: what either side sends is read and thrown away, and
// neither side is told (no FIN, no RST), as when a phone's network goes away
// or a NAT entry expires. Connections opened afterwards are forwarded
// normally (the device found a new network). The proxy counts which side
// closed each connection, so a test can see who noticed the loss.
//
// Threading: one forwarding thread; every public method is thread-safe.
// The destructor stops the thread (within ~100 ms) and closes every socket.
// Sockets are non-blocking: a side that stops reading cannot stall the
// other connections.
#ifndef PARLEY_TESTS_SUPPORT_TCP_PROXY_H_
#define PARLEY_TESTS_SUPPORT_TCP_PROXY_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace parley::testing {

class TcpProxy {
 public:
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(int target_port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Errno("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd, 64) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      absl::Status s = Errno("bind/listen on 127.0.0.1:0");
      ::close(fd);
      return s;
    }
    return std::unique_ptr<TcpProxy>(
        new TcpProxy(fd, ntohs(a.sin_port), target_port));
  }

  ~TcpProxy() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
    for (Pair& p : pairs_) {
      ::close(p.fd[0]);
      ::close(p.fd[1]);
    }
  }
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }

  // Every connection accepted so far drops all traffic from now on.
  void DropExisting() {
    absl::MutexLock l(&mu_);
    drop_before_ = accepted_;
  }

  int accepted() const {
    absl::MutexLock l(&mu_);
    return accepted_;
  }
  // Connections closed (EOF or error) by the client side / by the target.
  int closed_by_client() const {
    absl::MutexLock l(&mu_);
    return closed_[0];
  }
  int closed_by_target() const {
    absl::MutexLock l(&mu_);
    return closed_[1];
  }

 private:
  // fd[0]: the client's connection; fd[1]: ours to the target. pending[i]:
  // bytes read from fd[i] not yet written to the other side.
  struct Pair {
    int index = 0;
    int fd[2] = {-1, -1};
    bool open[2] = {true, true};
    bool close_passed[2] = {false, false};
    std::string pending[2];
  };

  TcpProxy(int listen_fd, int port, int target_port)
      : listen_fd_(listen_fd), port_(port), target_port_(target_port) {
    thread_ = std::thread([this] { Run(); });
  }

  static absl::Status Errno(const char* what) {
    return absl::UnavailableError(
        absl::StrCat("tcp proxy: ", what, ": ", std::strerror(errno)));
  }

  int ConnectTarget() const {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
  }

  void Accept() {
    for (int n = 0; n < 64; ++n) {
      int c =
          ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;
      int t = ConnectTarget();
      if (t < 0) {
        ::close(c);
        continue;
      }
      Pair p;
      p.fd[0] = c;
      p.fd[1] = t;
      absl::MutexLock l(&mu_);
      p.index = accepted_++;
      pairs_.push_back(std::move(p));
    }
  }

  void Closed(Pair& p, int side) {
    if (!p.open[side]) return;
    p.open[side] = false;
    absl::MutexLock l(&mu_);
    ++closed_[side];
  }

  // Moves what side `from` sent towards the other side (or drops it).
  void Pump(Pair& p, int from, bool dropping) {
    char buf[16384];
    for (int n = 0; n < 16 && p.open[from]; ++n) {
      ssize_t r = ::read(p.fd[from], buf, sizeof buf);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                     errno != EINTR)) {
        Closed(p, from);
        // Forwarded connections pass the close on (once what was read
        // before it is written); dropped ones do not.
        if (!dropping) PassClose(p, from);
        return;
      }
      if (r < 0) return;
      if (!dropping) p.pending[from].append(buf, static_cast<size_t>(r));
    }
  }

  void Flush(Pair& p, int from) {
    std::string& out = p.pending[from];
    if (out.empty()) return;
    ssize_t w = ::send(p.fd[1 - from], out.data(), out.size(), MSG_NOSIGNAL);
    if (w > 0) {
      out.erase(0, static_cast<size_t>(w));
    } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
               errno != EINTR) {
      out.clear();  // the receiving side is gone: nothing can be delivered
    }
    PassClose(p, from);
  }

  // Half-closes the other side once `from` has closed and all it sent is
  // written.
  void PassClose(Pair& p, int from) {
    if (p.open[from] || !p.pending[from].empty() || p.close_passed[from]) {
      return;
    }
    p.close_passed[from] = true;
    ::shutdown(p.fd[1 - from], SHUT_WR);
  }

  void Run() {
    while (!stop_) {
      int drop_before;
      {
        absl::MutexLock l(&mu_);
        drop_before = drop_before_;
      }
      std::vector<pollfd> fds;
      fds.push_back({listen_fd_, POLLIN, 0});
      for (Pair& p : pairs_) {
        const bool dropping = p.index < drop_before;
        if (dropping) {
          p.pending[0].clear();
          p.pending[1].clear();
        }
        for (int side = 0; side < 2; ++side) {
          short ev = 0;
          // Read no more from a side while 1 MB of it waits to be written.
          if (p.open[side] && p.pending[side].size() < (1 << 20)) ev |= POLLIN;
          if (!p.pending[1 - side].empty()) ev |= POLLOUT;
          // A closed side with nothing to write is not polled (poll skips
          // negative fds), or its POLLHUP would wake the loop at once.
          fds.push_back({ev != 0 ? p.fd[side] : -1, ev, 0});
        }
      }
      if (::poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) return;
      if (fds[0].revents & POLLIN) Accept();
      // pairs_ may have grown in Accept; only the polled ones are looked at.
      for (size_t i = 0; i + 1 < fds.size(); i += 2) {
        Pair& p = pairs_[i / 2];
        const bool dropping = p.index < drop_before;
        for (int side = 0; side < 2; ++side) {
          const short re = fds[1 + i + side].revents;
          if (re & (POLLIN | POLLHUP | POLLERR)) Pump(p, side, dropping);
          if (!dropping && (re & POLLOUT)) Flush(p, 1 - side);
        }
      }
    }
  }

  const int listen_fd_;
  const int port_;
  const int target_port_;
  std::atomic<bool> stop_{false};
  std::vector<Pair> pairs_;  // only the forwarding thread touches these
  mutable absl::Mutex mu_;
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;
  int drop_before_ ABSL_GUARDED_BY(mu_) = 0;
  int closed_[2] ABSL_GUARDED_BY(mu_) = {0, 0};
  std::thread thread_;  // last: started once the fields above exist
};

}  // namespace parley::testing

#endif  // PARLEY_TESTS_SUPPORT_TCP_PROXY_H_
