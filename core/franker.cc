// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/franker.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/tls.h"

namespace parley::core {

absl::StatusOr<std::unique_ptr<Franker>> Franker::Open(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir = fs::path(path).parent_path();
  if (!dir.empty()) {
    fs::create_directories(dir, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("franking key: cannot create ", dir.string(), ": ", ec.message()));
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    auto key = franking::NewKey();
    if (!key.ok()) return key.status();
    absl::Status s = WriteFileAtomic(path, *key, 0600);
    OPENSSL_cleanse(key->data(), key->size());
    if (!s.ok()) return s;
    if (::lstat(path.c_str(), &st) != 0) {
      return absl::UnavailableError(absl::StrCat("franking key: cannot stat ", path, " after writing it"));
    }
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("franking key ", path, " is not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "franking key %s is accessible by other users (mode %04o, must be 0600); run: chmod 600 %s", path,
        st.st_mode & 07777, path));
  }
  std::ifstream in(path, std::ios::binary);
  std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (key.size() != 32) {
    OPENSSL_cleanse(key.data(), key.size());
    return absl::DataLossError(
        absl::StrCat("franking key ", path, " holds ", key.size(), " bytes, expected 32"));
  }
  return std::unique_ptr<Franker>(new Franker(std::move(key)));
}

std::unique_ptr<Franker> Franker::ForKey(std::string key) {
  return std::unique_ptr<Franker>(new Franker(std::move(key)));
}

Franker::~Franker() { OPENSSL_cleanse(key_.data(), key_.size()); }

absl::StatusOr<std::string> Franker::Stamp(const franking::StampInput& in) const {
  return franking::Stamp(key_, in);
}

absl::Status Franker::Verify(const std::string& conversation_id, uint64_t seq,
                             const v1::FrankingReveal& r) const {
  if (r.franking_key().size() != franking::kKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("reveal.franking_key: ", r.franking_key().size(),
                                                   " bytes, expected ", franking::kKeyBytes));
  }
  if (r.franking_commitment().size() != franking::kCommitmentBytes) {
    return absl::InvalidArgumentError("reveal.franking_commitment: missing or not 32 bytes");
  }
  if (r.franking_stamp().size() != franking::kStampBytes) {
    return absl::InvalidArgumentError("reveal.franking_stamp: missing or not 32 bytes");
  }
  franking::CommitInput ci;
  ci.conversation_id = conversation_id;
  ci.sender_account_id = r.sender_account_id();
  ci.sender_device_id = r.sender_device_id();
  ci.client_message_id = r.client_message_id();
  ci.sent_at_ms = r.sent_at_ms();
  ci.content_type = r.content_type();
  ci.content = r.content();
  auto commitment = franking::Commit(r.franking_key(), ci);
  if (!commitment.ok()) return commitment.status();
  if (!franking::Equal(*commitment, r.franking_commitment())) {
    return absl::InvalidArgumentError(
        "reveal: the content and franking key do not match the message's franking commitment");
  }
  franking::StampInput si;
  si.commitment = *commitment;
  si.conversation_id = conversation_id;
  si.sender_account_id = r.sender_account_id();
  si.sender_device_id = r.sender_device_id();
  si.client_message_id = r.client_message_id();
  si.seq = seq;
  si.server_time_ms = r.server_time_ms();
  auto stamp = Stamp(si);
  if (!stamp.ok()) return stamp.status();
  if (!franking::Equal(*stamp, r.franking_stamp())) {
    return absl::InvalidArgumentError(
        "reveal: the franking stamp was not issued by this server for this message "
        "(conversation, seq, sender, time)");
  }
  return absl::OkStatus();
}

}  // namespace parley::core
