// Connection liveness: a real parleyd (TLS) and SDK clients, with a loopback
// TCP proxy between bob and the server that can make the connection go
// silent (TcpProxy::DropExisting: both directions dropped, no FIN, no RST),
// as when a phone's network goes away.
// - The SDK's keepalive notices the loss, its Receive stream reconnects
//   and the message sent meanwhile arrives; without keepalive it does not.
// - parleyd's keepalive closes a connection that stops answering.
// - Client pings at the interval parleyd allows do not get the connection
//   closed; pinging more often does (GOAWAY too_many_pings).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/client.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"
#include "tests/support/tcp_proxy.h"

namespace parley {
namespace {

using testing::Parleyd;
using testing::TcpProxy;

class KeepaliveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_keepalive_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    stream_.reset();
    alice_.reset();
    bob_.reset();
    proxy_.reset();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // parleyd with `args`; alice straight to it; bob through the proxy (or
  // straight, without one) with the given keepalive time (0: off).
  void Start(std::vector<std::string> args, bool proxy, absl::Duration bob_keepalive) {
    server_ = std::make_unique<Parleyd>(PARLEYD_BIN, dir_ + "/data", dir_, args);
    ASSERT_GT(server_->port(), 0) << server_->log();
    int bob_port = server_->port();
    if (proxy) {
      auto p = TcpProxy::Start(server_->port());
      ASSERT_TRUE(p.ok()) << p.status();
      proxy_ = *std::move(p);
      bob_port = proxy_->port();
    }
    alice_ = NewClient("alice", server_->port(), absl::Seconds(30));
    bob_ = NewClient("bob", bob_port, bob_keepalive);
    ASSERT_TRUE(alice_ && bob_);
    ASSERT_TRUE(alice_->Register("alice", "", {}, "phone").ok());
    ASSERT_TRUE(bob_->Register("bob", "", {}, "phone").ok());
    auto direct = alice_->CreateDirect("bob");
    ASSERT_TRUE(direct.ok()) << direct.status();
    conv_ = direct->conversation.conversation_id();

    ReceiveOptions ro;
    ro.max_reconnect_attempts = 100;  // bounded by the tests' deadlines
    ro.initial_backoff = absl::Milliseconds(50);
    ro.max_backoff = absl::Milliseconds(500);
    ro.on_reconnect = [this](const absl::Status& cause, int, absl::Duration) {
      ++reconnects_;
      last_cause_ = std::string(cause.message());
    };
    auto stream = bob_->Receive(ro);
    ASSERT_TRUE(stream.ok()) << stream.status();
    stream_ = *std::move(stream);
  }

