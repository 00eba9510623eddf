// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/tls_gen.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace parley::bench {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Bio = std::unique_ptr<BIO, BioFree>;

absl::Status SslError(absl::string_view what) {
  char buf[256] = {0};
  unsigned long e = ERR_get_error();
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return absl::InternalError(
      absl::StrCat("null server TLS: ", what, ": ", buf));
}

absl::Status AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return SslError(absl::StrCat("extension ", value));
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1 ? absl::OkStatus() : SslError("X509_add_ext");
}

absl::StatusOr<Cert> MakeCert(EVP_PKEY* key, const char* cn, X509* issuer,
                              EVP_PKEY* issuer_key, bool ca) {
  Cert cert(X509_new());
  if (!cert) return SslError("X509_new");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return SslError("RAND_bytes");
  serial[0] &= 0x7F;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7L * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn), -1, -1,
                             0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  absl::Status s;
  if (ca) {
    s.Update(AddExt(cert.get(), signer, NID_basic_constraints,
                    "critical,CA:TRUE,pathlen:0"));
    s.Update(AddExt(cert.get(), signer, NID_key_usage,
                    "critical,keyCertSign,cRLSign"));
    s.Update(AddExt(cert.get(), signer, NID_subject_key_identifier, "hash"));
  } else {
    s.Update(
        AddExt(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE"));
    s.Update(
        AddExt(cert.get(), signer, NID_key_usage, "critical,digitalSignature"));
    s.Update(AddExt(cert.get(), signer, NID_ext_key_usage, "serverAuth"));
    s.Update(AddExt(cert.get(), signer, NID_authority_key_identifier,
                    "keyid:always"));
    s.Update(AddExt(cert.get(), signer, NID_subject_alt_name,
                    "DNS:localhost,IP:127.0.0.1,IP:::1"));
  }
  if (!s.ok()) return s;
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key,
                EVP_sha256()) == 0) {
    return SslError("X509_sign");
  }
  return cert;
}

std::string Drain(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

absl::StatusOr<GeneratedTls> GenerateLocalTls() {
  Pkey ca_key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!ca_key || !key) return SslError("P-256 key generation");
  auto ca = MakeCert(ca_key.get(), "parley-bench null server CA", nullptr,
                     nullptr, true);
  if (!ca.ok()) return ca.status();
  auto cert =
      MakeCert(key.get(), "parley-null-server", ca->get(), ca_key.get(), false);
  if (!cert.ok()) return cert.status();
  GeneratedTls out;
  Bio b1(BIO_new(BIO_s_mem())), b2(BIO_new(BIO_s_mem())),
      b3(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(b1.get(), ca->get()) != 1 ||
      PEM_write_bio_X509(b2.get(), cert->get()) != 1 ||
      PEM_write_bio_PrivateKey(b3.get(), key.get(), nullptr, nullptr, 0,
                               nullptr, nullptr) != 1) {
    return SslError("PEM encoding");
  }
  out.ca_pem = Drain(b1.get());
  out.cert_pem = Drain(b2.get());
  out.key_pem = Drain(b3.get());
  return out;
}

}  // namespace parley::bench
