// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/crypto/key_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <rocksdb/file_system.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace parley::crypto {

namespace keys {

std::string Be32(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>((v >> 24) & 0xff);
  s[1] = static_cast<char>((v >> 16) & 0xff);
  s[2] = static_cast<char>((v >> 8) & 0xff);
  s[3] = static_cast<char>(v & 0xff);
  return s;
}

uint32_t ReadBe32(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

namespace {
std::string Str(std::string_view s) {
  std::string out = Be32(static_cast<uint32_t>(s.size()));
  out.append(s);
  return out;
}
std::string Cat(std::string_view a, std::string_view b, std::string_view c = {},
                std::string_view d = {}) {
  std::string out;
  out.reserve(a.size() + b.size() + c.size() + d.size());
  out.append(a).append(b).append(c).append(d);
  return out;
}
}  // namespace

std::string Meta(std::string_view name) { return Cat("M", name); }
std::string PreKey(uint32_t id) { return Cat("P", Be32(id)); }
std::string SignedPreKey(uint32_t id) { return Cat("Q", Be32(id)); }
std::string Session(std::string_view name, int32_t device) {
  return Cat("S", Str(name), Be32(static_cast<uint32_t>(device)));
}
std::string SessionPrefix(std::string_view name) {
  return Cat("S", Str(name));
}
std::string Identity(std::string_view name, int32_t device) {
  return Cat("I", Str(name), Be32(static_cast<uint32_t>(device)));
}
std::string Verified(std::string_view name) {
  return Cat("V", Str(name));
}
std::string SenderKey(std::string_view group, std::string_view name,
                      int32_t device) {
  return Cat("K", Str(group), Str(name), Be32(static_cast<uint32_t>(device)));
}

}  // namespace keys

namespace {

using rocksdb::FileOptions;
using rocksdb::FSRandomRWFile;
using rocksdb::FSWritableFile;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;

void Restrict(const std::string& path, mode_t mode) {
  // Best effort: the directory is already private.
  (void)::chmod(path.c_str(), mode);
}

// Makes every file RocksDB creates 0600 and every directory 0700.
class PrivateFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit PrivateFileSystem(const std::shared_ptr<rocksdb::FileSystem>& base)
      : FileSystemWrapper(base) {}
  const char* Name() const override { return "ParleyPrivateFileSystem"; }

  IOStatus NewWritableFile(const std::string& f, const FileOptions& o,
                           std::unique_ptr<FSWritableFile>* r,
                           IODebugContext* d) override {
    IOStatus s = target()->NewWritableFile(f, o, r, d);
    if (s.ok()) Restrict(f, 0600);
    return s;
  }
  IOStatus ReopenWritableFile(const std::string& f, const FileOptions& o,
                              std::unique_ptr<FSWritableFile>* r,
                              IODebugContext* d) override {
    IOStatus s = target()->ReopenWritableFile(f, o, r, d);
    if (s.ok()) Restrict(f, 0600);
    return s;
  }
  IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                             const FileOptions& o,
                             std::unique_ptr<FSWritableFile>* r,
                             IODebugContext* d) override {
    IOStatus s = target()->ReuseWritableFile(f, old, o, r, d);
    if (s.ok()) Restrict(f, 0600);
    return s;
  }
  IOStatus NewRandomRWFile(const std::string& f, const FileOptions& o,
                           std::unique_ptr<FSRandomRWFile>* r,
                           IODebugContext* d) override {
    IOStatus s = target()->NewRandomRWFile(f, o, r, d);
    if (s.ok()) Restrict(f, 0600);
    return s;
  }
  IOStatus LockFile(const std::string& f, const IOOptions& o,
                    rocksdb::FileLock** l, IODebugContext* d) override {
    IOStatus s = target()->LockFile(f, o, l, d);
    if (s.ok()) Restrict(f, 0600);
    return s;
  }
  IOStatus CreateDir(const std::string& dir, const IOOptions& o,
                     IODebugContext* d) override {
    IOStatus s = target()->CreateDir(dir, o, d);
    if (s.ok()) Restrict(dir, 0700);
    return s;
  }
  IOStatus CreateDirIfMissing(const std::string& dir, const IOOptions& o,
                              IODebugContext* d) override {
    IOStatus s = target()->CreateDirIfMissing(dir, o, d);
    if (s.ok()) Restrict(dir, 0700);
    return s;
  }
};

