// Microbenchmarks of the RocksDB storage backend (Google Benchmark).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Each benchmark run opens a fresh database in a mkdtemp directory under
// /tmp (removed afterwards). Argument 0 is RocksDbOptions::sync (0/1).
// Multi-threaded runs use one conversation and one recipient device per
// thread (independent lock sets, so RocksDB can group-commit their fsyncs),
// except *SharedConversation, where all threads append to one conversation.
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "storage/rocksdb_storage.h"
#include "storage/storage.h"

namespace parley::storage {
namespace {

constexpr size_t kPayloadBytes = 256;

std::unique_ptr<Storage> g_storage;
std::string g_dir;

// RocksDbOptions::finger_skip_list; --rocksdb_skip_list turns it off.
bool g_finger_skip_list = true;

bool OpenFresh(benchmark::State& state, bool sync) {
  char tmpl[] = "/tmp/parley_storage_bench.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return false;
  }
  g_dir = tmpl;
  RocksDbOptions opts;
  opts.path = g_dir;
  opts.sync = sync;
  opts.finger_skip_list = g_finger_skip_list;
  auto s = OpenRocksDbStorage(opts);
  if (!s.ok()) {
    state.SkipWithError(s.status().ToString().c_str());
    return false;
  }
  g_storage = *std::move(s);
  return true;
}

void CloseAndRemove() {
  g_storage.reset();
  std::error_code ec;
  std::filesystem::remove_all(g_dir, ec);
}

// Creates `n` accounts (one device each) named prefix0..prefix{n-1} and a
// group conversation `conv` containing them; returns the targets.
std::vector<QueueTarget> MakeGroup(const std::string& conv,
                                   const std::string& prefix, int n) {
  ConversationRecord c;
  c.conversation_id = conv;
  c.kind = 2;
  std::vector<QueueTarget> targets;
  for (int i = 0; i < n; ++i) {
    AccountRecord a;
    a.account_id = absl::StrCat(prefix, i);
    a.username = a.account_id;
    DeviceRecord d;
    d.token_hash = absl::StrCat("tok-", a.account_id);
    (void)g_storage->accounts().CreateAccount(a, d);
    c.members.push_back({.account_id = a.account_id});
    targets.push_back({a.account_id, 1});
  }
  (void)g_storage->conversations().CreateConversation(c);
  return targets;
}

AppendRequest MakeRequest(const std::string& conv,
                          const std::vector<QueueTarget>& targets) {
  AppendRequest r;
  r.conversation_id = conv;
  r.server_time_ms = 1;
  r.targets = targets;
  r.keep_history = true;
  r.make_payload = [](uint64_t) { return std::string(kPayloadBytes, 'x'); };
  return r;
}

void RunAppends(benchmark::State& state, const std::string& conv,
                const std::vector<QueueTarget>& targets) {
  const AppendRequest req = MakeRequest(conv, targets);
  for (auto _ : state) {
    auto r = g_storage->messages().Append(req);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// One target per append; one conversation per thread.
void BM_Append1Target(benchmark::State& state) {
  if (state.thread_index() == 0) {
    if (!OpenFresh(state, state.range(0) != 0)) return;
    for (int t = 0; t < state.threads(); ++t) {
      MakeGroup(absl::StrCat("conv", t), absl::StrCat("t", t, "-"), 1);
    }
  }
  const int t = state.thread_index();
  RunAppends(state, absl::StrCat("conv", t),
             {{absl::StrCat("t", t, "-0"), 1}});
  if (state.thread_index() == 0) CloseAndRemove();
}
BENCHMARK(BM_Append1Target)->Arg(0)->Arg(1)->UseRealTime();
BENCHMARK(BM_Append1Target)->Arg(1)->Threads(8)->UseRealTime();

// All threads append to one conversation (serialized by design).
void BM_Append1TargetSharedConversation(benchmark::State& state) {
  if (state.thread_index() == 0) {
    if (!OpenFresh(state, state.range(0) != 0)) return;
    MakeGroup("shared", "s", 1);
  }
  RunAppends(state, "shared", {{"s0", 1}});
  if (state.thread_index() == 0) CloseAndRemove();
}
BENCHMARK(BM_Append1TargetSharedConversation)
    ->Arg(1)
    ->Threads(8)
    ->UseRealTime();

// 100 targets per append (a large group).
void BM_Append100Targets(benchmark::State& state) {
  if (state.thread_index() == 0) {
    if (!OpenFresh(state, state.range(0) != 0)) return;
    for (int t = 0; t < state.threads(); ++t) {
      MakeGroup(absl::StrCat("conv", t), absl::StrCat("t", t, "-"), 100);
    }
  }
  const int t = state.thread_index();
  std::vector<QueueTarget> targets;
  for (int i = 0; i < 100; ++i) {
    targets.push_back({absl::StrCat("t", t, "-", i), 1});
  }
  RunAppends(state, absl::StrCat("conv", t), targets);
  if (state.thread_index() == 0) CloseAndRemove();
}
BENCHMARK(BM_Append100Targets)->Arg(0)->Arg(1)->UseRealTime();
BENCHMARK(BM_Append100Targets)->Arg(1)->Threads(8)->UseRealTime();

// ReadQueue of 100 entries followed by one Ack of all of them (the queue is
// refilled with 100 appends outside the timed region).
void BM_ReadQueueAck100(benchmark::State& state) {
  if (!OpenFresh(state, state.range(0) != 0)) return;
  const std::vector<QueueTarget> targets = MakeGroup("conv", "r", 1);
  AppendRequest req = MakeRequest("conv", targets);
  req.keep_history = false;
  MessageStore& msgs = g_storage->messages();
  uint64_t cursor = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < 100; ++i) (void)msgs.Append(req);
    state.ResumeTiming();
    auto q = msgs.ReadQueue("r0", 1, cursor, 100);
    if (!q.ok() || q->size() != 100) {
      state.SkipWithError("ReadQueue failed");
      break;
    }
    std::vector<uint64_t> ids;
    ids.reserve(q->size());
    for (const QueueEntry& e : *q) ids.push_back(e.delivery_id);
    cursor = ids.back();
    auto acked = msgs.Ack("r0", 1, ids);
    if (!acked.ok() || *acked != 100) {
      state.SkipWithError("Ack failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 100);
  CloseAndRemove();
}
BENCHMARK(BM_ReadQueueAck100)->Arg(0)->Arg(1)->UseRealTime();

// One Ack of 64 consecutive ids of one device while 200 devices have 64
// entries each queued in the memtable (a group's members acking their
// batches): the lookup that makes the count exact, and the deletes. The
// queues are refilled outside the timed region.
void BM_Ack64Of200Devices(benchmark::State& state) {
  if (!OpenFresh(state, false)) return;
  constexpr int kDevices = 200;
  constexpr int kPerDevice = 64;
  const std::vector<QueueTarget> targets = MakeGroup("conv", "m", kDevices);
  AppendRequest req = MakeRequest("conv", targets);
  req.keep_history = false;
  MessageStore& msgs = g_storage->messages();
  int device = kDevices;
  uint64_t base = 0;
  for (auto _ : state) {
    if (device == kDevices) {
      state.PauseTiming();
      for (int i = 0; i < kPerDevice; ++i) (void)msgs.Append(req);
      device = 0;
      state.ResumeTiming();
    }
    std::vector<uint64_t> ids;
    ids.reserve(kPerDevice);
    for (int i = 1; i <= kPerDevice; ++i) ids.push_back(base + i);
    auto acked = msgs.Ack(absl::StrCat("m", device), 1, ids);
    if (!acked.ok() || *acked != kPerDevice) {
      state.SkipWithError("Ack failed");
      break;
    }
    if (++device == kDevices) base += kPerDevice;
  }
  state.SetItemsProcessed(state.iterations() * kPerDevice);
  CloseAndRemove();
}
BENCHMARK(BM_Ack64Of200Devices)->UseRealTime();

}  // namespace
}  // namespace parley::storage

int main(int argc, char** argv) {
  // As parleyd does: Debian's Abseil otherwise checks every mutex
  // acquisition for lock-order cycles, and Append holds one lock per target
  // device (4-5% of BM_Append100Targets).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // --rocksdb_skip_list: memtables on RocksDB's own skip list instead of
  // Parley's (RocksDbOptions::finger_skip_list), for comparing the two.
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--rocksdb_skip_list") {
      parley::storage::g_finger_skip_list = false;
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      break;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
