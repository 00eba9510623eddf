// SPDX-License-Identifier: GPL-3.0-or-later
// StatementVerifier against states signed by the server's real signer
// (core/statement.h; only this test links core).
#include "clients/sdk/statement_verifier.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/statement.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley {
namespace {

using ::testing::HasSubstr;
using v1::SECURITY_MODE_E2EE;
using v1::SECURITY_MODE_OPT_IN;
using v1::SECURITY_MODE_TRANSPORT;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/verifier_test.XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

int FileMode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class VerifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto signer = core::StatementSigner::LoadOrCreate(
        absl::StrCat(tmp_.path(), "/server/keys/statement.key"));
    ASSERT_TRUE(signer.ok()) << signer.status();
    signer_ = *std::move(signer);
    profile_dir_ = absl::StrCat(tmp_.path(), "/profile");
  }

  // A state as parleyd would send it.
  v1::SecurityState State(const std::string& conversation_id, uint64_t epoch,
                          v1::SecurityMode mode, bool sign = true) const {
    v1::SecurityState s;
    s.set_mode(mode);
    s.set_epoch(epoch);
    s.set_policy_revision("rev-1");
    s.set_rule_id(mode == SECURITY_MODE_E2EE ? "e2ee" : "transport");
    s.set_reason("because");
    s.set_effective_at_ms(1700000000000 + static_cast<int64_t>(epoch));
    s.set_e2ee_ever_enabled(mode == SECURITY_MODE_E2EE);
    if (sign) {
      EXPECT_TRUE(signer_->Sign(conversation_id, &s).ok());
    }
    return s;
  }

  std::unique_ptr<StatementVerifier> NewVerifier(
      StatementVerifierOptions options = {}) const {
    auto v = StatementVerifier::Create(signer_->public_key(), profile_dir_,
                                       std::move(options));
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *std::move(v) : nullptr;
  }

  TempDir tmp_;
  std::unique_ptr<core::StatementSigner> signer_;
  std::string profile_dir_;
};

// ------------------------------------------------------- the verifier

TEST_F(VerifierTest, CreateRefusesBadKey) {
  auto v = StatementVerifier::Create("short", profile_dir_);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(VerifierTest, VerifiedUpgradeThenDowngrade) {
  auto v = NewVerifier();
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->server_key_id(), signer_->key_id());

  // Transport at first: plaintext fine.
  const auto t1 = State("c_1", 1, SECURITY_MODE_TRANSPORT);
  ASSERT_TRUE(v->Observe("c_1", t1).ok());
  EXPECT_TRUE(v->CheckPlaintextAllowed("c_1", t1).ok());
  EXPECT_FALSE(v->Remembered("c_1")->e2ee_verified());

  // Upgrade to E2EE: never plaintext.
  const auto e2 = State("c_1", 2, SECURITY_MODE_E2EE);
  ASSERT_TRUE(v->Observe("c_1", e2).ok());
  auto r = v->Remembered("c_1");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->epoch, 2u);
  EXPECT_EQ(r->mode, SECURITY_MODE_E2EE);
  EXPECT_EQ(r->e2ee_epoch, 2u);
  EXPECT_TRUE(r->e2ee_verified());
  EXPECT_EQ(r->signed_statement, e2.signed_statement());
  EXPECT_EQ(v->CheckPlaintextAllowed("c_1", e2).code(),
            absl::StatusCode::kFailedPrecondition);
  // The old transport state is a replay now.
  absl::Status s = v->CheckPlaintextAllowed("c_1", t1);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;

  // A verified, newer downgrade: plaintext allowed again.
  const auto o3 = State("c_1", 3, SECURITY_MODE_OPT_IN);
  EXPECT_TRUE(v->CheckPlaintextAllowed("c_1", o3).ok());
  r = v->Remembered("c_1");
  EXPECT_EQ(r->epoch, 3u);  // CheckPlaintextAllowed observed it
  EXPECT_EQ(r->mode, SECURITY_MODE_OPT_IN);
  EXPECT_EQ(r->e2ee_epoch, 2u);

  // E2EE again, then the epoch-3 downgrade replayed: refused.
  ASSERT_TRUE(v->Observe("c_1", State("c_1", 4, SECURITY_MODE_E2EE)).ok());
  s = v->CheckPlaintextAllowed("c_1", o3);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("older than the verified state of epoch 4"));
  EXPECT_TRUE(
      v->CheckPlaintextAllowed("c_1", State("c_1", 5, SECURITY_MODE_TRANSPORT)).ok());
  // Observing the same state again is fine.
  EXPECT_TRUE(v->Observe("c_1", State("c_1", 5, SECURITY_MODE_TRANSPORT)).ok());
}

