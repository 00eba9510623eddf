// SPDX-License-Identifier: GPL-3.0-or-later
// DeviceCrypto end to end: several devices in temp dirs talk through
// in-memory "bundles" and byte strings (no network).
#include "clients/crypto/crypto.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::crypto {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/parley_crypto_XXXXXX";
  char* d = ::mkdtemp(tmpl.data());
  EXPECT_NE(d, nullptr);
  return tmpl;
}

// A stand-in for the key directory: keeps the last upload per device and
// hands out bundles consuming one one-time pre-key per fetch.
class Directory {
 public:
  void Upload(const Address& a, const PreKeyUpload& up) {
    Entry& e = entries_[a.ToString()];
    e.device_id = a.device_id;
    e.upload = up;  // replaces the lists, like Signal-Server
  }
  PreKeyBundle Fetch(const Address& a, bool with_one_time = true) {
    Entry& e = entries_.at(a.ToString());
    PreKeyBundle b;
    b.registration_id = e.upload.registration_id;
    b.device_id = e.device_id;
    b.identity_key = e.upload.identity_key;
    b.signed_pre_key = e.upload.signed_pre_key;
    if (with_one_time && !e.upload.one_time_pre_keys.empty()) {
      b.one_time_pre_key = e.upload.one_time_pre_keys.back();
      e.upload.one_time_pre_keys.pop_back();
    }
    return b;
  }

 private:
  struct Entry {
    int32_t device_id = 1;
    PreKeyUpload upload;
  };
  std::map<std::string, Entry> entries_;
};

struct Device {
  Address address;
  std::string dir;
  std::unique_ptr<DeviceCrypto> crypto;

  DeviceCrypto* operator->() { return crypto.get(); }
};

class CryptoTest : public ::testing::Test {
 protected:
  void TearDown() override {
    devices_.clear();
    for (const std::string& d : dirs_) std::filesystem::remove_all(d);
  }

  Device& NewDevice(const std::string& name, int32_t device_id = 1,
                    const Options& options = Options()) {
    auto d = std::make_unique<Device>();
    d->address = Address{name, device_id};
    d->dir = MakeTempDir();
    dirs_.push_back(d->dir);
    Open(*d, options);
    PublishKeys(*d, 5);
    devices_.push_back(std::move(d));
    return *devices_.back();
  }

  void Open(Device& d, const Options& options = Options()) {
    absl::StatusOr<std::unique_ptr<DeviceCrypto>> c = DeviceCrypto::Open(d.dir, options);
    ASSERT_TRUE(c.ok()) << c.status();
    d.crypto = std::move(*c);
  }

  void PublishKeys(Device& d, int count) {
    absl::StatusOr<PreKeyUpload> up = d->GeneratePreKeys(count);
    ASSERT_TRUE(up.ok()) << up.status();
    EXPECT_EQ(up->one_time_pre_keys.size(), static_cast<size_t>(count));
    directory_.Upload(d.address, *up);
  }

  // `from` sends `text` to `to`; asserts the message type and the round trip.
  void Send(Device& from, Device& to, const std::string& text,
            std::optional<MessageType> expected_type = std::nullopt) {
    absl::StatusOr<Ciphertext> ct = from->Encrypt(to.address, text);
    ASSERT_TRUE(ct.ok()) << ct.status();
    if (expected_type.has_value()) {
      EXPECT_EQ(ct->type, *expected_type);
    }
    EXPECT_EQ(ct->remote_registration_id, to->registration_id());
    if (text.size() >= 8) {  // shorter strings can occur by chance
      EXPECT_FALSE(absl::StrContains(ct->bytes, text)) << "plaintext leaked";
    }
    absl::StatusOr<std::string> pt = to->Decrypt(from.address, *ct);
    ASSERT_TRUE(pt.ok()) << pt.status();
    EXPECT_EQ(*pt, text);
  }

  void Connect(Device& from, Device& to, bool with_one_time = true) {
    absl::Status s = from->ProcessBundle(to.address, directory_.Fetch(to.address, with_one_time));
    ASSERT_TRUE(s.ok()) << s;
  }

  Directory directory_;
  std::vector<std::unique_ptr<Device>> devices_;
  std::vector<std::string> dirs_;
};

