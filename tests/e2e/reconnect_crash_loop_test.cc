// Clients across a crash loop: the SDK's reconnecting Receive stream and its
// retrying Send, against a real parleyd that is killed with SIGKILL and
// restarted on the same port and data directory, 5 rounds, while one client
// sends and another receives. Every acknowledged message is delivered, none
// twice, in conversation order, and the stream resumed by itself (no new
// ReceiveStream is opened by the app).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <atomic>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/client.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

namespace parley {
namespace {

using testing::Parleyd;

constexpr int kRounds = 5;

class ReconnectCrashLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_reconnect_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Starts parleyd on `port` (0: any), retrying briefly if the port is not
  // free yet.
  void StartOn(int port) {
    std::vector<std::string> args;
    if (port != 0) args = {"--listen", absl::StrCat("127.0.0.1:", port)};
    for (int attempt = 0; attempt < 20; ++attempt) {
      server_ = std::make_unique<Parleyd>(PARLEYD_BIN, dir_ + "/data", dir_, args);
      if (server_->port() > 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "parleyd did not start on port " << port << ":\n" << server_->log();
  }
  std::unique_ptr<Client> NewClient(const std::string& name, int port) {
    Profile p;
    p.dir = dir_ + "/sdk/" + name;
    ConnectOptions o;
    o.server = absl::StrCat("127.0.0.1:", port);
    o.ca_file = dir_ + "/data/tls/ca.pem";
    o.deadline = absl::Seconds(5);
    o.send_max_attempts = 8;
    o.send_initial_backoff = absl::Milliseconds(100);
    o.send_max_backoff = absl::Seconds(1);
    auto c = Client::Create(p, o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::string dir_;
  std::unique_ptr<Parleyd> server_;
};

TEST_F(ReconnectCrashLoopTest, ReceiveResumesWithoutLossOrReorderingAcrossKill9) {
  StartOn(0);
  ASSERT_GT(server_->port(), 0);
  const int port = server_->port();
  auto alice = NewClient("alice", port);
  auto bob = NewClient("bob", port);
  ASSERT_TRUE(alice && bob);
  ASSERT_TRUE(alice->Register("alice", "", {}, "phone").ok());
  ASSERT_TRUE(bob->Register("bob", "", {}, "phone").ok());
  auto direct = alice->CreateDirect("bob");
  ASSERT_TRUE(direct.ok()) << direct.status();
  const std::string conv = direct->conversation.conversation_id();

  // bob: one ReceiveStream for the whole test, reconnecting by itself.
  ReceiveOptions ro;
  ro.max_reconnect_attempts = 1000;  // bounded by the test's deadlines
  ro.initial_backoff = absl::Milliseconds(50);
  ro.max_backoff = absl::Milliseconds(500);
  std::atomic<int> reconnects{0};
  ro.on_reconnect = [&](const absl::Status&, int, absl::Duration) { ++reconnects; };
  auto stream = bob->Receive(ro);
  ASSERT_TRUE(stream.ok()) << stream.status();

  std::mutex mu;
  std::map<std::string, std::string> acked;         // client id -> text
  std::vector<std::pair<std::string, uint64_t>> got;  // (client id, seq) in delivery order
  std::set<uint64_t> delivery_ids;
  int duplicate_deliveries = 0;
  absl::Status stream_error;
  std::atomic<bool> stop_sending{false}, stop_receiving{false};

  std::thread receiver([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!stop_receiving && std::chrono::steady_clock::now() < deadline) {
      auto ev = (*stream)->Next(absl::Milliseconds(100));
      if (!ev.ok()) {
        std::lock_guard<std::mutex> l(mu);
        stream_error = ev.status();
        return;
      }
      if (!ev->has_value() || (*ev)->kind != Event::Kind::kMessage) continue;
      std::lock_guard<std::mutex> l(mu);
      if (!delivery_ids.insert((*ev)->delivery_id).second) ++duplicate_deliveries;
      got.emplace_back((*ev)->message.client_message_id(), (*ev)->message.seq());
    }
  });
  int unacked = 0;
  std::thread sender([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    for (int i = 0; i < 100000 && !stop_sending && std::chrono::steady_clock::now() < deadline; ++i) {
      const std::string id = absl::StrCat("m", i);
      const std::string text = absl::StrCat("message ", i);
      auto r = alice->Send(conv, text, id);
      std::lock_guard<std::mutex> l(mu);
      if (r.ok()) {
        acked[id] = text;
      } else {
        ++unacked;  // the client could not know; may or may not arrive
      }
      // A steady, moderate rate: the point is the reconnects, not load.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });

  std::mt19937 rng(20261127);
  std::vector<double> downtime_ms;
  for (int round = 0; round < kRounds; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 400));
    server_->process().Kill(SIGKILL);
    const auto killed = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 200));
    StartOn(port);
    ASSERT_EQ(server_->port(), port);
    downtime_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - killed).count());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop_sending = true;
  sender.join();

  // Wait (bounded) until bob has everything acknowledged.
  size_t want = 0;
  {
    std::lock_guard<std::mutex> l(mu);
    want = acked.size();
  }
  const auto wait_until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < wait_until) {
    {
      std::lock_guard<std::mutex> l(mu);
      std::set<std::string> ids;
      for (const auto& g : got) ids.insert(g.first);
      size_t have = 0;
      for (const auto& a : acked) have += ids.count(a.first);
      if (have == want || !stream_error.ok()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop_receiving = true;
  receiver.join();
  (*stream)->Close();

  std::lock_guard<std::mutex> l(mu);
  EXPECT_TRUE(stream_error.ok()) << "the stream gave up: " << stream_error;
  EXPECT_GE(reconnects.load(), kRounds) << "the stream did not reconnect after each kill";
  EXPECT_EQ(duplicate_deliveries, 0);
  std::set<std::string> ids;
  uint64_t last_seq = 0;
  int reordered = 0, dup_ids = 0;
  for (const auto& [id, seq] : got) {
    if (seq <= last_seq) ++reordered;
    last_seq = seq;
    if (!ids.insert(id).second) ++dup_ids;
  }
  EXPECT_EQ(reordered, 0) << "messages delivered out of conversation order";
  EXPECT_EQ(dup_ids, 0) << "a message delivered twice";
  size_t missing = 0;
  for (const auto& [id, text] : acked) missing += ids.count(id) == 0 ? 1 : 0;
  EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged sends";
  double max_down = 0;
  for (double d : downtime_ms) max_down = std::max(max_down, d);
  std::cout << kRounds << " kill -9 rounds: " << acked.size() << " sends acknowledged, " << unacked
            << " not, " << got.size() << " delivered, " << missing << " missing, " << reordered << " reordered, "
            << reconnects.load() << " stream reconnects; longest restart " << max_down << " ms\n";
}

}  // namespace
}  // namespace parley