TEST_F(VerifierTest, ReplayOfOlderEpochIsRefused) {
  auto v = NewVerifier();
  ASSERT_TRUE(v->Observe("c_1", State("c_1", 5, SECURITY_MODE_TRANSPORT)).ok());
  absl::Status s = v->Observe("c_1", State("c_1", 4, SECURITY_MODE_TRANSPORT));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("epoch 4"));
  EXPECT_THAT(s.message(), HasSubstr("older than the verified state of epoch 5"));
  EXPECT_EQ(v->Remembered("c_1")->epoch, 5u);

  // An old verified E2EE state (e.g. SecurityChange.old_state from the
  // backlog) is not current, but still teaches that E2EE was on at epoch 3.
  s = v->Observe("c_1", State("c_1", 3, SECURITY_MODE_E2EE));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(v->Remembered("c_1")->e2ee_epoch, 3u);
  EXPECT_EQ(v->Remembered("c_1")->epoch, 5u);
  EXPECT_TRUE(
      v->CheckPlaintextAllowed("c_1", State("c_1", 5, SECURITY_MODE_TRANSPORT)).ok());

  // Verify() labels history without remembering it.
  auto st = v->Verify("c_1", State("c_1", 1, SECURITY_MODE_TRANSPORT));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->epoch(), 1u);
  EXPECT_EQ(v->Remembered("c_1")->epoch, 5u);
}

TEST_F(VerifierTest, ConflictingStatesForOneEpochAreRefused) {
  auto v = NewVerifier();
  ASSERT_TRUE(v->Observe("c_1", State("c_1", 2, SECURITY_MODE_E2EE)).ok());
  absl::Status s = v->Observe("c_1", State("c_1", 2, SECURITY_MODE_TRANSPORT));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("two different states for epoch 2"));
  EXPECT_EQ(v->Remembered("c_1")->mode, SECURITY_MODE_E2EE);
  EXPECT_FALSE(
      v->CheckPlaintextAllowed("c_1", State("c_1", 2, SECURITY_MODE_TRANSPORT)).ok());
}