TEST_F(CryptoTest, X3dhAndRatchetBothWays) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  EXPECT_EQ(*bob->OneTimePreKeyCount(), 5);
  Connect(alice, bob);
  EXPECT_TRUE(alice->HasSession(bob.address));
  EXPECT_EQ(*alice->RemoteRegistrationId(bob.address), bob->registration_id());

  // Until bob answers, alice's messages are PreKeySignalMessages.
  Send(alice, bob, "hello bob", MessageType::kPreKey);
  Send(alice, bob, "are you there?", MessageType::kPreKey);
  EXPECT_EQ(*bob->OneTimePreKeyCount(), 4);  // consumed on first decrypt
  EXPECT_TRUE(bob->HasSession(alice.address));
  EXPECT_EQ(*bob->RemoteRegistrationId(alice.address), alice->registration_id());

  // Alternate senders: each turn is a DH ratchet step.
  for (int round = 0; round < 6; ++round) {
    Send(bob, alice, absl::StrCat("bob ", round, "a"), MessageType::kSignal);
    Send(bob, alice, absl::StrCat("bob ", round, "b"), MessageType::kSignal);
    Send(alice, bob, absl::StrCat("alice ", round), MessageType::kSignal);
  }
  Send(alice, bob, std::string(), MessageType::kSignal);  // empty message
  Send(alice, bob, std::string(70000, 'x'), MessageType::kSignal);
}

TEST_F(CryptoTest, OutOfOrderAndDuplicateDelivery) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  Connect(alice, bob);
  absl::StatusOr<Ciphertext> first = alice->Encrypt(bob.address, "first");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(bob->Decrypt(alice.address, *first).ok());
  // Replaying the PreKeySignalMessage is a duplicate, not a new session.
  absl::StatusOr<std::string> replay = bob->Decrypt(alice.address, *first);
  EXPECT_EQ(replay.status().code(), absl::StatusCode::kAlreadyExists) << replay.status();
  Send(bob, alice, "ack", MessageType::kSignal);

  std::vector<Ciphertext> msgs;
  for (int i = 1; i <= 4; ++i) {
    absl::StatusOr<Ciphertext> ct = alice->Encrypt(bob.address, absl::StrCat("m", i));
    ASSERT_TRUE(ct.ok());
    msgs.push_back(*ct);
  }
  EXPECT_EQ(*bob->Decrypt(alice.address, msgs[2]), "m3");
  EXPECT_EQ(*bob->Decrypt(alice.address, msgs[1]), "m2");
  EXPECT_EQ(*bob->Decrypt(alice.address, msgs[3]), "m4");
  EXPECT_EQ(*bob->Decrypt(alice.address, msgs[0]), "m1");
  absl::StatusOr<std::string> dup = bob->Decrypt(alice.address, msgs[1]);
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists) << dup.status();

  // Tampering is detected.
  absl::StatusOr<Ciphertext> ct = alice->Encrypt(bob.address, "m5");
  ASSERT_TRUE(ct.ok());
  Ciphertext bad = *ct;
  bad.bytes[bad.bytes.size() / 2] ^= 0x20;
  EXPECT_FALSE(bob->Decrypt(alice.address, bad).ok());
  EXPECT_EQ(*bob->Decrypt(alice.address, *ct), "m5");
}

TEST_F(CryptoTest, MultiDevice) {
  Device& alice1 = NewDevice("alice", 1);
  Device& alice2 = NewDevice("alice", 2);
  Device& bob = NewDevice("bob");
  EXPECT_NE(alice1->identity_key(), alice2->identity_key());
  // Bob sends one ciphertext per destination device.
  Connect(bob, alice1);
  Connect(bob, alice2);
  EXPECT_THAT(bob->SessionDevices("alice"), ElementsAre(1, 2));
  Send(bob, alice1, "to device 1", MessageType::kPreKey);
  Send(bob, alice2, "to device 2", MessageType::kPreKey);
  Send(alice1, bob, "from device 1", MessageType::kSignal);
  Send(alice2, bob, "from device 2", MessageType::kSignal);
  Send(bob, alice1, "again 1", MessageType::kSignal);
  Send(bob, alice2, "again 2", MessageType::kSignal);
  // Each device's session is independent: a message for device 1 does not
  // decrypt on device 2.
  absl::StatusOr<Ciphertext> ct = bob->Encrypt(alice1.address, "only for 1");
  ASSERT_TRUE(ct.ok());
  EXPECT_FALSE(alice2->Decrypt(bob.address, *ct).ok());
  EXPECT_EQ(*alice1->Decrypt(bob.address, *ct), "only for 1");
  // A new device of a known contact is not an identity change.
  EXPECT_TRUE(bob->TakeIdentityChanges().empty());

  ASSERT_TRUE(bob->DeleteSession(alice2.address).ok());
  EXPECT_THAT(bob->SessionDevices("alice"), ElementsAre(1));
  ASSERT_TRUE(bob->DeleteAllSessions("alice").ok());
  EXPECT_TRUE(bob->SessionDevices("alice").empty());
}

