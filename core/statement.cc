// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/statement.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace parley::core {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using Bio = std::unique_ptr<BIO, BioFree>;

// A std::string holding secret bytes, cleansed when it goes away.
class SecretString {
 public:
  SecretString() = default;
  ~SecretString() { Wipe(); }
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;
  std::string* get() { return &s_; }
  const std::string& str() const { return s_; }
  void Wipe() {
    if (!s_.empty()) OPENSSL_cleanse(s_.data(), s_.size());
    s_.clear();
  }

 private:
  std::string s_;
};

std::string OpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256] = {0};
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out.empty() ? "no OpenSSL error recorded" : out;
}

absl::Status OpenSslError(absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("statement signing: ", what, " failed: ", OpenSslErrors()));
}

absl::Status ErrnoError(absl::string_view what, const std::string& path,
                        int err) {
  std::string msg = absl::StrCat("statement key: ", what, " ", path, ": ",
                                 std::strerror(err));
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  if (err == ENOENT) return absl::NotFoundError(msg);
  return absl::InternalError(msg);
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Creates `dir` and its missing parents with mode 0700 (existing
// directories are left as they are).
absl::Status MakeDirs(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoError("cannot create directory", part, errno);
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoError("cannot stat", dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("statement key: ", dir, " is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Reads the key file, refusing group/other access. ENOENT -> NotFound.
absl::Status ReadKeyFile(const std::string& path, std::string* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ELOOP) {
      return absl::FailedPreconditionError(absl::StrCat(
          "statement key ", path, " is a symbolic link; refusing to use it"));
    }
    return ErrnoError("cannot open", path, errno);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError("cannot stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("statement key ", path, " is not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return absl::PermissionDeniedError(absl::StrFormat(
        "statement key %s is accessible by other users (mode %04o, must be "
        "0600); run: chmod 600 %s",
        path, st.st_mode & 07777, path));
  }
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      OPENSSL_cleanse(buf, sizeof buf);
      return ErrnoError("cannot read", path, err);
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > 64 * 1024) {
      ::close(fd);
      OPENSSL_cleanse(buf, sizeof buf);
      return absl::DataLossError(absl::StrCat(
          "statement key ", path, " is too large to be an Ed25519 key"));
    }
  }
  ::close(fd);
  OPENSSL_cleanse(buf, sizeof buf);
  return absl::OkStatus();
}

absl::StatusOr<Pkey> ParseKey(const std::string& path, const std::string& data) {
  const absl::string_view kPem = "-----BEGIN";
  const absl::string_view view(data);
  if (view.find(kPem) != absl::string_view::npos) {
    Bio bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    if (!bio) return OpenSslError("BIO_new_mem_buf");
    Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!key) {
      ERR_clear_error();
      return absl::DataLossError(absl::StrCat(
          "statement key ", path,
          " is corrupt: not a PEM private key (expected an unencrypted "
          "PKCS#8 Ed25519 key, \"-----BEGIN PRIVATE KEY-----\")"));
    }
    if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
      return absl::DataLossError(
          absl::StrCat("statement key ", path, " is a ",
                       EVP_PKEY_get0_type_name(key.get()) != nullptr
                           ? EVP_PKEY_get0_type_name(key.get())
                           : "non-Ed25519",
                       " key, not an Ed25519 key"));
    }
    return key;
  }
  if (data.size() == 32) {
    Pkey key(EVP_PKEY_new_raw_private_key(
        EVP_PKEY_ED25519, nullptr,
        reinterpret_cast<const unsigned char*>(data.data()), data.size()));
    if (!key) return OpenSslError("EVP_PKEY_new_raw_private_key");
    return key;
  }
  return absl::DataLossError(absl::StrCat(
      "statement key ", path, " is corrupt: ", data.size(),
      " bytes that are neither a PEM Ed25519 private key nor 32 raw key "
      "bytes"));
}