TEST_F(VerifierTest, ForgedStatesAreRefused) {
  auto v = NewVerifier();
  ASSERT_TRUE(v->Observe("c_1", State("c_1", 2, SECURITY_MODE_E2EE)).ok());

  // Flipped signature bit on a newer downgrade.
  v1::SecurityState forged = State("c_1", 3, SECURITY_MODE_TRANSPORT);
  std::string sig = forged.signature();
  sig[0] ^= 0x01;
  forged.set_signature(sig);
  absl::Status s = v->Observe("c_1", forged);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("bad signature"));
  s = v->CheckPlaintextAllowed("c_1", forged);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(v->Remembered("c_1")->epoch, 2u);

  // Visible mode changed under a genuine E2EE statement.
  v1::SecurityState relabelled = State("c_1", 3, SECURITY_MODE_E2EE);
  relabelled.set_mode(SECURITY_MODE_TRANSPORT);
  s = v->CheckPlaintextAllowed("c_1", relabelled);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("disagrees with the state's mode"));

  // A genuine downgrade of another conversation, replayed here.
  v1::SecurityState other = State("c_2", 3, SECURITY_MODE_TRANSPORT);
  s = v->CheckPlaintextAllowed("c_1", other);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("wrong conversation"));

  // Signed by another key.
  TempDir other_dir;
  auto other_signer =
      core::StatementSigner::LoadOrCreate(other_dir.path() + "/k.key");
  ASSERT_TRUE(other_signer.ok());
  v1::SecurityState foreign = State("c_1", 3, SECURITY_MODE_TRANSPORT, false);
  ASSERT_TRUE((*other_signer)->Sign("c_1", &foreign).ok());
  s = v->CheckPlaintextAllowed("c_1", foreign);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr((*other_signer)->key_id()));

  // A forged state for a conversation never seen as E2EE is refused too.
  v1::SecurityState forged_plain = State("c_9", 1, SECURITY_MODE_TRANSPORT);
  forged_plain.set_signature(std::string(64, 'x'));
  EXPECT_EQ(v->CheckPlaintextAllowed("c_9", forged_plain).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(v->Observe("c_9", forged_plain).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(v->Remembered("c_2"), std::nullopt);
  EXPECT_EQ(v->Remembered("c_9"), std::nullopt);
}

TEST_F(VerifierTest, UnsignedStates) {
  auto v = NewVerifier();
  // Never E2EE: unsigned transport lowers nothing.
  const auto plain = State("c_1", 1, SECURITY_MODE_TRANSPORT, /*sign=*/false);
  EXPECT_TRUE(v->Observe("c_1", plain).ok());
  EXPECT_TRUE(v->CheckPlaintextAllowed("c_1", plain).ok());

  // Verified E2EE, then an unsigned downgrade: refused.
  ASSERT_TRUE(v->Observe("c_1", State("c_1", 2, SECURITY_MODE_E2EE)).ok());
  const auto down = State("c_1", 3, SECURITY_MODE_TRANSPORT, /*sign=*/false);
  absl::Status s = v->Observe("c_1", down);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("not signed"));
  s = v->CheckPlaintextAllowed("c_1", down);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("without a signed statement"));

  // After a verified downgrade, an unsigned repeat of it lowers nothing.
  ASSERT_TRUE(v->Observe("c_1", State("c_1", 3, SECURITY_MODE_TRANSPORT)).ok());
  EXPECT_TRUE(v->Observe("c_1", down).ok());
  // ...but plaintext still needs the signed statement.
  EXPECT_FALSE(v->CheckPlaintextAllowed("c_1", down).ok());

  // An unsigned E2EE state raises protection: kept as unverified evidence,
  // and a downgrade must be verified past its epoch.
  const auto e5 = State("c_2", 5, SECURITY_MODE_E2EE, /*sign=*/false);
  EXPECT_TRUE(v->Observe("c_2", e5).ok());
  auto r = v->Remembered("c_2");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->unverified_e2ee_epoch, 5u);
  EXPECT_FALSE(r->e2ee_verified());
  EXPECT_EQ(r->e2ee_threshold(), 5u);
  EXPECT_EQ(v->CheckPlaintextAllowed("c_2", State("c_2", 5, SECURITY_MODE_TRANSPORT))
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(
      v->CheckPlaintextAllowed("c_2", State("c_2", 6, SECURITY_MODE_TRANSPORT)).ok());

  // require_signed: every unsigned state is refused.
  StatementVerifierOptions strict;
  strict.require_signed = true;
  auto sv = StatementVerifier::Create(signer_->public_key(), "", strict);
  ASSERT_TRUE(sv.ok());
  EXPECT_EQ((*sv)->Observe("c_3", State("c_3", 1, SECURITY_MODE_E2EE, false)).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*sv)->CheckPlaintextAllowed(
                    "c_3", State("c_3", 1, SECURITY_MODE_TRANSPORT, false))
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE((*sv)->CheckPlaintextAllowed(
                      "c_3", State("c_3", 1, SECURITY_MODE_TRANSPORT))
                  .ok());
}