TEST_F(CryptoTest, BundleWithoutOneTimePreKey) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  PublishKeys(bob, 0);  // the server ran out of one-time pre-keys
  Connect(alice, bob, /*with_one_time=*/false);
  Send(alice, bob, "signed pre-key only", MessageType::kPreKey);
  Send(bob, alice, "works", MessageType::kSignal);
  Send(alice, bob, "still works", MessageType::kSignal);
}

TEST_F(CryptoTest, PersistenceAcrossReopen) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  Connect(alice, bob);
  Send(alice, bob, "before", MessageType::kPreKey);
  Send(bob, alice, "reply", MessageType::kSignal);
  const PublicKey alice_key = alice->identity_key();
  const uint32_t alice_reg = alice->registration_id();
  absl::StatusOr<Ciphertext> in_flight = bob->Encrypt(alice.address, "in flight");
  ASSERT_TRUE(in_flight.ok());

  alice.crypto.reset();
  bob.crypto.reset();
  Open(alice);
  Open(bob);
  EXPECT_EQ(alice->identity_key(), alice_key);
  EXPECT_EQ(alice->registration_id(), alice_reg);
  EXPECT_TRUE(alice->HasSession(bob.address));
  EXPECT_EQ(*alice->Decrypt(bob.address, *in_flight), "in flight");
  Send(alice, bob, "after reopen", MessageType::kSignal);
  Send(bob, alice, "still here", MessageType::kSignal);
  EXPECT_TRUE(alice->TakeIdentityChanges().empty());
}

TEST_F(CryptoTest, IdentityChangeOfUnverifiedContact) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  Connect(alice, bob);
  Send(alice, bob, "hi", MessageType::kPreKey);
  Send(bob, alice, "hi", MessageType::kSignal);
  const PublicKey old_key = bob->identity_key();
  EXPECT_EQ(alice->RemoteIdentity(bob.address), old_key);

  // Bob reinstalls: new store, new identity.
  bob.crypto.reset();
  std::filesystem::remove_all(bob.dir);
  Open(bob);
  PublishKeys(bob, 3);
  ASSERT_NE(bob->identity_key(), old_key);

  // Incoming: bob's new install starts a session with alice.
  Connect(bob, alice);
  Send(bob, alice, "new phone", MessageType::kPreKey);
  std::vector<IdentityChange> changes = alice->TakeIdentityChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].address, bob.address);
  EXPECT_EQ(changes[0].old_key, old_key);
  EXPECT_EQ(changes[0].new_key, bob->identity_key());
  EXPECT_FALSE(changes[0].blocked);
  EXPECT_FALSE(alice->IsVerified("bob"));
  EXPECT_EQ(alice->RemoteIdentity(bob.address), bob->identity_key());
  Send(alice, bob, "welcome back", MessageType::kSignal);
  EXPECT_TRUE(alice->TakeIdentityChanges().empty());
}