// Discards RocksDB's informational log (no LOG files next to the keys).
class NullLogger : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char* /*format*/, va_list /*ap*/) override {}
};

// Tightens whatever exists under `dir` (files 0600, directories 0700).
void SweepPermissions(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) {
      continue;
    }
    const std::string p = dir + "/" + e->d_name;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      Restrict(p, 0700);
      SweepPermissions(p);
    } else if (S_ISREG(st.st_mode)) {
      Restrict(p, 0600);
    }
  }
  ::closedir(d);
}

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  // RocksDB messages carry file names and codes, never values.
  return absl::UnavailableError(
      absl::StrCat("key store ", std::string(what), " failed: ", s.ToString()));
}

}  // namespace

absl::Status MakePrivateDir(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("empty profile directory");
  // Create parents as needed.
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::UnavailableError(
          absl::StrCat("cannot create ", part, ": ", std::strerror(errno)));
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not a directory"));
  }
  if ((st.st_mode & 0777) != 0700 && ::chmod(dir.c_str(), 0700) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot make ", dir, " private: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KeyStore>> KeyStore::Open(
    const std::string& path, bool sync_writes) {
  absl::Status dir_status = MakePrivateDir(path);
  if (!dir_status.ok()) return dir_status;

  std::unique_ptr<KeyStore> store(new KeyStore());
  store->path_ = path;
  store->sync_writes_ = sync_writes;
  store->env_ = rocksdb::NewCompositeEnv(
      std::make_shared<PrivateFileSystem>(rocksdb::FileSystem::Default()));

  rocksdb::Options options;
  options.create_if_missing = true;
  options.env = store->env_.get();
  options.info_log = std::make_shared<NullLogger>();
  options.keep_log_file_num = 1;
  options.max_open_files = 64;
  options.write_buffer_size = 1 << 20;  // small client database
  options.max_background_jobs = 1;
  options.paranoid_checks = true;

  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &db);
  if (!s.ok()) return FromRocks(s, "open");
  store->db_.reset(db);
  SweepPermissions(path);
  return store;
}

KeyStore::~KeyStore() {
  if (db_) {
    (void)db_->Close();
    db_.reset();
  }
  SweepPermissions(path_);
}

absl::StatusOr<std::optional<std::string>> KeyStore::Get(
    std::string_view key) const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()),
               &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "read");
  return std::optional<std::string>(std::move(value));
}

absl::Status KeyStore::Put(std::string_view key, std::string_view value) {
  rocksdb::WriteOptions wo;
  wo.sync = sync_writes_;
  return FromRocks(db_->Put(wo, rocksdb::Slice(key.data(), key.size()),
                            rocksdb::Slice(value.data(), value.size())),
                   "write");
}

absl::Status KeyStore::Delete(std::string_view key) {
  rocksdb::WriteOptions wo;
  wo.sync = sync_writes_;
  return FromRocks(db_->Delete(wo, rocksdb::Slice(key.data(), key.size())),
                   "delete");
}

absl::Status KeyStore::Write(rocksdb::WriteBatch& batch, bool force_sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync_writes_ || force_sync;
  return FromRocks(db_->Write(wo, &batch), "write");
}

absl::Status KeyStore::Scan(
    std::string_view prefix,
    const std::function<bool(std::string_view, std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  const rocksdb::Slice p(prefix.data(), prefix.size());
  for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
    const rocksdb::Slice k = it->key();
    const rocksdb::Slice v = it->value();
    if (!fn(std::string_view(k.data(), k.size()),
            std::string_view(v.data(), v.size()))) {
      break;
    }
  }
  return FromRocks(it->status(), "scan");
}

absl::StatusOr<int> KeyStore::DeletePrefix(std::string_view prefix) {
  rocksdb::WriteBatch batch;
  int n = 0;
  absl::Status s = Scan(prefix, [&](std::string_view k, std::string_view) {
    batch.Delete(rocksdb::Slice(k.data(), k.size()));
    ++n;
    return true;
  });
  if (!s.ok()) return s;
  if (n == 0) return 0;
  s = Write(batch);
  if (!s.ok()) return s;
  return n;
}

}  // namespace parley::crypto