TEST_F(VerifierTest, PersistsAcrossRestarts) {
  {
    auto v = NewVerifier();
    ASSERT_TRUE(v->Observe("c_1", State("c_1", 2, SECURITY_MODE_E2EE)).ok());
    ASSERT_TRUE(v->Observe("c_2", State("c_2", 7, SECURITY_MODE_TRANSPORT)).ok());
    ASSERT_TRUE(v->NoteE2eeEvidence("c_3", 4).ok());
    ASSERT_TRUE(v->NoteE2eeEvidence("c_3", 2).ok());  // never lowers
    EXPECT_EQ(v->state_path(), profile_dir_ + "/security_states.json");
  }
  const std::string path = profile_dir_ + "/security_states.json";
  EXPECT_EQ(FileMode(path), 0600);
  EXPECT_EQ(FileMode(profile_dir_), 0700);
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(profile_dir_)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);  // no temp file left

  auto v = NewVerifier();
  ASSERT_NE(v, nullptr);
  auto r = v->Remembered("c_1");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->epoch, 2u);
  EXPECT_EQ(r->mode, SECURITY_MODE_E2EE);
  EXPECT_EQ(r->e2ee_epoch, 2u);
  EXPECT_EQ(r->signed_statement, State("c_1", 2, SECURITY_MODE_E2EE).signed_statement());
  EXPECT_EQ(v->Remembered("c_2")->epoch, 7u);
  EXPECT_EQ(v->Remembered("c_3")->unverified_e2ee_epoch, 4u);

  // Still sticky after the restart: unsigned or replayed downgrades refused.
  EXPECT_EQ(v->CheckPlaintextAllowed("c_1", State("c_1", 3, SECURITY_MODE_TRANSPORT, false))
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(v->Observe("c_2", State("c_2", 6, SECURITY_MODE_TRANSPORT)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(
      v->CheckPlaintextAllowed("c_3", State("c_3", 4, SECURITY_MODE_TRANSPORT)).ok());
  EXPECT_TRUE(
      v->CheckPlaintextAllowed("c_1", State("c_1", 3, SECURITY_MODE_TRANSPORT)).ok());
  v.reset();

  // And the verified downgrade was remembered as well.
  v = NewVerifier();
  EXPECT_EQ(v->Remembered("c_1")->epoch, 3u);
  EXPECT_EQ(v->Remembered("c_1")->e2ee_epoch, 2u);
}

TEST_F(VerifierTest, BadStateFilesAreRefused) {
  {
    auto v = NewVerifier();
    ASSERT_TRUE(v->Observe("c_1", State("c_1", 2, SECURITY_MODE_E2EE)).ok());
  }
  const std::string path = profile_dir_ + "/security_states.json";
  const std::string good = ReadAll(path);

  // Another pinned key: refused rather than silently forgotten.
  TempDir other_dir;
  auto other = core::StatementSigner::LoadOrCreate(other_dir.path() + "/k.key");
  ASSERT_TRUE(other.ok());
  auto v = StatementVerifier::Create((*other)->public_key(), profile_dir_);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(v.status().message(), HasSubstr(path));

  // Readable by others.
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  v = StatementVerifier::Create(signer_->public_key(), profile_dir_);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(v.status().message(), HasSubstr("chmod 600"));
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);

  // Corrupt.
  for (const std::string& bad :
       {std::string("{"), std::string("[]"), std::string("{\"version\": 2}"),
        good.substr(0, good.size() / 2)}) {
    { std::ofstream(path, std::ios::trunc) << bad; }
    v = StatementVerifier::Create(signer_->public_key(), profile_dir_);
    ASSERT_FALSE(v.ok()) << bad;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(v.status().message(), HasSubstr(path));
  }
  { std::ofstream(path, std::ios::trunc) << good; }
  EXPECT_TRUE(StatementVerifier::Create(signer_->public_key(), profile_dir_).ok());
}

TEST_F(VerifierTest, RefuseDowngrade) {
  StatementVerifierOptions o;
  o.refuse_downgrade = true;
  auto v = NewVerifier(o);
  ASSERT_TRUE(v->Observe("c_1", State("c_1", 2, SECURITY_MODE_E2EE)).ok());
  absl::Status s =
      v->CheckPlaintextAllowed("c_1", State("c_1", 3, SECURITY_MODE_TRANSPORT));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("refuses downgrades"));
  // The verified downgrade is remembered even though plaintext is refused.
  EXPECT_EQ(v->Remembered("c_1")->epoch, 3u);
  // Conversations never E2EE are unaffected.
  EXPECT_TRUE(
      v->CheckPlaintextAllowed("c_2", State("c_2", 1, SECURITY_MODE_TRANSPORT)).ok());
}