TEST_F(CryptoTest, IdentityChangeOfVerifiedContactIsRefusedUntilAcknowledged) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  Connect(alice, bob);
  Send(alice, bob, "hi", MessageType::kPreKey);
  ASSERT_TRUE(alice->MarkVerified("bob").ok());
  EXPECT_TRUE(alice->IsVerified("bob"));
  const PublicKey old_key = bob->identity_key();

  bob.crypto.reset();
  std::filesystem::remove_all(bob.dir);
  Open(bob);
  PublishKeys(bob, 3);

  absl::Status s = alice->ProcessBundle(bob.address, directory_.Fetch(bob.address));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("identity key of bob.1 changed"));
  std::vector<IdentityChange> changes = alice->TakeIdentityChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_TRUE(changes[0].blocked);
  EXPECT_TRUE(changes[0].was_verified);
  EXPECT_EQ(changes[0].new_key, bob->identity_key());
  EXPECT_EQ(alice->RemoteIdentity(bob.address), old_key);  // nothing stored

  // Incoming messages from the new key are refused as well.
  Connect(bob, alice);
  absl::StatusOr<Ciphertext> ct = bob->Encrypt(alice.address, "it's me");
  ASSERT_TRUE(ct.ok());
  absl::StatusOr<std::string> pt = alice->Decrypt(bob.address, *ct);
  EXPECT_EQ(pt.status().code(), absl::StatusCode::kFailedPrecondition);

  // The user saw the new safety number and chose to continue unverified.
  ASSERT_TRUE(alice->MarkUnverified("bob").ok());
  pt = alice->Decrypt(bob.address, *ct);  // the app kept the message
  ASSERT_TRUE(pt.ok()) << pt.status();
  EXPECT_EQ(*pt, "it's me");
  changes = alice->TakeIdentityChanges();
  ASSERT_FALSE(changes.empty());
  EXPECT_FALSE(changes.back().blocked);
  EXPECT_FALSE(alice->IsVerified("bob"));
  Send(alice, bob, "ok", MessageType::kSignal);
}

TEST_F(CryptoTest, GroupsWithSenderKeysAndRotation) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  Device& carol = NewDevice("carol");
  std::vector<Device*> members = {&alice, &bob, &carol};
  for (Device* a : members) {
    for (Device* b : members) {
      if (a != b && !(*a)->HasSession(b->address)) {
        Connect(*a, *b);
        Send(*a, *b, "hello", MessageType::kPreKey);
      }
    }
  }
  const std::string group = "group:family";
  // Each member distributes its sender key over the pairwise sessions.
  auto distribute = [&](Device& from, const std::vector<Device*>& to) {
    absl::StatusOr<std::string> skdm = from->CreateSenderKeyDistribution(group);
    ASSERT_TRUE(skdm.ok()) << skdm.status();
    for (Device* m : to) {
      absl::StatusOr<Ciphertext> ct = from->Encrypt(m->address, *skdm);
      ASSERT_TRUE(ct.ok()) << ct.status();
      absl::StatusOr<std::string> got = (*m)->Decrypt(from.address, *ct);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_TRUE((*m)->ProcessSenderKeyDistribution(group, from.address, *got).ok());
    }
  };
  distribute(alice, {&bob, &carol});
  distribute(bob, {&alice, &carol});
  distribute(carol, {&alice, &bob});

  for (Device* sender : members) {
    for (int i = 0; i < 3; ++i) {
      const std::string text = absl::StrCat(sender->address.name, " says ", i);
      absl::StatusOr<std::string> ct = (*sender)->GroupEncrypt(group, text);
      ASSERT_TRUE(ct.ok()) << ct.status();
      EXPECT_FALSE(absl::StrContains(*ct, text));
      for (Device* r : members) {
        if (r == sender) continue;
        absl::StatusOr<std::string> pt = (*r)->GroupDecrypt(group, sender->address, *ct);
        ASSERT_TRUE(pt.ok()) << pt.status();
        EXPECT_EQ(*pt, text);
      }
    }
  }
  // Duplicate group message.
  absl::StatusOr<std::string> ct = alice->GroupEncrypt(group, "once");
  ASSERT_TRUE(ct.ok());
  ASSERT_TRUE(bob->GroupDecrypt(group, alice.address, *ct).ok());
  EXPECT_EQ(bob->GroupDecrypt(group, alice.address, *ct).status().code(),
            absl::StatusCode::kAlreadyExists);
  // A message claimed to come from another sender does not verify.
  EXPECT_FALSE(bob->GroupDecrypt(group, carol.address, *ct).ok());

  // Carol leaves: alice rotates and redistributes to bob only.
  ASSERT_TRUE(alice->RotateSenderKey(group).ok());
  EXPECT_EQ(alice->GroupEncrypt(group, "x").status().code(),
            absl::StatusCode::kFailedPrecondition);
  distribute(alice, {&bob});
  absl::StatusOr<std::string> secret = alice->GroupEncrypt(group, "after carol left");
  ASSERT_TRUE(secret.ok());
  EXPECT_EQ(*bob->GroupDecrypt(group, alice.address, *secret), "after carol left");
  absl::StatusOr<std::string> leak = carol->GroupDecrypt(group, alice.address, *secret);
  EXPECT_FALSE(leak.ok());
  EXPECT_EQ(leak.status().code(), absl::StatusCode::kNotFound) << leak.status();
  // Unknown group.
  EXPECT_EQ(bob->GroupDecrypt("other", alice.address, *secret).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CryptoTest, SafetyNumber) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  absl::StatusOr<std::string> a = alice->SafetyNumber("alice", "bob", bob->identity_key());
  absl::StatusOr<std::string> b = bob->SafetyNumber("bob", "alice", alice->identity_key());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*a, *b);
  ASSERT_EQ(a->size(), 60u);
  for (char c : *a) EXPECT_TRUE(c >= '0' && c <= '9');
  Device& mallory = NewDevice("mallory");
  EXPECT_NE(*alice->SafetyNumber("alice", "bob", mallory->identity_key()), *a);
  EXPECT_EQ(alice->SafetyNumber("alice", "bob", PublicKey::FromSerialized("junk"))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

void CheckPrivate(const std::string& path, int* files) {
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0) << path;
  if (S_ISDIR(st.st_mode)) {
    EXPECT_EQ(st.st_mode & 0777, 0700u) << path;
    for (const auto& e : std::filesystem::directory_iterator(path)) {
      CheckPrivate(e.path().string(), files);
    }
  } else {
    EXPECT_EQ(st.st_mode & 0777, 0600u) << path;
    ++*files;
  }
}

