// Benchmark: `policy plan` over stored conversations (issue target: 1,000,000
// conversations in under 10 s) and the cost of evaluating one stored
// conversation (facts from storage + decision).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// The store is built once per process in a temporary directory (or reused
// from $PARLEY_PLAN_BENCH_DIR if it already holds the same population):
// $PARLEY_PLAN_BENCH_CONVERSATIONS conversations (default 1,000,000) among
// 20,000 accounts, 70% direct and 30% groups of 3-12, all in E2EE mode, so a
// plan of instagram-2026 schedules a downgrade for every conversation.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/ids.h"
#include "core/policy_engine.h"
#include "core/presets.h"
#include "storage/rocksdb_storage.h"

namespace parley::core {
namespace {

constexpr int kAccounts = 20000;

struct Fixture {
  std::string dir;
  std::unique_ptr<storage::Storage> storage;
  std::unique_ptr<PolicyEngine> engine;
  uint64_t conversations = 0;
};

uint64_t Population() {
  const char* env = std::getenv("PARLEY_PLAN_BENCH_CONVERSATIONS");
  return env ? std::strtoull(env, nullptr, 10) : 1000000;
}

void Die(const absl::Status& s) {
  std::cerr << "plan_bench: " << s << "\n";
  std::exit(1);
}

Fixture& Get() {
  static Fixture* f = [] {
    auto* f = new Fixture;
    f->conversations = Population();
    const char* env_dir = std::getenv("PARLEY_PLAN_BENCH_DIR");
    f->dir = env_dir ? env_dir : absl::StrCat("/tmp/parley_plan_bench_", getpid());
    const bool reuse = env_dir && std::filesystem::exists(f->dir + "/ready-" + std::to_string(f->conversations));
    storage::RocksDbOptions o;
    o.path = f->dir + "/db";
    auto s = storage::OpenRocksDbStorage(o);
    if (!s.ok()) Die(s.status());
    f->storage = std::move(*s);
    const int64_t now = 1700000000000;
    if (!reuse) {
      std::cerr << "plan_bench: populating " << f->conversations << " conversations...\n";
      std::vector<std::string> ids(kAccounts);
      for (int i = 0; i < kAccounts; ++i) {
        storage::AccountRecord a;
        a.account_id = NewAccountId();
        a.username = absl::StrCat("user", i);
        a.kind = 1;
        a.age_band = i % 10 == 0 ? 2 : 3;  // 10% minors
        storage::DeviceRecord d;
        d.account_id = a.account_id;
        d.token_hash = Sha256(a.account_id);
        auto c = f->storage->accounts().CreateAccount(a, d);
        if (!c.ok()) Die(c.status());
        ids[i] = a.account_id;
      }
      std::mt19937_64 rng(42);
      uint64_t made = 0;
      while (made < f->conversations) {
        storage::ConversationRecord c;
        c.conversation_id = NewConversationId();
        c.created_at_ms = now;
        const bool direct = rng() % 10 < 7;
        c.kind = direct ? 1 : 2;
        const int n = direct ? 2 : 3 + static_cast<int>(rng() % 10);
        std::set<size_t> picked;
        while (static_cast<int>(picked.size()) < n) picked.insert(rng() % kAccounts);
        for (size_t k : picked) c.members.push_back({ids[k], c.members.empty(), now});
        c.security.mode = 1;  // E2EE
        c.security.epoch = 1;
        c.security.policy_revision = "r1-bench";
        c.security.rule_id = "default";
        c.security.effective_at_ms = now;
        c.security.e2ee_ever_enabled = true;
        absl::Status st = f->storage->conversations().CreateConversation(c);
        if (absl::IsAlreadyExists(st)) continue;  // that pair exists
        if (!st.ok()) Die(st);
        ++made;
      }
      (void)f->storage->Flush();
      if (env_dir) {
        std::FILE* m = std::fopen((f->dir + "/ready-" + std::to_string(f->conversations)).c_str(), "w");
        if (m) std::fclose(m);
      }
    }
    PolicyEngine::Options po;
    po.storage = f->storage.get();
    po.now_ms = [] { return int64_t{1700000000000} + 1000; };
    po.default_content = FindPreset("signal")->content;
    po.default_file_name = "preset:signal";
    auto e = PolicyEngine::Open(po);
    if (!e.ok()) Die(e.status());
    f->engine = std::move(e->first);
    return f;
  }();
  return *f;
}

// One full plan of a candidate over every stored conversation.
void BM_PlanAllConversations(benchmark::State& state, const char* preset) {
  Fixture& f = Get();
  auto v = f.engine->ParseCandidate(FindPreset(preset)->content, preset);
  if (!v.ok()) Die(v.status());
  uint64_t n = 0;
  for (auto _ : state) {
    auto plan = f.engine->Plan(**v, 3, nullptr);
    if (!plan.ok()) Die(plan.status());
    n = plan->conversations();
    benchmark::DoNotOptimize(plan);
  }
  state.counters["conversations"] = static_cast<double>(n);
  state.counters["per_conversation_ns"] = benchmark::Counter(
      static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK_CAPTURE(BM_PlanAllConversations, instagram_2026, "instagram-2026")
    ->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK_CAPTURE(BM_PlanAllConversations, protect_minors, "protect-minors")
    ->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

// One page of 100 conversations of an admin listing (`parleyctl
// conversations list`), starting in the middle of the population: the page
// seeks to its token, so it costs the same wherever it starts.
void BM_ConversationPageFromTheMiddle(benchmark::State& state) {
  Fixture& f = Get();
  std::string middle;
  uint64_t seen = 0;
  absl::Status s = f.storage->conversations().ForEachConversation([&](const storage::ConversationRecord& c) {
    if (++seen < f.conversations / 2) return true;
    middle = c.conversation_id;
    return false;
  });
  if (!s.ok()) Die(s);
  for (auto _ : state) {
    int n = 0;
    s = f.storage->conversations().ForEachConversationAfter(middle, [&](const storage::ConversationRecord& c) {
      benchmark::DoNotOptimize(c);
      return ++n < 100;
    });
    if (!s.ok()) Die(s);
  }
}
BENCHMARK(BM_ConversationPageFromTheMiddle)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace parley::core

BENCHMARK_MAIN();
