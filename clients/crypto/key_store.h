// SPDX-License-Identifier: GPL-3.0-or-later
//
// Internal: the client key store, a RocksDB database in a private directory.
//
// Files are created 0600 and directories 0700 (a FileSystem wrapper restricts
// every file RocksDB creates; the parent directory is 0700 from the start, so
// nobody else can open a file in the instant before its chmod). RocksDB's info
// log is discarded. Values holding private keys are the caller's to wipe.
//
// Key layout (binary; names are length-prefixed so any bytes are allowed):
//   M<name>                     metadata (identity pair, registration id, ids)
//   P<be32 id>                  one-time pre-key record
//   Q<be32 id>                  signed pre-key record
//   S<be32 len><name><be32 dev> session record
//   I<be32 len><name><be32 dev> remote identity public key
//   V<be32 len><name>           "verified" flag of a contact
//   K<be32 len><group><be32 len><name><be32 dev>   sender-key record
//
// Thread-compatible; DeviceCrypto serializes access.
#ifndef PARLEY_CLIENTS_CRYPTO_KEY_STORE_H_
#define PARLEY_CLIENTS_CRYPTO_KEY_STORE_H_

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/write_batch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace parley::crypto {

namespace keys {
std::string Meta(std::string_view name);
std::string PreKey(uint32_t id);
std::string SignedPreKey(uint32_t id);
inline constexpr char kPreKeyPrefix[] = "P";
inline constexpr char kSignedPreKeyPrefix[] = "Q";
std::string Session(std::string_view name, int32_t device);
std::string SessionPrefix(std::string_view name);
std::string Identity(std::string_view name, int32_t device);
std::string Verified(std::string_view name);
std::string SenderKey(std::string_view group, std::string_view name,
                      int32_t device);
// Big-endian helpers.
std::string Be32(uint32_t v);
uint32_t ReadBe32(std::string_view s);  // s.size() >= 4
}  // namespace keys

class KeyStore {
 public:
  // Opens or creates the database in `path` (mode 0700).
  static absl::StatusOr<std::unique_ptr<KeyStore>> Open(const std::string& path,
                                                        bool sync_writes);
  ~KeyStore();

  // nullopt when absent.
  absl::StatusOr<std::optional<std::string>> Get(std::string_view key) const;
  absl::Status Put(std::string_view key, std::string_view value);
  absl::Status Delete(std::string_view key);
  absl::Status Write(rocksdb::WriteBatch& batch, bool force_sync = false);
  // Calls fn(key, value) for every key starting with `prefix`, in order,
  // until fn returns false.
  absl::Status Scan(std::string_view prefix,
                    const std::function<bool(std::string_view key,
                                             std::string_view value)>& fn) const;
  // Deletes every key starting with `prefix`; returns how many.
  absl::StatusOr<int> DeletePrefix(std::string_view prefix);

  const std::string& path() const { return path_; }

 private:
  KeyStore() = default;

  std::string path_;
  bool sync_writes_ = false;
  std::unique_ptr<rocksdb::Env> env_;  // must outlive db_
  std::unique_ptr<rocksdb::DB> db_;
};

// Creates `dir` (and parents) if needed and makes it 0700.
absl::Status MakePrivateDir(const std::string& dir);

}  // namespace parley::crypto

#endif  // PARLEY_CLIENTS_CRYPTO_KEY_STORE_H_