TEST_F(CryptoTest, StoreFilesArePrivate) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  Connect(alice, bob);
  Send(alice, bob, "some text", MessageType::kPreKey);
  int files = 0;
  CheckPrivate(alice.dir, &files);  // while open (LOCK, WAL, MANIFEST...)
  EXPECT_GE(files, 3);
  alice.crypto.reset();
  files = 0;
  CheckPrivate(alice.dir, &files);
  EXPECT_GE(files, 3);
  EXPECT_TRUE(std::filesystem::exists(alice.dir + "/keystore/CURRENT"));
}

TEST_F(CryptoTest, SignedPreKeyRotation) {
  Device& alice = NewDevice("alice");
  Device& alice2 = NewDevice("alice", 2);
  Device& bob = NewDevice("bob");
  const absl::Time t0 = absl::Now();
  absl::StatusOr<PreKeyUpload> up0 = bob->CurrentPreKeys();
  ASSERT_TRUE(up0.ok());
  EXPECT_FALSE(*bob->RotateSignedPreKeyIfDue(t0));
  PreKeyBundle old_bundle = directory_.Fetch(bob.address);
  PreKeyBundle old_bundle2 = directory_.Fetch(bob.address);

  EXPECT_TRUE(*bob->RotateSignedPreKeyIfDue(t0 + absl::Hours(24 * 8)));
  absl::StatusOr<PreKeyUpload> up1 = bob->CurrentPreKeys();
  ASSERT_TRUE(up1.ok());
  EXPECT_NE(up1->signed_pre_key.id, up0->signed_pre_key.id);
  EXPECT_EQ(up1->identity_key, up0->identity_key);
  EXPECT_FALSE(*bob->RotateSignedPreKeyIfDue(t0 + absl::Hours(24 * 9)));

  // Within the grace period a bundle with the old signed pre-key still works.
  ASSERT_TRUE(alice->ProcessBundle(bob.address, old_bundle).ok());
  Send(alice, bob, "old spk", MessageType::kPreKey);

  // 31 days after the replacement the old key is gone.
  EXPECT_TRUE(*bob->RotateSignedPreKeyIfDue(t0 + absl::Hours(24 * (8 + 31))));
  ASSERT_TRUE(alice2->ProcessBundle(bob.address, old_bundle2).ok());
  absl::StatusOr<Ciphertext> ct = alice2->Encrypt(bob.address, "too late");
  ASSERT_TRUE(ct.ok());
  absl::StatusOr<std::string> pt = bob->Decrypt(alice2.address, *ct);
  EXPECT_EQ(pt.status().code(), absl::StatusCode::kNotFound) << pt.status();
  // The previous (second) key is still inside its grace period.
  directory_.Upload(bob.address, *bob->GeneratePreKeys(1));
  Connect(alice2, bob);
  Send(alice2, bob, "fresh", MessageType::kPreKey);
}

