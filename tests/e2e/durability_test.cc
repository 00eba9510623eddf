// Durability: Sends acknowledged by a real parleyd survive kill -9.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "core/tls.h"
#include "gtest/gtest.h"
#include "tests/support/api_client.h"
#include "tests/support/subprocess.h"

namespace parley {
namespace {

using testing::ApiClient;
using testing::Device;
using testing::Parleyd;

class DurabilityFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_dur_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

// Sends from several threads while parleyd is killed with SIGKILL at a random
// moment; after a restart on the same data directory every acknowledged
// message is delivered exactly as sent (unacknowledged ones may or may not
// be, as the client could not know), and so is every message the recipient
// had already received on its open stream before the kill (never acked, so
// all of them stay queued): a server must not deliver what it can lose.
class DurabilityTest : public DurabilityFixture, public ::testing::WithParamInterface<bool> {};

TEST_P(DurabilityTest, AcknowledgedSendsSurviveKill9) {
  // Load from one device at full speed: the per-device rate limit is off so
  // that senders are only stopped by the kill.
  std::vector<std::string> args = {"--device-rate-limit", "0"};
  if (GetParam()) args.push_back("--sync");
  const std::string data = dir_ + "/data";
  std::mt19937 rng(20261122);
  constexpr int kRounds = 20;  // the reliability issue asks for 20 kill -9 rounds in the suite
  Device alice, bob;
  std::string conv;
  std::map<std::string, std::string> acked;      // client id -> text
  std::map<std::string, std::string> seen_live;  // received before a kill
  for (int round = 0; round < kRounds; ++round) {
    Parleyd d(PARLEYD_BIN, data, dir_, args);
    ASSERT_GT(d.port(), 0) << d.log();
    auto ca = core::ReadFile(data + "/tls/ca.pem");
    ASSERT_TRUE(ca.ok());
    ApiClient c(testing::MakeChannel(d.target(), *ca));
    if (round == 0) {
      ASSERT_TRUE(c.Register("alice", &alice).ok());
      ASSERT_TRUE(c.Register("bob", &bob).ok());
      v1::Conversation cv;
      ASSERT_TRUE(c.Direct(alice, "bob", &cv).ok());
      conv = cv.conversation_id();
    }
    std::atomic<bool> stop{false};
    std::mutex mu;
    // Bob's stream while alice sends: what it receives before the kill.
    std::thread receiver([&] {
      ApiClient bc(testing::MakeChannel(d.target(), *ca));
      testing::Stream live(bc, bob, 60);
      v1::Envelope e;
      while (live.NextEnvelope(&e)) {
        std::lock_guard<std::mutex> l(mu);
        seen_live[e.message().client_message_id()] = e.message().plain().content();
      }
    });
    std::vector<std::thread> senders;
    for (int t = 0; t < 4; ++t) {
      senders.emplace_back([&, t] {
        for (int i = 0; i < 5000 && !stop; ++i) {
          std::string id = "r" + std::to_string(round) + "t" + std::to_string(t) + "i" + std::to_string(i);
          std::string text = "payload " + id;
          grpc::Status s = c.SendText(alice, conv, id, text);
          if (!s.ok()) break;  // the server is gone
          std::lock_guard<std::mutex> l(mu);
          acked[id] = text;
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 300));
    d.process().Kill(SIGKILL);
    stop = true;
    for (auto& s : senders) s.join();
    receiver.join();  // the stream ends with the server
  }
  ASSERT_GT(acked.size(), 5u);

  Parleyd d(PARLEYD_BIN, data, dir_, args);
  ASSERT_GT(d.port(), 0) << d.log();
  auto ca = core::ReadFile(data + "/tls/ca.pem");
  ApiClient c(testing::MakeChannel(d.target(), *ca));
  testing::Stream st(c, bob, 120);
  std::map<std::string, std::string> got;
  v1::ReceiveResponse r;
  uint64_t last_seq = 0;
  while (st.Read(&r)) {
    if (r.has_backlog_drained()) break;
    const auto& m = r.envelope().message();
    EXPECT_GT(m.seq(), last_seq);  // conversation order preserved
    last_seq = m.seq();
    EXPECT_TRUE(got.emplace(m.client_message_id(), m.plain().content()).second)
        << "delivered twice: " << m.client_message_id();
  }
  // How many of `expected` (client id -> text) are not among the messages
  // delivered after the last restart; the ones that are must be unchanged.
  auto missing_from_got = [&](const std::map<std::string, std::string>& expected) {
    size_t missing = 0;
    for (const auto& [id, text] : expected) {
      auto it = got.find(id);
      if (it == got.end()) {
        ++missing;
      } else {
        EXPECT_EQ(it->second, text) << id;
      }
    }
    return missing;
  };
  EXPECT_EQ(missing_from_got(acked), 0u) << "of " << acked.size() << " acknowledged sends";
  EXPECT_EQ(missing_from_got(seen_live), 0u) << "of " << seen_live.size() << " messages bob had received";
  EXPECT_GT(seen_live.size(), 0u);
  RecordProperty("acknowledged", static_cast<int>(acked.size()));
  std::cout << (GetParam() ? "--sync: " : "WAL only: ") << kRounds << " kill -9 rounds, acknowledged sends: " << acked.size() << ", received live before a kill: " << seen_live.size() << ", delivered after kill -9: " << got.size() << "\n";
}

INSTANTIATE_TEST_SUITE_P(WalAndSync, DurabilityTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "Sync" : "WalOnly"; });

}  // namespace
}  // namespace parley
