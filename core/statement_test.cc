// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/statement.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::core {
namespace {

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/stmt_test.XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& data, int mode) {
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << data;
  }
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);
}

int FileMode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

v1::SecurityState SampleState() {
  v1::SecurityState s;
  s.set_mode(v1::SECURITY_MODE_E2EE);
  s.set_epoch(7);
  s.set_policy_revision("rev-3");
  s.set_rule_id("minors-e2ee");
  s.set_reason("E2EE by default");
  s.set_effective_at_ms(1700000000123);
  s.set_e2ee_ever_enabled(true);
  s.set_locked(true);
  s.mutable_pending()->set_new_mode(v1::SECURITY_MODE_TRANSPORT);
  s.mutable_pending()->set_effective_at_ms(1700000999000);
  s.mutable_pending()->set_reason("policy change");
  s.set_notice("Heads up");
  s.add_enable_requested_by("a_1");
  return s;
}

class StatementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_path_ = absl::StrCat(dir_.path(), "/keys/statement.key");
    auto signer = StatementSigner::LoadOrCreate(key_path_);
    ASSERT_TRUE(signer.ok()) << signer.status();
    signer_ = *std::move(signer);
  }

  TempDir dir_;
  std::string key_path_;
  std::unique_ptr<StatementSigner> signer_;
};

TEST_F(StatementTest, SigningInputHasContextAndNul) {
  EXPECT_EQ(statement::kSigningContext.size(), 29u);
  const std::string in = statement::SigningInput("abc");
  ASSERT_EQ(in.size(), 32u);
  EXPECT_EQ(in.substr(0, 28), "parley-security-statement-v1");
  EXPECT_EQ(in[28], '\0');
  EXPECT_EQ(in.substr(29), "abc");
}

TEST_F(StatementTest, CreatesKeyWithPrivatePermissions) {
  EXPECT_EQ(FileMode(key_path_), 0600);
  EXPECT_EQ(FileMode(absl::StrCat(dir_.path(), "/keys")), 0700);
  EXPECT_EQ(signer_->public_key().size(), 32u);
  EXPECT_EQ(signer_->key_id().size(), 16u);
  EXPECT_EQ(signer_->key_id(), statement::KeyId(signer_->public_key()));
  EXPECT_EQ(signer_->path(), key_path_);
  std::ifstream f(key_path_);
  std::string first;
  std::getline(f, first);
  EXPECT_EQ(first, "-----BEGIN PRIVATE KEY-----");
  // No temp file is left behind.
  int entries = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(absl::StrCat(dir_.path(), "/keys"))) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST_F(StatementTest, KeyPersistsAcrossLoads) {
  auto again = StatementSigner::LoadOrCreate(key_path_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->public_key(), signer_->public_key());
  EXPECT_EQ((*again)->key_id(), signer_->key_id());
  // A state signed by one instance verifies with the other's key.
  v1::SecurityState s = SampleState();
  ASSERT_TRUE((*again)->Sign("c_1", &s).ok());
  EXPECT_TRUE(statement::Verify(signer_->public_key(), s, "c_1").ok());
}

TEST_F(StatementTest, RoundTrip) {
  v1::SecurityState s = SampleState();
  ASSERT_TRUE(signer_->Sign("c_1", &s).ok());
  EXPECT_FALSE(s.signed_statement().empty());
  EXPECT_EQ(s.signature().size(), 64u);
  auto st = statement::Verify(signer_->public_key(), s, "c_1");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->version(), 1u);
  EXPECT_EQ(st->conversation_id(), "c_1");
  EXPECT_EQ(st->epoch(), 7u);
  EXPECT_EQ(st->mode(), v1::SECURITY_MODE_E2EE);
  EXPECT_EQ(st->policy_revision(), "rev-3");
  EXPECT_EQ(st->rule_id(), "minors-e2ee");
  EXPECT_EQ(st->effective_at_ms(), 1700000000123);
  EXPECT_EQ(st->pending_mode(), v1::SECURITY_MODE_TRANSPORT);
  EXPECT_EQ(st->pending_effective_at_ms(), 1700000999000);
  EXPECT_TRUE(st->locked());
  EXPECT_TRUE(st->e2ee_ever_enabled());
  EXPECT_EQ(st->server_key_id(), signer_->key_id());

  // Deterministic: signing the same state again gives the same bytes, and a
  // state without a pending change verifies too.
  v1::SecurityState again = SampleState();
  ASSERT_TRUE(signer_->Sign("c_1", &again).ok());
  EXPECT_EQ(again.signed_statement(), s.signed_statement());
  EXPECT_EQ(again.signature(), s.signature());
  v1::SecurityState plain;
  plain.set_mode(v1::SECURITY_MODE_TRANSPORT);
  plain.set_epoch(1);
  ASSERT_TRUE(signer_->Sign("c_2", &plain).ok());
  EXPECT_TRUE(statement::Verify(signer_->public_key(), plain, "c_2").ok());
}

