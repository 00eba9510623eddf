// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace parley::core {
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

absl::Status OpenSslError(absl::string_view what) {
  unsigned long e = ERR_get_error();
  char buf[256] = {0};
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return absl::InternalError(absl::StrCat("TLS setup: ", what, " failed: ", buf));
}

absl::StatusOr<Pkey> NewKey() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (k == nullptr) return OpenSslError("generating a P-256 key");
  return Pkey(k);
}

absl::Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return OpenSslError(absl::StrCat("building extension ", value));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return OpenSslError("adding an extension");
  return absl::OkStatus();
}

absl::StatusOr<Cert> NewCert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                             long days, bool is_ca, const std::vector<std::string>& sans) {
  Cert cert(X509_new());
  if (!cert) return OpenSslError("X509_new");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return OpenSslError("RAND_bytes");
  serial[0] &= 0x7F;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("Parley"),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()),
                             -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  if (is_ca) {
    PARLEY_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    PARLEY_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign"));
    PARLEY_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_subject_key_identifier, "hash"));
  } else {
    PARLEY_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE"));
    PARLEY_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_key_usage, "critical,digitalSignature"));
    PARLEY_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_ext_key_usage, "serverAuth"));
    PARLEY_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_authority_key_identifier, "keyid:always"));
    PARLEY_RETURN_IF_ERROR(AddExt(cert.get(), signer, NID_subject_alt_name, absl::StrJoin(sans, ",")));
  }
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    return OpenSslError("signing a certificate");
  }
  return cert;
}

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::string> KeyPem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("encoding a private key");
  }
  return BioToString(bio.get());
}

absl::StatusOr<std::string> CertPem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(bio.get(), cert) != 1) return OpenSslError("encoding a certificate");
  return BioToString(bio.get());
}

std::string SanEntry(const std::string& host) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1) {
    return "IP:" + host;
  }
  return "DNS:" + host;
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& data, int mode) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
  ::fchmod(fd, mode);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return absl::UnavailableError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(err)));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot sync ", tmp, ": ", std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<GeneratedTls> GenerateTls(const std::string& ca_name, const std::string& server_name,
                                         const std::vector<std::string>& hosts, int ca_days, int server_days) {
  PARLEY_ASSIGN_OR_RETURN(Pkey cakey, NewKey());
  PARLEY_ASSIGN_OR_RETURN(Cert ca, NewCert(cakey.get(), ca_name, nullptr, nullptr, ca_days, true, {}));
  std::vector<std::string> sans = {"DNS:localhost", "IP:127.0.0.1", "IP:::1"};
  for (const auto& h : hosts) {
    std::string e = SanEntry(h);
    if (std::find(sans.begin(), sans.end(), e) == sans.end() && h != "0.0.0.0" && h != "::") {
      sans.push_back(e);
    }
  }
  PARLEY_ASSIGN_OR_RETURN(Pkey key, NewKey());
  PARLEY_ASSIGN_OR_RETURN(Cert cert, NewCert(key.get(), server_name, ca.get(), cakey.get(), server_days, false, sans));
  GeneratedTls out;
  PARLEY_ASSIGN_OR_RETURN(out.ca_key_pem, KeyPem(cakey.get()));
  PARLEY_ASSIGN_OR_RETURN(out.ca_cert_pem, CertPem(ca.get()));
  PARLEY_ASSIGN_OR_RETURN(out.key_pem, KeyPem(key.get()));
  PARLEY_ASSIGN_OR_RETURN(out.cert_pem, CertPem(cert.get()));
  return out;
}

absl::StatusOr<TlsMaterial> EnsureLocalTls(const std::string& dir, const std::vector<std::string>& hosts) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  ::chmod(dir.c_str(), 0700);
  const std::string ca_pem = dir + "/ca.pem", ca_key = dir + "/ca.key";
  const std::string srv_pem = dir + "/server.pem", srv_key = dir + "/server.key";
  if (!std::filesystem::exists(srv_pem) || !std::filesystem::exists(srv_key) ||
      !std::filesystem::exists(ca_pem)) {
    PARLEY_ASSIGN_OR_RETURN(GeneratedTls g, GenerateTls("Parley local CA", "parleyd", hosts, 3650, 825));
    PARLEY_RETURN_IF_ERROR(WriteFileAtomic(ca_key, g.ca_key_pem, 0600));
    PARLEY_RETURN_IF_ERROR(WriteFileAtomic(ca_pem, g.ca_cert_pem, 0644));
    PARLEY_RETURN_IF_ERROR(WriteFileAtomic(srv_key, g.key_pem, 0600));
    PARLEY_RETURN_IF_ERROR(WriteFileAtomic(srv_pem, g.cert_pem, 0644));
  }
  PARLEY_ASSIGN_OR_RETURN(TlsMaterial m, LoadTls(srv_pem, srv_key));
  m.ca_cert_path = std::filesystem::absolute(ca_pem).string();
  return m;
}

absl::StatusOr<TlsMaterial> LoadTls(const std::string& cert_file, const std::string& key_file) {
  TlsMaterial m;
  PARLEY_ASSIGN_OR_RETURN(m.cert_chain_pem, ReadFile(cert_file));
  PARLEY_ASSIGN_OR_RETURN(m.private_key_pem, ReadFile(key_file));
  if (m.cert_chain_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(cert_file, ": no PEM certificate found"));
  }
  if (m.private_key_pem.find("PRIVATE KEY-----") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(key_file, ": no PEM private key found"));
  }
  return m;
}

}  // namespace parley::core
