// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/sdk/profile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include "absl/strings/string_view.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace parley {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path,
                        int err) {
  std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  if (err == ENOENT) return absl::NotFoundError(msg);
  return absl::InternalError(msg);
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MakePrivateDirs(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("empty directory path");
  // Create each missing component.
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoError("cannot create directory", part, errno);
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    return ErrnoError("cannot stat", dir, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " exists and is not a directory"));
  }
  if ((st.st_mode & 0777) != 0700 && ::chmod(dir.c_str(), 0700) != 0) {
    return ErrnoError("cannot chmod 700", dir, errno);
  }
  return absl::OkStatus();
}

std::string Profile::credentials_path() const {
  return absl::StrCat(dir, "/", kCredentialsFile);
}

absl::StatusOr<Profile> Profile::Load(const std::string& dir) {
  Profile p;
  p.dir = dir;
  const std::string path = p.credentials_path();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("profile ", dir, " has no credentials (", path,
                       " does not exist)"));
    }
    return ErrnoError("cannot open", path, errno);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError("cannot stat", path, err);
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return absl::PermissionDeniedError(absl::StrFormat(
        "credentials file %s is accessible by other users (mode %04o); "
        "run: chmod 600 %s",
        path, st.st_mode & 07777, path));
  }
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoError("cannot read", path, err);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > (1 << 20)) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, " is too large"));
    }
  }
  ::close(fd);

  nlohmann::json j = nlohmann::json::parse(data, nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a valid JSON object"));
  }
  auto get_string = [&](const char* key, std::string* out) -> absl::Status {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": field \"", key, "\" must be a string"));
    }
    *out = it->get<std::string>();
    return absl::OkStatus();
  };
  for (auto [key, out] : {std::pair{"server", &p.server},
                          std::pair{"ca_file", &p.ca_file},
                          std::pair{"account_id", &p.account_id},
                          std::pair{"username", &p.username},
                          std::pair{"device_token", &p.device_token},
                          std::pair{"server_key_id", &p.server_key_id}}) {
    if (absl::Status s = get_string(key, out); !s.ok()) return s;
  }
  if (auto it = j.find("insecure"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": field \"insecure\" must be a boolean"));
    }
    p.insecure = it->get<bool>();
  }
  if (auto it = j.find("refuse_downgrade"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": field \"refuse_downgrade\" must be a boolean"));
    }
    p.refuse_downgrade = it->get<bool>();
  }
  {
    std::string b64;
    if (absl::Status s = get_string("server_signing_key", &b64); !s.ok()) {
      return s;
    }
    if (!b64.empty() &&
        (!absl::Base64Unescape(b64, &p.server_signing_key) ||
         p.server_signing_key.size() != 32)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": field \"server_signing_key\" must be a base64 32-byte "
                "Ed25519 public key"));
    }
  }
  if (auto it = j.find("device_id"); it != j.end() && !it->is_null()) {
    if (!it->is_number_unsigned() || it->get<uint64_t>() > UINT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": field \"device_id\" must be an unsigned 32-bit number"));
    }
    p.device_id = it->get<uint32_t>();
  }
  return p;
}

absl::Status Profile::Save() const {
  if (dir.empty()) {
    return absl::FailedPreconditionError("profile has no directory to save to");
  }
  if (absl::Status s = MakePrivateDirs(dir); !s.ok()) return s;
  nlohmann::json j = {{"server", server},       {"ca_file", ca_file},
                      {"insecure", insecure},   {"account_id", account_id},
                      {"username", username},   {"device_id", device_id},
                      {"device_token", device_token}};
  if (!server_signing_key.empty()) {
    j["server_signing_key"] = absl::Base64Escape(server_signing_key);
    j["server_key_id"] = server_key_id;
  }
  if (refuse_downgrade) j["refuse_downgrade"] = true;
  const std::string data =
      j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const std::string path = credentials_path();
  const std::string tmp =
      absl::StrCat(path, ".tmp.", static_cast<long>(::getpid()));
  const int fd = ::open(tmp.c_str(),
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                        0600);
  if (fd < 0) return ErrnoError("cannot create", tmp, errno);
  absl::Status s;
  if (::fchmod(fd, 0600) != 0) s = ErrnoError("cannot chmod 600", tmp, errno);
  if (s.ok()) s = WriteAll(fd, data, tmp);
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoError("cannot fsync", tmp, errno);
  if (::close(fd) != 0 && s.ok()) s = ErrnoError("cannot close", tmp, errno);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoError("cannot rename to", path, errno);
  }
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

std::string Profile::DebugString() const {
  return absl::StrCat("Profile{dir=", dir, " server=", server,
                      " ca_file=", ca_file, " insecure=", insecure,
                      " account_id=", account_id, " username=", username,
                      " device_id=", device_id, " server_key_id=",
                      server_key_id.empty() ? "<none>" : server_key_id,
                      " refuse_downgrade=", refuse_downgrade, " device_token=",
                      device_token.empty() ? "<none>" : "<redacted>", "}");
}

}  // namespace parley
