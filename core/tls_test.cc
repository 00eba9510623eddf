// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/tls.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "gtest/gtest.h"

namespace parley::core {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/parley_tls_XXXXXX";
  return mkdtemp(tmpl);
}

X509* ParseCert(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* c = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return c;
}

// A CA and a leaf certificate, parsed from PEM; freed on destruction.
struct Chain {
  Chain(const std::string& ca_pem, const std::string& leaf_pem)
      : ca(ParseCert(ca_pem)), leaf(ParseCert(leaf_pem)) {}
  ~Chain() {
    X509_free(ca);
    X509_free(leaf);
  }
  // "" when the leaf verifies against the CA, else OpenSSL's reason.
  std::string Verify() const {
    if (ca == nullptr || leaf == nullptr) return "unparsable PEM";
    X509_STORE* store = X509_STORE_new();
    X509_STORE_add_cert(store, ca);
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf, nullptr);
    std::string err;
    if (X509_verify_cert(ctx) != 1) err = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return err;
  }
  X509* ca;
  X509* leaf;
};

TEST(Tls, GeneratesVerifiableChainAndReusesIt) {
  std::string dir = TempDir();
  auto m = EnsureLocalTls(dir + "/tls", {"127.0.0.1"});
  ASSERT_TRUE(m.ok()) << m.status();
  struct stat st;
  ASSERT_EQ(stat((dir + "/tls/server.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(stat((dir + "/tls/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);

  // The server certificate verifies against the CA and names 127.0.0.1.
  auto ca_pem = ReadFile(m->ca_cert_path);
  ASSERT_TRUE(ca_pem.ok());
  Chain chain(*ca_pem, m->cert_chain_pem);
  EXPECT_EQ(chain.Verify(), "");
  EXPECT_EQ(X509_check_ip_asc(chain.leaf, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_host(chain.leaf, "localhost", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(chain.leaf, "example.com", 0, 0, nullptr), 1);

  auto again = EnsureLocalTls(dir + "/tls", {"127.0.0.1"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->cert_chain_pem, m->cert_chain_pem);  // reused, not regenerated
  std::filesystem::remove_all(dir);
}

// In memory (the null server's throw-away material): the chain verifies, the
// extra host is in the certificate, wildcard listen addresses are not.
TEST(Tls, GenerateTlsInMemory) {
  auto g = GenerateTls("test CA", "test server", {"10.1.2.3", "0.0.0.0", "example.org"}, 2, 1);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_NE(g->ca_key_pem.find("PRIVATE KEY-----"), std::string::npos);
  EXPECT_NE(g->key_pem.find("PRIVATE KEY-----"), std::string::npos);
  EXPECT_NE(g->ca_key_pem, g->key_pem);
  Chain chain(g->ca_cert_pem, g->cert_pem);
  EXPECT_EQ(chain.Verify(), "");
  EXPECT_EQ(X509_check_ip_asc(chain.leaf, "10.1.2.3", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(chain.leaf, "::1", 0), 1);
  EXPECT_NE(X509_check_ip_asc(chain.leaf, "0.0.0.0", 0), 1);
  EXPECT_EQ(X509_check_host(chain.leaf, "example.org", 0, 0, nullptr), 1);
}

TEST(Tls, LoadErrorsNameTheFile) {
  std::string dir = TempDir();
  auto missing = LoadTls(dir + "/nope.pem", dir + "/nope.key");
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.pem"), std::string::npos);
  ASSERT_TRUE(WriteFileAtomic(dir + "/bad.pem", "garbage", 0644).ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/bad.key", "garbage", 0600).ok());
  auto bad = LoadTls(dir + "/bad.pem", dir + "/bad.key");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace parley::core
