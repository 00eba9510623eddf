// Stalled consumer: a device opens Receive and never reads while another
// sends it a large backlog. parleyd's memory must not grow with the backlog
// (the backlog stays on disk: each stream holds at most one batch read from
// storage and one message in flight); when the consumer finally reads, it
// gets everything, in order, nothing lost.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/api_client.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_env.h"

namespace parley {
namespace {

using testing::ApiClient;
using testing::Device;
using testing::Parleyd;

// 20,000 messages of 4 KB: an 80 MB backlog (a fifth under ASan).
constexpr int kMessages = testing::kSanitizerBuild ? 4000 : 20000;
constexpr size_t kBodyBytes = 4096;
constexpr int kSenders = 4;

class StalledConsumerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_stall_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
  std::unique_ptr<Parleyd> server_;
};

TEST_F(StalledConsumerTest, NeverReadingConsumerDoesNotGrowServerMemory) {
  // No per-device rate limit: one device sends the whole backlog as fast as
  // it can (the limit is tested on its own).
  server_ = std::make_unique<Parleyd>(PARLEYD_BIN, dir_ + "/data", dir_,
                                      std::vector<std::string>{"--device-rate-limit", "0"});
  ASSERT_GT(server_->port(), 0) << server_->log();
  const pid_t pid = server_->process().pid();
  const std::string ca = testing::Slurp(server_->ca_file());
  ASSERT_FALSE(ca.empty());
  ApiClient c(testing::MakeChannel(server_->target(), ca));
  Device alice, bob;
  ASSERT_TRUE(c.Register("alice", &alice).ok());
  ASSERT_TRUE(c.Register("bob", &bob).ok());
  v1::Conversation conv;
  ASSERT_TRUE(c.Direct(alice, "bob", &conv).ok());
  const std::string cid = conv.conversation_id();

  // Sends kMessages 4 KB messages to bob from kSenders threads (ids
  // "<prefix><i>"), sampling parleyd's VmRSS; returns the peak (kB).
  std::atomic<int> failures{0};
  auto send_backlog = [&](const std::string& prefix, double* seconds) {
    std::atomic<bool> sampling{true};
    std::atomic<long> peak_kb{testing::ProcStatusKb(pid, "VmRSS")};
    std::thread sampler([&] {
      for (int i = 0; i < 20 * 600 && sampling; ++i) {  // bounded: 10 min at 50 ms
        const long kb = testing::ProcStatusKb(pid, "VmRSS");
        if (kb > peak_kb) peak_kb = kb;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> senders;
    for (int t = 0; t < kSenders; ++t) {
      senders.emplace_back([&, t] {
        std::string text(kBodyBytes, static_cast<char>('a' + t));
        for (int i = t; i < kMessages; i += kSenders) {
          const std::string id = absl::StrCat(prefix, i);
          std::copy(id.begin(), id.end(), text.begin());
          grpc::Status s = c.SendText(alice, cid, id, text);
          if (!s.ok()) {
            if (++failures <= 3) {
              ADD_FAILURE() << "Send " << id << ": code " << s.error_code() << " " << s.error_message();
            }
            if (failures > 10) return;
          }
        }
      });
    }
    for (auto& s : senders) s.join();
    *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // Let the stream (if any) push whatever the flow-control window admits.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const long end_kb = testing::ProcStatusKb(pid, "VmRSS");
    sampling = false;
    sampler.join();
    return std::max(peak_kb.load(), end_kb);
  };
  const long backlog_kb = static_cast<long>(kMessages * kBodyBytes / 1024);

  // Phase 1, the control: the same backlog with no stream open. RocksDB's
  // memtables (bounded by its write-buffer settings: 32 MB per column
  // family) and block cache grow to their working size here.
  const long rss_start_kb = testing::ProcStatusKb(pid, "VmRSS");
  ASSERT_GT(rss_start_kb, 0);
  double control_s = 0;
  const long control_peak_kb = send_backlog("c", &control_s);
  ASSERT_EQ(failures.load(), 0);
  const long rss_before_kb = testing::ProcStatusKb(pid, "VmRSS");

  // Phase 2: bob's consumer opens Receive on its own connection, with a
  // small HTTP/2 window and no window growth (BDP probing off), and never
  // reads — while a second backlog of the same size arrives. The stream has
  // the whole first backlog to push too.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 * 1024);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 16 << 20);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca;
  auto consumer_channel = grpc::CreateCustomChannel(server_->target(), grpc::SslCredentials(ssl), args);
  auto consumer_stub = v1::MessagingService::NewStub(consumer_channel);
  auto consumer_ctx = ApiClient::Ctx(bob.token, 300);
  auto reader = consumer_stub->Receive(consumer_ctx.get(), v1::ReceiveRequest());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  double send_s = 0;
  const long peak_kb = send_backlog("m", &send_s);
  ASSERT_EQ(failures.load(), 0);
  ASSERT_EQ(server_->process().Wait(std::chrono::milliseconds(1)), -1) << "parleyd exited:\n" << server_->log();

  // Compared with the control's peak: the same volume went through RocksDB
  // in both phases; only the stalled stream differs.
  const long control_growth_kb = control_peak_kb - rss_start_kb;
  const long growth_kb = peak_kb - std::max(control_peak_kb, rss_before_kb);
  const long stream_backlog_kb = 2 * backlog_kb;  // both phases are queued for the stream
  std::cout << "stalled consumer: " << kMessages << " x " << kBodyBytes << " B = " << backlog_kb / 1024
            << " MB per phase. Control (no stream): sent in " << control_s << " s, parleyd VmRSS "
            << rss_start_kb / 1024 << " -> peak " << control_peak_kb / 1024 << " MB (+" << control_growth_kb / 1024
            << " MB: RocksDB memtables, allocator). Stalled stream open: sent in " << send_s << " s, VmRSS "
            << rss_before_kb / 1024 << " -> peak " << peak_kb / 1024 << " MB, " << growth_kb / 1024
            << " MB above the control's peak, while the stream's backlog reached " << stream_backlog_kb / 1024
            << " MB\n";
  RecordProperty("stream_backlog_kb", static_cast<int>(stream_backlog_kb));
  RecordProperty("rss_growth_over_control_kb", static_cast<int>(growth_kb));
  // Generous: a server that buffered a stalled stream's backlog in memory
  // would grow by at least the backlog.
  if (testing::kSanitizerBuild) {
    // ASan's quarantine (freed memory held back, up to 256 MB) and shadow
    // memory make VmRSS say nothing about what parleyd keeps: the bound is
    // asserted in the normal build; order and loss are checked below.
    std::cout << "(sanitizer build: the memory bound is not asserted)\n";
  } else {
    EXPECT_LT(growth_kb, stream_backlog_kb / 2)
        << "parleyd's memory grew by " << growth_kb << " kB beyond the control while a stalled consumer's "
        << "backlog grew to " << stream_backlog_kb << " kB";
  }

  // The consumer wakes up: everything, in order, once.
  const auto read_start = std::chrono::steady_clock::now();
  std::set<std::string> ids;
  uint64_t last_delivery = 0, last_seq = 0;
  int envelopes = 0;
  bool drained = false;
  std::vector<uint64_t> to_ack;
  v1::ReceiveResponse r;
  // Bounded: a watchdog cancels the stream after 120 s.
  std::atomic<bool> reading{true};
  std::thread watchdog([&] {
    for (int i = 0; i < 1200 && reading; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (reading) consumer_ctx->TryCancel();
  });
  while (!(envelopes == 2 * kMessages && drained) && reader->Read(&r)) {
    if (r.has_backlog_drained()) {
      drained = true;
      continue;
    }
    const auto& e = r.envelope();
    EXPECT_GT(e.delivery_id(), last_delivery);
    EXPECT_GT(e.message().seq(), last_seq);
    last_delivery = e.delivery_id();
    last_seq = e.message().seq();
    EXPECT_EQ(e.message().plain().content().size(), kBodyBytes);
    EXPECT_TRUE(ids.insert(e.message().client_message_id()).second) << e.message().client_message_id();
    to_ack.push_back(e.delivery_id());
    ++envelopes;
  }
  const double read_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - read_start).count();
  reading = false;
  watchdog.join();
  std::cout << "the consumer then read " << envelopes << " envelopes in " << read_s << " s\n";
  EXPECT_EQ(envelopes, 2 * kMessages);
  EXPECT_TRUE(drained);
  for (const char* prefix : {"c", "m"}) {
    for (int i = 0; i < kMessages; ++i) {
      if (ids.count(absl::StrCat(prefix, i)) == 0) {
        ADD_FAILURE() << prefix << i << " was never delivered";
        break;
      }
    }
  }
  consumer_ctx->TryCancel();
  while (reader->Read(&r)) {
  }
  (void)reader->Finish();

  // Acks remove the backlog.
  for (size_t i = 0; i < to_ack.size(); i += 10000) {
    v1::AckRequest req;
    for (size_t j = i; j < std::min(to_ack.size(), i + 10000); ++j) req.add_delivery_ids(to_ack[j]);
    v1::AckResponse resp;
    auto ctx = ApiClient::Ctx(bob.token, 60);
    grpc::Status s = c.messaging->Ack(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.removed(), static_cast<uint32_t>(req.delivery_ids_size()));
  }
}

}  // namespace
}  // namespace parley
