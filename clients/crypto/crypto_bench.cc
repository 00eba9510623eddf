// SPDX-License-Identifier: GPL-3.0-or-later
// Microbenchmarks of the client crypto layer (libsignal-protocol-c over
// OpenSSL 3 and RocksDB, WAL without fsync).
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "clients/crypto/crypto.h"
#include "parley/v1/parley.pb.h"

namespace parley::crypto {
namespace {

struct Peer {
  Address address;
  std::string dir;
  std::unique_ptr<DeviceCrypto> crypto;
};

Peer MakePeer(const std::string& name) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "parley_bench_XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  Peer p{Address{name, 1}, tmpl, nullptr};
  auto c = DeviceCrypto::Open(tmpl);
  if (!c.ok()) std::abort();
  p.crypto = std::move(*c);
  return p;
}

void Drop(Peer& p) {
  p.crypto.reset();
  std::filesystem::remove_all(p.dir);
}

PreKeyBundle BundleOf(Peer& p, int32_t device_id = 1) {
  auto up = p.crypto->GeneratePreKeys(1);
  if (!up.ok()) std::abort();
  PreKeyBundle b;
  b.registration_id = up->registration_id;
  b.device_id = device_id;
  b.identity_key = up->identity_key;
  b.signed_pre_key = up->signed_pre_key;
  b.one_time_pre_key = up->one_time_pre_keys.at(0);
  return b;
}

// alice -> bob session, acknowledged so that messages are type 2.
void Establish(Peer& alice, Peer& bob) {
  if (!alice.crypto->ProcessBundle(bob.address, BundleOf(bob)).ok()) std::abort();
  auto first = alice.crypto->Encrypt(bob.address, "hi");
  if (!first.ok() || !bob.crypto->Decrypt(alice.address, *first).ok()) std::abort();
  auto reply = bob.crypto->Encrypt(alice.address, "hi");
  if (!reply.ok() || !alice.crypto->Decrypt(bob.address, *reply).ok()) std::abort();
}

const std::string kMessage(100, 'm');

void BM_Encrypt100B(benchmark::State& state) {
  Peer alice = MakePeer("alice");
  Peer bob = MakePeer("bob");
  Establish(alice, bob);
  for (auto _ : state) {
    auto ct = alice.crypto->Encrypt(bob.address, kMessage);
    benchmark::DoNotOptimize(ct);
  }
  Drop(alice);
  Drop(bob);
}
BENCHMARK(BM_Encrypt100B)->Unit(benchmark::kMicrosecond);

void BM_Decrypt100B(benchmark::State& state) {
  Peer alice = MakePeer("alice");
  Peer bob = MakePeer("bob");
  Establish(alice, bob);
  constexpr int kBatch = 1000;  // same sending chain, in order
  std::vector<Ciphertext> batch;
  size_t next = 0;  // == batch.size(): refill on the first iteration
  for (auto _ : state) {
    if (next == batch.size()) {
      state.PauseTiming();
      batch.clear();
      for (int i = 0; i < kBatch; ++i) batch.push_back(*alice.crypto->Encrypt(bob.address, kMessage));
      next = 0;
      state.ResumeTiming();
    }
    auto pt = bob.crypto->Decrypt(alice.address, batch[next++]);
    if (!pt.ok()) state.SkipWithError("decrypt failed");
  }
  Drop(alice);
  Drop(bob);
}
BENCHMARK(BM_Decrypt100B)->Unit(benchmark::kMicrosecond);

// X3DH both sides: initiator ProcessBundle + Encrypt, responder Decrypt of
// the PreKeySignalMessage.
void BM_SessionSetup(benchmark::State& state) {
  Peer alice = MakePeer("alice");
  Peer bob = MakePeer("bob");
  auto up = bob.crypto->GeneratePreKeys(1000);
  if (!up.ok()) std::abort();
  size_t i = 0;
  for (auto _ : state) {
    if (i == up->one_time_pre_keys.size()) {
      state.PauseTiming();
      up = bob.crypto->GeneratePreKeys(1000);
      i = 0;
      state.ResumeTiming();
    }
    PreKeyBundle b;
    b.registration_id = up->registration_id;
    b.identity_key = up->identity_key;
    b.signed_pre_key = up->signed_pre_key;
    b.one_time_pre_key = up->one_time_pre_keys[i++];
    if (!alice.crypto->ProcessBundle(bob.address, b).ok()) state.SkipWithError("bundle");
    auto ct = alice.crypto->Encrypt(bob.address, kMessage);
    auto pt = bob.crypto->Decrypt(alice.address, *ct);
    if (!pt.ok()) state.SkipWithError("decrypt");
  }
  Drop(alice);
  Drop(bob);
}
BENCHMARK(BM_SessionSetup)->Unit(benchmark::kMillisecond);

void BM_GroupEncrypt100B(benchmark::State& state) {
  Peer alice = MakePeer("alice");
  if (!alice.crypto->CreateSenderKeyDistribution("g").ok()) std::abort();
  for (auto _ : state) {
    auto ct = alice.crypto->GroupEncrypt("g", kMessage);
    benchmark::DoNotOptimize(ct);
  }
  Drop(alice);
}
BENCHMARK(BM_GroupEncrypt100B)->Unit(benchmark::kMicrosecond);

void BM_GroupDecrypt100B(benchmark::State& state) {
  Peer alice = MakePeer("alice");
  Peer bob = MakePeer("bob");
  auto skdm = alice.crypto->CreateSenderKeyDistribution("g");
  if (!skdm.ok() ||
      !bob.crypto->ProcessSenderKeyDistribution("g", alice.address, *skdm).ok()) {
    std::abort();
  }
  constexpr int kBatch = 500;
  std::vector<std::string> batch;
  size_t next = 0;  // == batch.size(): refill on the first iteration
  for (auto _ : state) {
    if (next == batch.size()) {
      state.PauseTiming();
      batch.clear();
      for (int i = 0; i < kBatch; ++i) batch.push_back(*alice.crypto->GroupEncrypt("g", kMessage));
      next = 0;
      state.ResumeTiming();
    }
    auto pt = bob.crypto->GroupDecrypt("g", alice.address, batch[next++]);
    if (!pt.ok()) state.SkipWithError("group decrypt failed");
  }
  Drop(alice);
  Drop(bob);
}
BENCHMARK(BM_GroupDecrypt100B)->Unit(benchmark::kMicrosecond);

// One 100 B message to a group of N member devices as the SDK sends it
// (clients/sdk/signal_engine.cc): sender keys — one GroupEncrypt, the same
// type-4 ciphertext in every device's DeviceCiphertext — or pairwise — one
// Double Ratchet encryption per device (direct chats, and devices that do
// not hold the sender key yet). Counter: bytes of the SendRequest on the wire.
v1::SendRequest FanOutRequest(const std::string& ct, int devices, int type) {
  v1::SendRequest req;
  req.set_conversation_id("c_0123456789abcdef01234567");
  req.set_client_message_id("0123456789abcdef0123456789abcdef");
  for (int i = 0; i < devices; ++i) {
    auto* d = req.mutable_body()->mutable_encrypted()->add_ciphertexts();
    d->set_account_id("a_0123456789abcdef01234567");
    d->set_device_id(static_cast<uint32_t>(i + 1));
    d->set_registration_id(12345);
    d->set_type(static_cast<uint32_t>(type));
    d->set_ciphertext(ct);
  }
  return req;
}

void BM_GroupFanOutSenderKey100B(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Peer alice = MakePeer("alice");
  if (!alice.crypto->CreateSenderKeyDistribution("g").ok()) std::abort();
  size_t bytes = 0;
  for (auto _ : state) {
    auto ct = alice.crypto->GroupEncrypt("g", kMessage);
    if (!ct.ok()) std::abort();
    v1::SendRequest req = FanOutRequest(*ct, n, 4);
    bytes = req.ByteSizeLong();
    benchmark::DoNotOptimize(req);
  }
  state.counters["wire_bytes"] = static_cast<double>(bytes);
  state.counters["bytes_per_device"] = static_cast<double>(bytes) / n;
  Drop(alice);
}
BENCHMARK(BM_GroupFanOutSenderKey100B)->Arg(10)->Arg(100)->Unit(benchmark::kMicrosecond);

void BM_GroupFanOutPairwise100B(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Peer alice = MakePeer("alice");
  std::vector<Peer> peers;
  for (int i = 0; i < n; ++i) {
    peers.push_back(MakePeer("p" + std::to_string(i)));
    Establish(alice, peers.back());
  }
  size_t bytes = 0;
  for (auto _ : state) {
    v1::SendRequest req;
    for (auto& p : peers) {
      auto ct = alice.crypto->Encrypt(p.address, kMessage);
      if (!ct.ok()) std::abort();
      auto* d = req.mutable_body()->mutable_encrypted()->add_ciphertexts();
      d->set_account_id("a_0123456789abcdef01234567");
      d->set_device_id(1);
      d->set_registration_id(ct->remote_registration_id);
      d->set_type(static_cast<uint32_t>(ct->type));
      d->set_ciphertext(ct->bytes);
    }
    bytes = req.ByteSizeLong();
    benchmark::DoNotOptimize(req);
  }
  state.counters["wire_bytes"] = static_cast<double>(bytes);
  state.counters["bytes_per_device"] = static_cast<double>(bytes) / n;
  for (auto& p : peers) Drop(p);
  Drop(alice);
}
BENCHMARK(BM_GroupFanOutPairwise100B)->Arg(10)->Arg(100)->Unit(benchmark::kMicrosecond);

// Bytes on the wire of one 100 B message to one device, per mode.
void BM_WireBytes100B(benchmark::State& state) {
  Peer alice = MakePeer("alice");
  Peer bob = MakePeer("bob");
  if (!alice.crypto->ProcessBundle(bob.address, BundleOf(bob)).ok()) std::abort();
  auto prekey = alice.crypto->Encrypt(bob.address, kMessage);  // type 3
  if (!prekey.ok() || !bob.crypto->Decrypt(alice.address, *prekey).ok()) std::abort();
  auto reply = bob.crypto->Encrypt(alice.address, "ok");
  if (!reply.ok() || !alice.crypto->Decrypt(bob.address, *reply).ok()) std::abort();
  auto whisper = alice.crypto->Encrypt(bob.address, kMessage);  // type 2
  if (!whisper.ok()) std::abort();
  v1::SendRequest plain;
  plain.set_conversation_id("c_0123456789abcdef01234567");
  plain.set_client_message_id("0123456789abcdef0123456789abcdef");
  plain.mutable_body()->mutable_plain()->set_content(kMessage);
  for (auto _ : state) benchmark::DoNotOptimize(plain.ByteSizeLong());
  state.counters["transport_send"] = static_cast<double>(plain.ByteSizeLong());
  state.counters["e2ee_prekey_send"] =
      static_cast<double>(FanOutRequest(prekey->bytes, 1, 3).ByteSizeLong());
  state.counters["e2ee_send"] = static_cast<double>(FanOutRequest(whisper->bytes, 1, 2).ByteSizeLong());
  Drop(alice);
  Drop(bob);
}
BENCHMARK(BM_WireBytes100B)->Iterations(1);

void BM_SafetyNumber(benchmark::State& state) {
  Peer alice = MakePeer("alice");
  Peer bob = MakePeer("bob");
  const PublicKey bob_key = bob.crypto->identity_key();
  for (auto _ : state) {
    auto sn = alice.crypto->SafetyNumber("alice", "bob", bob_key);
    benchmark::DoNotOptimize(sn);
  }
  Drop(alice);
  Drop(bob);
}
BENCHMARK(BM_SafetyNumber)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace parley::crypto

BENCHMARK_MAIN();