TEST_F(StatementTest, SignReplacesAnOldSignature) {
  v1::SecurityState s = SampleState();
  ASSERT_TRUE(signer_->Sign("c_1", &s).ok());
  s.set_epoch(8);
  s.set_mode(v1::SECURITY_MODE_TRANSPORT);
  ASSERT_TRUE(signer_->Sign("c_1", &s).ok());
  auto st = statement::Verify(signer_->public_key(), s, "c_1");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->epoch(), 8u);
  EXPECT_FALSE(signer_->Sign("", &s).ok());
}

TEST_F(StatementTest, UnsignedFieldsMayChange) {
  v1::SecurityState s = SampleState();
  ASSERT_TRUE(signer_->Sign("c_1", &s).ok());
  s.set_reason("other words");
  s.set_notice("");
  s.clear_enable_requested_by();
  s.add_disable_requested_by("a_2");
  s.set_set_by_participants(true);
  s.mutable_pending()->set_reason("x");
  EXPECT_TRUE(statement::Verify(signer_->public_key(), s, "c_1").ok());
}

TEST_F(StatementTest, TamperedVisibleFieldsAreRefused) {
  struct Case {
    const char* name;
    std::function<void(v1::SecurityState*)> tamper;
    const char* field;
  };
  const Case cases[] = {
      {"mode", [](v1::SecurityState* s) { s->set_mode(v1::SECURITY_MODE_TRANSPORT); }, "mode"},
      {"epoch", [](v1::SecurityState* s) { s->set_epoch(8); }, "epoch"},
      {"revision", [](v1::SecurityState* s) { s->set_policy_revision("rev-4"); }, "policy_revision"},
      {"rule", [](v1::SecurityState* s) { s->set_rule_id("other"); }, "rule_id"},
      {"effective", [](v1::SecurityState* s) { s->set_effective_at_ms(1); }, "effective_at_ms"},
      {"pending mode",
       [](v1::SecurityState* s) { s->mutable_pending()->set_new_mode(v1::SECURITY_MODE_OPT_IN); },
       "pending mode"},
      {"pending cleared", [](v1::SecurityState* s) { s->clear_pending(); }, "pending mode"},
      {"pending at",
       [](v1::SecurityState* s) { s->mutable_pending()->set_effective_at_ms(5); },
       "pending effective_at_ms"},
      {"locked", [](v1::SecurityState* s) { s->set_locked(false); }, "locked"},
      {"ever", [](v1::SecurityState* s) { s->set_e2ee_ever_enabled(false); }, "e2ee_ever_enabled"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::SecurityState s = SampleState();
    ASSERT_TRUE(signer_->Sign("c_1", &s).ok());
    c.tamper(&s);
    auto st = statement::Verify(signer_->public_key(), s, "c_1");
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(st.status().message(),
                HasSubstr(absl::StrCat("disagrees with the state's ", c.field)));
  }
}

TEST_F(StatementTest, TamperedStatementOrSignatureIsRefused) {
  v1::SecurityState signed_state = SampleState();
  ASSERT_TRUE(signer_->Sign("c_1", &signed_state).ok());

  // Each statement field changed (and the visible field along with it, so
  // only the signature can catch it).
  struct Case {
    const char* name;
    std::function<void(v1::SecurityStatement*)> tamper;
  };
  const Case cases[] = {
      {"version", [](v1::SecurityStatement* t) { t->set_version(2); }},
      {"conversation", [](v1::SecurityStatement* t) { t->set_conversation_id("c_2"); }},
      {"epoch", [](v1::SecurityStatement* t) { t->set_epoch(99); }},
      {"mode", [](v1::SecurityStatement* t) { t->set_mode(v1::SECURITY_MODE_TRANSPORT); }},
      {"revision", [](v1::SecurityStatement* t) { t->set_policy_revision("r"); }},
      {"rule", [](v1::SecurityStatement* t) { t->set_rule_id("r"); }},
      {"effective", [](v1::SecurityStatement* t) { t->set_effective_at_ms(2); }},
      {"pending mode", [](v1::SecurityStatement* t) { t->set_pending_mode(v1::SECURITY_MODE_E2EE); }},
      {"pending at", [](v1::SecurityStatement* t) { t->set_pending_effective_at_ms(3); }},
      {"locked", [](v1::SecurityStatement* t) { t->set_locked(false); }},
      {"key id", [](v1::SecurityStatement* t) { t->set_server_key_id("0000000000000000"); }},
      {"ever", [](v1::SecurityStatement* t) { t->set_e2ee_ever_enabled(false); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::SecurityStatement t;
    ASSERT_TRUE(t.ParseFromString(signed_state.signed_statement()));
    c.tamper(&t);
    v1::SecurityState s = signed_state;
    s.set_epoch(t.epoch());
    s.set_mode(t.mode());
    s.set_policy_revision(t.policy_revision());
    s.set_rule_id(t.rule_id());
    s.set_effective_at_ms(t.effective_at_ms());
    s.mutable_pending()->set_new_mode(t.pending_mode());
    s.mutable_pending()->set_effective_at_ms(t.pending_effective_at_ms());
    s.set_locked(t.locked());
    s.set_e2ee_ever_enabled(t.e2ee_ever_enabled());
    auto bytes = statement::Serialize(t);
    ASSERT_TRUE(bytes.ok());
    s.set_signed_statement(*bytes);
    auto st = statement::Verify(signer_->public_key(), s, t.conversation_id());
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(st.status().message(), HasSubstr("bad signature"));
  }

  // Flipped bit, truncated, extended or missing signature; extra bytes in
  // the statement.
  for (int i : {0, 31, 63}) {
    v1::SecurityState s = signed_state;
    std::string sig = s.signature();
    sig[static_cast<size_t>(i)] ^= 0x01;
    s.set_signature(sig);
    EXPECT_THAT(
        statement::Verify(signer_->public_key(), s, "c_1").status().message(),
        HasSubstr("bad signature"));
  }
  {
    v1::SecurityState s = signed_state;
    s.set_signature(s.signature().substr(0, 63));
    EXPECT_THAT(
        statement::Verify(signer_->public_key(), s, "c_1").status().message(),
        HasSubstr("bad signature (63 bytes"));
    s.set_signature(signed_state.signature() + "x");
    EXPECT_FALSE(statement::Verify(signer_->public_key(), s, "c_1").ok());
  }
  {
    v1::SecurityState s = signed_state;
    s.set_signed_statement(s.signed_statement() + std::string("\x60\x01", 2));
    EXPECT_THAT(
        statement::Verify(signer_->public_key(), s, "c_1").status().message(),
        HasSubstr("bad signature"));
  }
  {
    v1::SecurityState s = signed_state;
    s.clear_signature();
    auto st = statement::Verify(signer_->public_key(), s, "c_1");
    EXPECT_EQ(st.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(st.status().message(), HasSubstr("not signed"));
    s = signed_state;
    s.clear_signed_statement();
    EXPECT_THAT(
        statement::Verify(signer_->public_key(), s, "c_1").status().message(),
        HasSubstr("not signed"));
  }
}

TEST_F(StatementTest, WrongConversationIsRefused) {
  v1::SecurityState s = SampleState();
  ASSERT_TRUE(signer_->Sign("c_1", &s).ok());
  auto st = statement::Verify(signer_->public_key(), s, "c_2");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(st.status().message(), HasSubstr("wrong conversation"));
  EXPECT_THAT(st.status().message(), HasSubstr("c_1"));
}

TEST_F(StatementTest, WrongKeyIsRefused) {
  TempDir other_dir;
  auto other = StatementSigner::LoadOrCreate(other_dir.path() + "/k");
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_NE((*other)->public_key(), signer_->public_key());
  v1::SecurityState s = SampleState();
  ASSERT_TRUE((*other)->Sign("c_1", &s).ok());
  auto st = statement::Verify(signer_->public_key(), s, "c_1");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(st.status().message(), HasSubstr("bad signature"));
  EXPECT_THAT(st.status().message(), HasSubstr((*other)->key_id()));
  EXPECT_THAT(st.status().message(), HasSubstr(signer_->key_id()));

  EXPECT_EQ(statement::Verify("short", s, "c_1").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(StatementTest, SignedButMalformedStatementsAreRefused) {
  auto sign_raw = [&](const std::string& statement) {
    v1::SecurityState s = SampleState();
    s.set_signed_statement(statement);
    auto sig = signer_->SignBytes(statement::SigningInput(statement));
    EXPECT_TRUE(sig.ok());
    s.set_signature(*sig);
    return s;
  };
  const v1::SecurityStatement good =
      statement::FromState("c_1", SampleState(), signer_->key_id());
  {
    v1::SecurityState s = sign_raw("\xff\xff\xff");
    EXPECT_THAT(
        statement::Verify(signer_->public_key(), s, "c_1").status().message(),
        HasSubstr("does not parse"));
  }
  {
    v1::SecurityStatement t = good;
    t.set_version(2);
    v1::SecurityState s = sign_raw(*statement::Serialize(t));
    EXPECT_THAT(
        statement::Verify(signer_->public_key(), s, "c_1").status().message(),
        HasSubstr("unsupported statement version 2"));
  }
  {
    v1::SecurityStatement t = good;
    t.set_server_key_id("feedfacefeedface");
    v1::SecurityState s = sign_raw(*statement::Serialize(t));
    EXPECT_THAT(
        statement::Verify(signer_->public_key(), s, "c_1").status().message(),
        HasSubstr("names server key \"feedfacefeedface\""));
  }
  {
    // Signed without the context prefix: refused.
    v1::SecurityState s = SampleState();
    const std::string bytes = *statement::Serialize(good);
    s.set_signed_statement(bytes);
    s.set_signature(*signer_->SignBytes(bytes));
    EXPECT_THAT(
        statement::Verify(signer_->public_key(), s, "c_1").status().message(),
        HasSubstr("bad signature"));
  }
  {
    v1::SecurityState s = sign_raw(*statement::Serialize(good));
    EXPECT_TRUE(statement::Verify(signer_->public_key(), s, "c_1").ok());
  }
}

TEST(StatementKeyFileTest, WrongPermissionsAreRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/statement.key";
  ASSERT_TRUE(StatementSigner::LoadOrCreate(path).ok());
  for (int mode : {0640, 0604, 0644, 0660}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto s = StatementSigner::LoadOrCreate(path);
    ASSERT_FALSE(s.ok()) << mode;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(s.status().message(), HasSubstr(path));
    EXPECT_THAT(s.status().message(), HasSubstr("chmod 600"));
  }
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(StatementSigner::LoadOrCreate(path).ok());
}

TEST(StatementKeyFileTest, CorruptContentIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/statement.key";
  for (const std::string& content :
       {std::string(), std::string("hello"), std::string(31, 'x'),
        std::string("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}) {
    WriteFile(path, content, 0600);
    auto s = StatementSigner::LoadOrCreate(path);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
    EXPECT_THAT(s.status().message(), HasSubstr(path));
    EXPECT_THAT(s.status().message(), HasSubstr("corrupt"));
  }
  // The corrupt file is not replaced by a new key.
  std::ifstream f(path);
  std::string first;
  std::getline(f, first);
  EXPECT_EQ(first, "-----BEGIN PRIVATE KEY-----");
  EXPECT_FALSE(StatementSigner::LoadOrCreate(path).ok());
}

TEST(StatementKeyFileTest, OtherKeyTypesAreRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/statement.key";
  EVP_PKEY* ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ASSERT_NE(ec, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  ASSERT_EQ(PEM_write_bio_PrivateKey(bio, ec, nullptr, nullptr, 0, nullptr, nullptr), 1);
  char* p = nullptr;
  const long n = BIO_get_mem_data(bio, &p);
  const std::string pem(p, static_cast<size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(ec);
  WriteFile(path, pem, 0600);
  auto s = StatementSigner::LoadOrCreate(path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.status().message(), HasSubstr("not an Ed25519 key"));
  EXPECT_THAT(s.status().message(), HasSubstr(path));
}

TEST(StatementKeyFileTest, NotARegularFileOrSymlinkIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/statement.key";
  ASSERT_EQ(::mkdir(path.c_str(), 0700), 0);
  auto s = StatementSigner::LoadOrCreate(path);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr(path));

  const std::string real = dir.path() + "/real.key";
  ASSERT_TRUE(StatementSigner::LoadOrCreate(real).ok());
  const std::string link = dir.path() + "/link.key";
  ASSERT_EQ(::symlink(real.c_str(), link.c_str()), 0);
  s = StatementSigner::LoadOrCreate(link);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("symbolic link"));
}

// RFC 8032 section 7.1, TEST 1: a raw 32-byte private key file is accepted
// and the signer is plain Ed25519.
TEST(StatementKeyFileTest, RawKeyMatchesRfc8032) {
  TempDir dir;
  const std::string path = dir.path() + "/statement.key";
  WriteFile(path,
            absl::HexStringToBytes(
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
            0600);
  auto s = StatementSigner::LoadOrCreate(path);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(absl::BytesToHexString((*s)->public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  auto sig = (*s)->SignBytes("");
  ASSERT_TRUE(sig.ok());
  EXPECT_EQ(absl::BytesToHexString(*sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
            "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
}

}  // namespace
}  // namespace parley::core
