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
  X509* ca = ParseCert(*ca_pem);
  X509* leaf = ParseCert(m->cert_chain_pem);
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(leaf, nullptr);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  EXPECT_EQ(X509_verify_cert(ctx), 1) << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  EXPECT_EQ(X509_check_ip_asc(leaf, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_host(leaf, "localhost", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(leaf, "example.com", 0, 0, nullptr), 1);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(ca);
  X509_free(leaf);

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
  X509* ca = ParseCert(g->ca_cert_pem);
  X509* leaf = ParseCert(g->cert_pem);
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(leaf, nullptr);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  EXPECT_EQ(X509_verify_cert(ctx), 1) << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  EXPECT_EQ(X509_check_ip_asc(leaf, "10.1.2.3", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf, "::1", 0), 1);
  EXPECT_NE(X509_check_ip_asc(leaf, "0.0.0.0", 0), 1);
  EXPECT_EQ(X509_check_host(leaf, "example.org", 0, 0, nullptr), 1);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(ca);
  X509_free(leaf);
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
