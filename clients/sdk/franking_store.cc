// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/sdk/franking_store.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <type_traits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "clients/sdk/parse.h"
#include "clients/sdk/profile.h"
#include "nlohmann/json.hpp"

namespace parley {
namespace {

void Cleanse(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

std::string ToLine(const FrankingRecord& r) {
  nlohmann::json j;
  j["seq"] = r.seq;
  j["content_type"] = absl::Base64Escape(r.content_type);
  j["content"] = absl::Base64Escape(r.content);
  j["franking_key"] = absl::Base64Escape(r.franking_key);
  j["sent_at_ms"] = r.sent_at_ms;
  j["sender_account_id"] = absl::Base64Escape(r.sender_account_id);
  j["sender_device_id"] = r.sender_device_id;
  j["client_message_id"] = absl::Base64Escape(r.client_message_id);
  j["server_time_ms"] = r.server_time_ms;
  j["commitment"] = absl::Base64Escape(r.commitment);
  j["stamp"] = absl::Base64Escape(r.stamp);
  j["commitment_ok"] = r.commitment_ok;
  std::string line = j.dump();
  line.push_back('\n');
  j.clear();
  return line;
}

std::optional<FrankingRecord> FromLine(const std::string& conversation_id,
                                       absl::string_view line) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr,
                                           /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  FrankingRecord r;
  r.conversation_id = conversation_id;
  auto b64 = [&](const char* key, std::string* out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return false;
    return absl::Base64Unescape(it->get_ref<const std::string&>(), out);
  };
  auto num = [&](const char* key, auto* out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return false;
    *out = it->get<std::remove_pointer_t<decltype(out)>>();
    return true;
  };
  auto it_ok = j.find("commitment_ok");
  if (!num("seq", &r.seq) || !b64("content_type", &r.content_type) ||
      !b64("content", &r.content) || !b64("franking_key", &r.franking_key) ||
      !num("sent_at_ms", &r.sent_at_ms) ||
      !b64("sender_account_id", &r.sender_account_id) ||
      !num("sender_device_id", &r.sender_device_id) ||
      !b64("client_message_id", &r.client_message_id) ||
      !num("server_time_ms", &r.server_time_ms) ||
      !b64("commitment", &r.commitment) || !b64("stamp", &r.stamp) ||
      it_ok == j.end() || !it_ok->is_boolean()) {
    r.Wipe();
    return std::nullopt;
  }
  r.commitment_ok = it_ok->get<bool>();
  return r;
}

// The file's lines, later ones replacing earlier ones with the same seq,
// trimmed to the `max` highest seqs. `lines` (optional) receives the number
// of lines read.
std::map<uint64_t, FrankingRecord> Load(const std::string& path,
                                        const std::string& conversation_id,
                                        size_t max, size_t* lines) {
  std::map<uint64_t, FrankingRecord> out;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  size_t n = 0;
  while (in && std::getline(in, line)) {
    ++n;
    std::optional<FrankingRecord> r = FromLine(conversation_id, line);
    Cleanse(line);
    if (!r) continue;
    auto [it, inserted] = out.try_emplace(r->seq);
    if (!inserted) it->second.Wipe();
    it->second = *std::move(r);
  }
  while (out.size() > max) {
    out.begin()->second.Wipe();
    out.erase(out.begin());
  }
  if (lines != nullptr) *lines = n;
  return out;
}

void WipeAll(std::map<uint64_t, FrankingRecord>& records) {
  for (auto& [seq, r] : records) r.Wipe();
  records.clear();
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("writing", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

v1::FrankingReveal FrankingRecord::ToReveal() const {
  v1::FrankingReveal reveal;
  reveal.set_content_type(content_type);
  reveal.set_content(content);
  reveal.set_franking_key(franking_key);
  reveal.set_sent_at_ms(sent_at_ms);
  reveal.set_sender_account_id(sender_account_id);
  reveal.set_sender_device_id(sender_device_id);
  reveal.set_client_message_id(client_message_id);
  reveal.set_server_time_ms(server_time_ms);
  reveal.set_franking_commitment(commitment);
  reveal.set_franking_stamp(stamp);
  return reveal;
}

void FrankingRecord::Wipe() {
  Cleanse(content);
  Cleanse(franking_key);
}

FrankingStore::FrankingStore(std::string dir, size_t max_per_conversation)
    : dir_(std::move(dir)),
      max_(max_per_conversation == 0 ? 1 : max_per_conversation) {}

std::string FrankingStore::PathOf(const std::string& conversation_id) const {
  return absl::StrCat(dir_, "/", HexEncode(conversation_id));
}

absl::Status FrankingStore::Put(const FrankingRecord& record) {
  if (record.conversation_id.empty()) {
    return absl::InvalidArgumentError("franking store: empty conversation id");
  }
  absl::MutexLock l(&mu_);
  if (absl::Status s = MakePrivateDirs(dir_); !s.ok()) return s;
  const std::string path = PathOf(record.conversation_id);
  std::string line = ToLine(record);
  const int fd = ::open(path.c_str(),
                        O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
                        0600);
  if (fd < 0) {
    Cleanse(line);
    return Errno("opening", path);
  }
  (void)::fchmod(fd, 0600);
  absl::Status written = WriteAll(fd, line, path);
  Cleanse(line);
  if (written.ok() && ::fsync(fd) != 0) written = Errno("syncing", path);
  ::close(fd);
  if (!written.ok()) return written;

  // Compaction: rewrite with the newest `max_` once the file holds twice
  // as many lines.
  size_t lines = 0;
  std::map<uint64_t, FrankingRecord> records =
      Load(path, record.conversation_id, max_, &lines);
  if (lines <= 2 * max_) {
    WipeAll(records);
    return absl::OkStatus();
  }
  const std::string tmp = absl::StrCat(path, ".tmp");
  const int out = ::open(tmp.c_str(),
                         O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                         0600);
  if (out < 0) {
    WipeAll(records);
    return Errno("creating", tmp);
  }
  absl::Status status;
  for (auto& [seq, r] : records) {
    std::string l = ToLine(r);
    status = WriteAll(out, l, tmp);
    Cleanse(l);
    if (!status.ok()) break;
  }
  WipeAll(records);
  if (status.ok() && ::fsync(out) != 0) status = Errno("syncing", tmp);
  ::close(out);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = Errno("renaming", tmp);
  }
  if (!status.ok()) ::unlink(tmp.c_str());
  return status;
}

absl::StatusOr<FrankingRecord> FrankingStore::Get(
    const std::string& conversation_id, uint64_t seq) const {
  absl::MutexLock l(&mu_);
  std::map<uint64_t, FrankingRecord> records =
      Load(PathOf(conversation_id), conversation_id, max_, nullptr);
  auto it = records.find(seq);
  if (it == records.end()) {
    WipeAll(records);
    return absl::NotFoundError(
        absl::StrCat("message #", seq, " of ", conversation_id,
                     " is not among the end-to-end encrypted messages this "
                     "device received"));
  }
  FrankingRecord out = std::move(it->second);
  records.erase(it);
  WipeAll(records);
  return out;
}

std::vector<uint64_t> FrankingStore::Seqs(
    const std::string& conversation_id) const {
  absl::MutexLock l(&mu_);
  std::map<uint64_t, FrankingRecord> records =
      Load(PathOf(conversation_id), conversation_id, max_, nullptr);
  std::vector<uint64_t> out;
  for (const auto& [seq, r] : records) out.push_back(seq);
  WipeAll(records);
  return out;
}

}  // namespace parley