  std::unique_ptr<Client> NewClient(const std::string& name, int port, absl::Duration keepalive) {
    Profile p;
    p.dir = dir_ + "/sdk/" + name;
    ConnectOptions o;
    o.server = absl::StrCat("127.0.0.1:", port);
    o.ca_file = dir_ + "/data/tls/ca.pem";
    o.deadline = absl::Seconds(5);
    o.keepalive_time = keepalive;
    o.keepalive_timeout = absl::Seconds(1);
    auto c = Client::Create(p, o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // alice sends `text`; true once bob's stream shows it within `within`.
  bool SendAndAwait(const std::string& text, absl::Duration within) {
    auto sent = alice_->Send(conv_, text);
    EXPECT_TRUE(sent.ok()) << sent.status();
    if (!sent.ok()) return false;
    const absl::Time deadline = absl::Now() + within;
    while (absl::Now() < deadline) {
      auto ev = stream_->Next(absl::Milliseconds(100));
      if (!ev.ok()) {
        ADD_FAILURE() << "bob's stream ended: " << ev.status();
        return false;
      }
      if (ev->has_value() && (*ev)->kind == Event::Kind::kMessage && (*ev)->text == text) return true;
    }
    return false;
  }

  // Waits (bounded) until `done` holds.
  template <typename F>
  static bool WaitFor(F done, absl::Duration within) {
    const absl::Time deadline = absl::Now() + within;
    while (absl::Now() < deadline) {
      if (done()) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return done();
  }

  std::string dir_;
  std::unique_ptr<Parleyd> server_;
  std::unique_ptr<TcpProxy> proxy_;
  std::unique_ptr<Client> alice_, bob_;
  std::unique_ptr<ReceiveStream> stream_;
  std::string conv_;
  std::atomic<int> reconnects_{0};
  std::string last_cause_;  // written on the stream's thread; read after it is quiet
};

// Server pings off (gRPC's 2 hours), so only the client can notice.
const std::vector<std::string> kServerQuiet = {"--keepalive-time-ms", "0", "--min-client-ping-interval-ms", "500"};

TEST_F(KeepaliveTest, SdkNoticesASilentlyLostConnectionAndTheMessageArrives) {
  Start(kServerQuiet, /*proxy=*/true, /*bob_keepalive=*/absl::Seconds(1));
  ASSERT_TRUE(SendAndAwait("before the loss", absl::Seconds(15)));
  const int closed_before = proxy_->closed_by_client();
  proxy_->DropExisting();
  const absl::Time lost = absl::Now();
  // Sent while bob's only connection is a black hole: the server writes it
  // into that connection. bob's pings go unanswered, the SDK drops the
  // connection, reconnects (the proxy forwards new connections) and gets
  // the message from its queue.
  EXPECT_TRUE(SendAndAwait("during the loss", absl::Seconds(20)));
  std::cout << "delivered " << absl::ToInt64Milliseconds(absl::Now() - lost)
            << " ms after the loss (keepalive 1 s, timeout 1 s)\n";
  EXPECT_GE(reconnects_.load(), 1);
  EXPECT_GT(proxy_->closed_by_client(), closed_before) << "the SDK did not drop the dead connection";
  EXPECT_GE(proxy_->accepted(), 2);
}

// The control: the same loss without client keepalive goes unnoticed, so
// the test above passes because of the pings and the proxy really drops.
TEST_F(KeepaliveTest, WithoutKeepaliveTheLossGoesUnnoticed) {
  Start(kServerQuiet, /*proxy=*/true, /*bob_keepalive=*/absl::ZeroDuration());
  ASSERT_TRUE(SendAndAwait("before the loss", absl::Seconds(15)));
  proxy_->DropExisting();
  EXPECT_FALSE(SendAndAwait("during the loss", absl::Seconds(5)));
  EXPECT_EQ(reconnects_.load(), 0);
  EXPECT_EQ(proxy_->accepted(), 1);
}

TEST_F(KeepaliveTest, ServerClosesAConnectionThatStopsAnswering) {
  Start({"--keepalive-time-ms", "1000", "--keepalive-timeout-ms", "1000"}, /*proxy=*/true,
        /*bob_keepalive=*/absl::ZeroDuration());
  ASSERT_TRUE(SendAndAwait("before the loss", absl::Seconds(15)));
  const int closed_before = proxy_->closed_by_target();
  proxy_->DropExisting();
  const absl::Time lost = absl::Now();
  // bob does not ping, so only parleyd's unanswered ping can close it.
  EXPECT_TRUE(WaitFor([&] { return proxy_->closed_by_target() > closed_before; }, absl::Seconds(20)))
      << "parleyd kept the silent connection open";
  std::cout << "parleyd closed the connection " << absl::ToInt64Milliseconds(absl::Now() - lost)
            << " ms after the loss (keepalive 1 s, timeout 1 s)\n";
  // The server still serves everyone else.
  auto sent = alice_->Send(conv_, "after");
  EXPECT_TRUE(sent.ok()) << sent.status();
}

TEST_F(KeepaliveTest, PingsAtTheAllowedIntervalKeepTheStream) {
  Start(kServerQuiet, /*proxy=*/false, /*bob_keepalive=*/absl::Seconds(1));
  ASSERT_TRUE(SendAndAwait("first", absl::Seconds(15)));
  // About 5 pings with nothing else on the connection.
  absl::SleepFor(absl::Seconds(6));
  EXPECT_TRUE(SendAndAwait("after the pings", absl::Seconds(10)));
  EXPECT_EQ(reconnects_.load(), 0) << last_cause_;
}

// The control: a server that allows pings only every minute closes the
// connection of a client that pings every second (after 2 strikes).
TEST_F(KeepaliveTest, PingsMoreOftenThanAllowedGetTheConnectionClosed) {
  Start({"--keepalive-time-ms", "0", "--min-client-ping-interval-ms", "60000"}, /*proxy=*/false,
        /*bob_keepalive=*/absl::Seconds(1));
  ASSERT_TRUE(SendAndAwait("first", absl::Seconds(15)));
  EXPECT_TRUE(WaitFor([&] { return reconnects_.load() >= 1; }, absl::Seconds(15)));
  // The stream reconnected by itself and still delivers.
  EXPECT_TRUE(SendAndAwait("after the reconnect", absl::Seconds(15)));
}

}  // namespace
}  // namespace parley