TEST_F(CryptoTest, ErrorsAreMapped) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  EXPECT_EQ(alice->Encrypt(bob.address, "x").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(alice->RemoteRegistrationId(bob.address).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(alice->Encrypt(Address{"", 1}, "x").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(alice->Encrypt(Address{"bob", 0}, "x").status().code(),
            absl::StatusCode::kInvalidArgument);

  Ciphertext garbage{MessageType::kSignal, "not a message", 0};
  EXPECT_EQ(alice->Decrypt(bob.address, garbage).status().code(),
            absl::StatusCode::kInvalidArgument);
  garbage.type = MessageType::kPreKey;
  EXPECT_EQ(alice->Decrypt(bob.address, garbage).status().code(),
            absl::StatusCode::kInvalidArgument);

  // A bundle whose signed pre-key signature does not verify.
  PreKeyBundle forged = directory_.Fetch(bob.address);
  forged.signed_pre_key.signature[3] ^= 1;
  absl::Status s = alice->ProcessBundle(bob.address, forged);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_FALSE(alice->HasSession(bob.address));
  forged = directory_.Fetch(bob.address);
  forged.identity_key = PublicKey::FromSerialized("short");
  EXPECT_EQ(alice->ProcessBundle(bob.address, forged).code(),
            absl::StatusCode::kInvalidArgument);
  forged = directory_.Fetch(bob.address);
  forged.device_id = 7;
  EXPECT_EQ(alice->ProcessBundle(bob.address, forged).code(),
            absl::StatusCode::kInvalidArgument);

  // SignalMessage without a session.
  Device& carol = NewDevice("carol");
  Connect(alice, carol);
  Send(alice, carol, "first message", MessageType::kPreKey);
  Send(carol, alice, "second message", MessageType::kSignal);
  absl::StatusOr<Ciphertext> ct = alice->Encrypt(carol.address, "third message");
  ASSERT_TRUE(ct.ok());
  EXPECT_EQ(bob->Decrypt(alice.address, *ct).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(alice->GroupEncrypt("g", "x").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(alice->ProcessSenderKeyDistribution("g", bob.address, "junk").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(alice->GeneratePreKeys(-1).status().code(),
            absl::StatusCode::kInvalidArgument);

  // A second Open of the same profile is refused (RocksDB LOCK).
  EXPECT_FALSE(DeviceCrypto::Open(alice.dir).ok());
}

TEST_F(CryptoTest, ConcurrentCallsAreSerialized) {
  Device& alice = NewDevice("alice");
  Device& bob = NewDevice("bob");
  Connect(alice, bob);
  Send(alice, bob, "start", MessageType::kPreKey);
  Send(bob, alice, "ok", MessageType::kSignal);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::vector<std::vector<Ciphertext>> out(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::StatusOr<Ciphertext> ct =
            alice->Encrypt(bob.address, absl::StrCat("t", t, "-", i));
        if (ct.ok()) out[t].push_back(*ct);
        (void)alice->HasSession(bob.address);
      }
    });
  }
  for (auto& th : threads) th.join();
  int decrypted = 0;
  for (int t = kThreads - 1; t >= 0; --t) {  // any order works
    ASSERT_EQ(out[t].size(), static_cast<size_t>(kPerThread));
    for (const Ciphertext& ct : out[t]) {
      absl::StatusOr<std::string> pt = bob->Decrypt(alice.address, ct);
      ASSERT_TRUE(pt.ok()) << pt.status();
      EXPECT_TRUE(absl::StartsWith(*pt, absl::StrCat("t", t, "-")));
      ++decrypted;
    }
  }
  EXPECT_EQ(decrypted, kThreads * kPerThread);
}

}  // namespace
}  // namespace parley::crypto