// Writes a new key to `path` with mode 0600 unless the file exists (link(2)
// refuses to replace it): concurrent first starts keep one key.
absl::Status CreateKeyFile(const std::string& path) {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) return OpenSslError("generating an Ed25519 key");
  SecretString pem;
  {
    Bio bio(BIO_new(BIO_s_secmem()));
    if (!bio) return OpenSslError("BIO_new");
    if (PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0,
                                 nullptr, nullptr) != 1) {
      return OpenSslError("PEM_write_bio_PrivateKey");
    }
    char* p = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &p);
    if (n <= 0 || p == nullptr) return OpenSslError("BIO_get_mem_data");
    pem.get()->assign(p, static_cast<size_t>(n));
  }
  const std::string tmp =
      absl::StrCat(path, ".tmp.", static_cast<long>(::getpid()));
  ::unlink(tmp.c_str());
  const int fd = ::open(
      tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoError("cannot create", tmp, errno);
  absl::Status s;
  if (::fchmod(fd, 0600) != 0) s = ErrnoError("cannot chmod 600", tmp, errno);
  if (s.ok()) s = WriteAll(fd, pem.str(), tmp);
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoError("cannot fsync", tmp, errno);
  if (::close(fd) != 0 && s.ok()) s = ErrnoError("cannot close", tmp, errno);
  if (s.ok() && ::link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST) {
    s = ErrnoError("cannot create", path, errno);
  }
  ::unlink(tmp.c_str());
  if (!s.ok()) return s;
  const std::string dir = DirName(path);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RawPublicKey(EVP_PKEY* key) {
  unsigned char pub[statement::kPublicKeySize];
  size_t len = sizeof pub;
  if (EVP_PKEY_get_raw_public_key(key, pub, &len) != 1 ||
      len != statement::kPublicKeySize) {
    return OpenSslError("EVP_PKEY_get_raw_public_key");
  }
  return std::string(reinterpret_cast<const char*>(pub), len);
}

}  // namespace

// ------------------------------------------------------------- the signer

StatementSigner::StatementSigner(std::string path, EVP_PKEY* key,
                                 std::string public_key)
    : path_(std::move(path)),
      key_(key),
      public_key_(std::move(public_key)),
      key_id_(statement::KeyId(public_key_)) {}

StatementSigner::~StatementSigner() { EVP_PKEY_free(key_); }

absl::StatusOr<std::unique_ptr<StatementSigner>> StatementSigner::LoadOrCreate(
    const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError("statement key: empty path");
  }
  if (absl::Status s = MakeDirs(DirName(path)); !s.ok()) return s;
  SecretString data;
  absl::Status read = ReadKeyFile(path, data.get());
  if (absl::IsNotFound(read)) {
    if (absl::Status s = CreateKeyFile(path); !s.ok()) return s;
    data.Wipe();
    read = ReadKeyFile(path, data.get());
  }
  if (!read.ok()) return read;
  absl::StatusOr<Pkey> key = ParseKey(path, data.str());
  data.Wipe();
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> pub = RawPublicKey(key->get());
  if (!pub.ok()) return pub.status();
  return std::unique_ptr<StatementSigner>(
      new StatementSigner(path, key->release(), *std::move(pub)));
}

absl::StatusOr<std::string> StatementSigner::SignBytes(
    absl::string_view message) const {
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return OpenSslError("EVP_MD_CTX_new");
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_) != 1) {
    return OpenSslError("EVP_DigestSignInit");
  }
  unsigned char sig[statement::kSignatureSize];
  size_t len = sizeof sig;
  if (EVP_DigestSign(ctx.get(), sig, &len,
                     reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1 ||
      len != statement::kSignatureSize) {
    return OpenSslError("EVP_DigestSign");
  }
  return std::string(reinterpret_cast<const char*>(sig), len);
}

absl::Status StatementSigner::Sign(const std::string& conversation_id,
                                   v1::SecurityState* state) const {
  if (conversation_id.empty()) {
    return absl::InvalidArgumentError(
        "statement signing: empty conversation id");
  }
  absl::StatusOr<std::string> bytes = statement::Serialize(
      statement::FromState(conversation_id, *state, key_id_));
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<std::string> sig = SignBytes(statement::SigningInput(*bytes));
  if (!sig.ok()) return sig.status();
  state->set_signed_statement(*std::move(bytes));
  state->set_signature(*std::move(sig));
  return absl::OkStatus();
}

}  // namespace parley::core