TEST_F(VerifierTest, ConfirmDowngrade) {
  StatementVerifierOptions o;
  int calls = 0;
  bool accept = false;
  o.confirm_downgrade = [&](const std::string& id,
                            const v1::SecurityStatement& st, uint64_t e2ee_epoch) {
    ++calls;
    EXPECT_EQ(id, "c_1");
    EXPECT_EQ(st.epoch(), 3u);
    EXPECT_EQ(st.mode(), SECURITY_MODE_TRANSPORT);
    EXPECT_EQ(e2ee_epoch, 2u);
    return accept ? absl::OkStatus()
                  : absl::FailedPreconditionError("user has not accepted");
  };
  auto v = NewVerifier(o);
  ASSERT_TRUE(v->Observe("c_1", State("c_1", 2, SECURITY_MODE_E2EE)).ok());
  const auto down = State("c_1", 3, SECURITY_MODE_TRANSPORT);
  EXPECT_THAT(v->CheckPlaintextAllowed("c_1", down).message(),
              HasSubstr("not accepted"));
  accept = true;
  EXPECT_TRUE(v->CheckPlaintextAllowed("c_1", down).ok());
  EXPECT_EQ(calls, 2);
  // Not consulted for conversations never E2EE.
  EXPECT_TRUE(
      v->CheckPlaintextAllowed("c_2", State("c_2", 1, SECURITY_MODE_TRANSPORT)).ok());
  EXPECT_EQ(calls, 2);
}

// Same shape as parley::SecurityVerifier in client.h (not included here so
// this test does not depend on the Client's sources).
class DowngradeVerifierInterface {
 public:
  virtual ~DowngradeVerifierInterface() = default;
  virtual absl::Status VerifyDowngrade(const std::string& conversation_id,
                                       const v1::SecurityState& current) = 0;
};

TEST_F(VerifierTest, PlugsInAsSecurityVerifier) {
  std::shared_ptr<StatementVerifier> v = NewVerifier();
  std::shared_ptr<DowngradeVerifierInterface> sv =
      AsSecurityVerifier<DowngradeVerifierInterface>(v);

  // The Client saw E2EE, the verifier was never told: refused.
  absl::Status s =
      sv->VerifyDowngrade("c_1", State("c_1", 3, SECURITY_MODE_TRANSPORT));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("no record"));
  // Unsigned: refused.
  s = sv->VerifyDowngrade("c_1", State("c_1", 3, SECURITY_MODE_TRANSPORT, false));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);

  // Told (a ciphertext message of epoch 2): a verified epoch-3 downgrade is
  // newer, a replayed epoch-2 one is not.
  ASSERT_TRUE(v->NoteE2eeEvidence("c_4", 2).ok());
  EXPECT_FALSE(
      sv->VerifyDowngrade("c_4", State("c_4", 2, SECURITY_MODE_TRANSPORT)).ok());
  EXPECT_TRUE(
      sv->VerifyDowngrade("c_4", State("c_4", 3, SECURITY_MODE_TRANSPORT)).ok());
  EXPECT_EQ(sv->VerifyDowngrade("c_4", State("c_4", 4, SECURITY_MODE_E2EE)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(VerifierTest, ConcurrentObservers) {
  auto v = NewVerifier();
  std::vector<v1::SecurityState> states;
  for (uint64_t e = 1; e <= 40; ++e) {
    states.push_back(State("c_1", e, e % 2 ? SECURITY_MODE_E2EE : SECURITY_MODE_TRANSPORT));
  }
  std::atomic<int> denied{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < states.size(); i += 4) {
        absl::Status s = v->Observe("c_1", states[i]);
        if (absl::IsPermissionDenied(s) || absl::IsInternal(s)) ++denied;
        (void)v->CheckPlaintextAllowed("c_1", states[i]);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(denied.load(), 0);
  EXPECT_EQ(v->Remembered("c_1")->epoch, 40u);
  EXPECT_EQ(v->Remembered("c_1")->e2ee_epoch, 39u);
  auto again = NewVerifier();
  EXPECT_EQ(again->Remembered("c_1")->epoch, 40u);
}

}  // namespace
}  // namespace parley
