// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/sdk/statement_verifier.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "api/parley/statement/statement.h"
#include "clients/sdk/profile.h"
#include "nlohmann/json.hpp"

namespace parley {
namespace {

constexpr int kStateFileVersion = 1;

std::string ModeName(int mode) {
  return v1::SecurityMode_IsValid(mode)
             ? v1::SecurityMode_Name(static_cast<v1::SecurityMode>(mode))
             : absl::StrCat("mode ", mode);
}

absl::Status FileError(absl::string_view what, const std::string& path,
                       int err) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

bool IsHex(absl::string_view s) {
  if (s.size() % 2 != 0) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
          (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

std::string StateLabel(const std::string& conversation_id,
                       const v1::SecurityState& state) {
  return absl::StrCat("security state of ", conversation_id, " (epoch ",
                      state.epoch(), ", ", ModeName(state.mode()), ")");
}

}  // namespace

// ------------------------------------------------------------ the verifier

StatementVerifier::StatementVerifier(std::string public_key, std::string dir,
                                     StatementVerifierOptions options)
    : public_key_(std::move(public_key)),
      key_id_(statement::KeyId(public_key_)),
      dir_(std::move(dir)),
      options_(std::move(options)) {}

StatementVerifier::~StatementVerifier() = default;

absl::StatusOr<std::unique_ptr<StatementVerifier>> StatementVerifier::Create(
    std::string server_public_key, std::string dir,
    StatementVerifierOptions options) {
  if (server_public_key.size() != statement::kPublicKeySize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "StatementVerifier: the pinned server key has ",
        server_public_key.size(), " bytes; an Ed25519 public key has 32"));
  }
  std::unique_ptr<StatementVerifier> v(new StatementVerifier(
      std::move(server_public_key), std::move(dir), std::move(options)));
  if (absl::Status s = v->Load(); !s.ok()) return s;
  return v;
}

std::string StatementVerifier::state_path() const {
  if (dir_.empty()) return "";
  return absl::StrCat(dir_, "/", kStateFile);
}

absl::Status StatementVerifier::Load() {
  if (dir_.empty()) return absl::OkStatus();
  const std::string path = state_path();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return absl::OkStatus();
    const int err = errno;
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot open ", path, ": ", std::strerror(err)));
    }
    return FileError("cannot open", path, err);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return FileError("cannot stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return absl::PermissionDeniedError(absl::StrFormat(
        "security state file %s is accessible by other users (mode %04o); "
        "run: chmod 600 %s",
        path, st.st_mode & 07777, path));
  }
  std::string data;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return FileError("cannot read", path, err);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);

  auto corrupt = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat(
        "security state file ", path, " is corrupt (", what,
        "); it records which conversations were verified as end-to-end "
        "encrypted, so it is not reset automatically"));
  };
  const nlohmann::json j =
      nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return corrupt("not a JSON object");
  auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer() ||
      version->get<int64_t>() != kStateFileVersion) {
    return corrupt("missing or unknown \"version\"");
  }
  auto key_id = j.find("server_key_id");
  if (key_id == j.end() || !key_id->is_string()) {
    return corrupt("missing \"server_key_id\"");
  }
  if (key_id->get<std::string>() != key_id_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "security state file ", path, " was written for server key ",
        key_id->get<std::string>(), " but the pinned key is ", key_id_,
        "; the server's signing key changed. Remove the file only if the "
        "new key is known to be genuine"));
  }
  auto convs = j.find("conversations");
  if (convs == j.end() || !convs->is_array()) {
    return corrupt("missing \"conversations\" array");
  }
  std::map<std::string, RememberedSecurity> loaded;
  for (const nlohmann::json& e : *convs) {
    if (!e.is_object()) return corrupt("a conversation entry is not an object");
    auto get_u64 = [&](const char* k, uint64_t* out) {
      auto it = e.find(k);
      if (it == e.end() || !it->is_number_unsigned()) return false;
      *out = it->get<uint64_t>();
      return true;
    };
    auto get_b64 = [&](const char* k, std::string* out) {
      auto it = e.find(k);
      if (it == e.end()) return true;  // optional
      return it->is_string() && absl::Base64Unescape(it->get<std::string>(), out);
    };
    auto id = e.find("conversation_id_hex");
    if (id == e.end() || !id->is_string() || id->get<std::string>().empty() ||
        !IsHex(id->get<std::string>())) {
      return corrupt("bad \"conversation_id_hex\"");
    }
    RememberedSecurity r;
    uint64_t mode = 0;
    if (!get_u64("epoch", &r.epoch) || !get_u64("mode", &mode) ||
        !get_u64("e2ee_epoch", &r.e2ee_epoch) ||
        !get_u64("unverified_e2ee_epoch", &r.unverified_e2ee_epoch) ||
        mode > 1000 || !get_b64("statement", &r.signed_statement) ||
        !get_b64("signature", &r.signature)) {
      return corrupt(absl::StrCat("bad fields for conversation ",
                                  id->get<std::string>()));
    }
    r.mode = static_cast<v1::SecurityMode>(mode);
    loaded[absl::HexStringToBytes(id->get<std::string>())] = std::move(r);
  }
  absl::MutexLock l(&mu_);
  states_ = std::move(loaded);
  return absl::OkStatus();
}

absl::Status StatementVerifier::SaveLocked() const {
  if (dir_.empty()) return absl::OkStatus();
  if (absl::Status s = MakePrivateDirs(dir_); !s.ok()) {
    return absl::InternalError(s.message());
  }
  nlohmann::json convs = nlohmann::json::array();
  for (const auto& [id, r] : states_) {
    convs.push_back({{"conversation_id_hex", absl::BytesToHexString(id)},
                     {"epoch", r.epoch},
                     {"mode", static_cast<uint64_t>(r.mode)},
                     {"e2ee_epoch", r.e2ee_epoch},
                     {"unverified_e2ee_epoch", r.unverified_e2ee_epoch},
                     {"statement", absl::Base64Escape(r.signed_statement)},
                     {"signature", absl::Base64Escape(r.signature)}});
  }
  const nlohmann::json j = {{"version", kStateFileVersion},
                            {"server_key_id", key_id_},
                            {"conversations", std::move(convs)}};
  const std::string data = j.dump(1) + "\n";
  const std::string path = state_path();
  const std::string tmp =
      absl::StrCat(path, ".tmp.", static_cast<long>(::getpid()));
  const int fd = ::open(tmp.c_str(),
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                        0600);
  if (fd < 0) return FileError("cannot create", tmp, errno);
  absl::Status s;
  if (::fchmod(fd, 0600) != 0) s = FileError("cannot chmod 600", tmp, errno);
  absl::string_view rest(data);
  while (s.ok() && !rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      s = FileError("cannot write", tmp, errno);
      break;
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  if (s.ok() && ::fsync(fd) != 0) s = FileError("cannot fsync", tmp, errno);
  if (::close(fd) != 0 && s.ok()) s = FileError("cannot close", tmp, errno);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = FileError("cannot rename to", path, errno);
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SecurityStatement> StatementVerifier::Verify(
    const std::string& conversation_id, const v1::SecurityState& state) const {
  return statement::Verify(public_key_, state, conversation_id);
}

absl::Status StatementVerifier::Observe(const std::string& conversation_id,
                                        const v1::SecurityState& state) {
  return ObserveImpl(conversation_id, state, nullptr);
}

absl::Status StatementVerifier::ObserveImpl(const std::string& conversation_id,
                                            const v1::SecurityState& state,
                                            v1::SecurityStatement* verified) {
  const bool is_e2ee = state.mode() == v1::SECURITY_MODE_E2EE;
  if (state.signature().empty() && state.signed_statement().empty()) {
    const std::string what = StateLabel(conversation_id, state);
    if (options_.require_signed) {
      return absl::PermissionDeniedError(absl::StrCat(
          what, " is not signed by the server, and signatures are required"));
    }
    absl::MutexLock l(&mu_);
    if (is_e2ee) {
      // Raises protection: remember it as (unverified) E2EE evidence.
      RememberedSecurity& r = states_[conversation_id];
      const uint64_t e = state.epoch() == 0 ? 1 : state.epoch();
      if (e <= r.unverified_e2ee_epoch) return absl::OkStatus();
      r.unverified_e2ee_epoch = e;
      return SaveLocked();
    }
    auto it = states_.find(conversation_id);
    if (it == states_.end() || it->second.e2ee_threshold() == 0) {
      return absl::OkStatus();  // nothing to lower
    }
    const RememberedSecurity& r = it->second;
    // Not lower than what is verified: the strongest verified state is
    // already a (verified) downgrade past every E2EE epoch known.
    if (r.epoch > r.e2ee_threshold() && r.mode != v1::SECURITY_MODE_E2EE &&
        state.epoch() >= r.epoch) {
      return absl::OkStatus();
    }
    return absl::PermissionDeniedError(absl::StrCat(
        what,
        " is not signed by the server and would lower the protection of a "
        "conversation known as end-to-end encrypted (epoch ",
        r.e2ee_threshold(), "); refused"));
  }

  absl::StatusOr<v1::SecurityStatement> st =
      statement::Verify(public_key_, state, conversation_id);
  if (!st.ok()) return st.status();

  if (verified != nullptr) *verified = *st;

  absl::MutexLock l(&mu_);
  RememberedSecurity& r = states_[conversation_id];
  bool changed = false;
  if (is_e2ee && st->epoch() > r.e2ee_epoch) {
    r.e2ee_epoch = st->epoch();
    changed = true;
  }
  if (r.epoch != 0 && st->epoch() < r.epoch) {
    absl::Status saved = changed ? SaveLocked() : absl::OkStatus();
    absl::Status replay = absl::FailedPreconditionError(absl::StrCat(
        StateLabel(conversation_id, state),
        " is older than the verified state of epoch ", r.epoch, " (",
        ModeName(r.mode),
        "): a replay or history, not the conversation's current state"));
    return saved.ok() ? replay : saved;
  }
  if (r.epoch != 0 && st->epoch() == r.epoch && st->mode() != r.mode) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the server signed two different states for epoch ", r.epoch, " of ",
        conversation_id, " (", ModeName(r.mode), " and ",
        ModeName(st->mode()), "); refusing the second"));
  }
  if (st->epoch() != r.epoch || state.signed_statement() != r.signed_statement) {
    r.epoch = st->epoch();
    r.mode = st->mode();
    r.signed_statement = state.signed_statement();
    r.signature = state.signature();
    changed = true;
  }
  if (!changed) return absl::OkStatus();
  absl::Status s = SaveLocked();
  if (!s.ok()) {
    return absl::InternalError(absl::StrCat(
        "verified ", StateLabel(conversation_id, state),
        " but cannot remember it: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status StatementVerifier::NoteE2eeEvidence(
    const std::string& conversation_id, uint64_t epoch) {
  absl::MutexLock l(&mu_);
  RememberedSecurity& r = states_[conversation_id];
  // Epoch 0 (unknown) still marks the conversation: use 1, the first epoch.
  const uint64_t e = epoch == 0 ? 1 : epoch;
  if (e <= r.unverified_e2ee_epoch) return absl::OkStatus();
  r.unverified_e2ee_epoch = e;
  return SaveLocked();
}

std::optional<RememberedSecurity> StatementVerifier::Remembered(
    const std::string& conversation_id) const {
  absl::MutexLock l(&mu_);
  auto it = states_.find(conversation_id);
  if (it == states_.end()) return std::nullopt;
  return it->second;
}

absl::Status StatementVerifier::CheckPlaintextAllowed(
    const std::string& conversation_id, const v1::SecurityState& current) {
  return CheckPlaintext(conversation_id, current, /*client_saw_e2ee=*/false);
}

absl::Status StatementVerifier::VerifyDowngrade(
    const std::string& conversation_id, const v1::SecurityState& current) {
  return CheckPlaintext(conversation_id, current, /*client_saw_e2ee=*/true);
}

absl::Status StatementVerifier::CheckPlaintext(
    const std::string& conversation_id, const v1::SecurityState& current,
    bool client_saw_e2ee) {
  if (current.mode() == v1::SECURITY_MODE_E2EE) {
    return absl::FailedPreconditionError(absl::StrCat(
        "conversation ", conversation_id,
        " is end-to-end encrypted: plaintext is never sent into it"));
  }
  const bool is_signed =
      !current.signature().empty() || !current.signed_statement().empty();
  uint64_t threshold = 0;
  {
    absl::MutexLock l(&mu_);
    auto it = states_.find(conversation_id);
    if (it != states_.end()) threshold = it->second.e2ee_threshold();
  }

  if (threshold == 0 && !client_saw_e2ee) {
    // Never known as E2EE: nothing to downgrade from. A signed state must
    // still be genuine (a stale one is harmless here).
    if (!is_signed && !options_.require_signed) return absl::OkStatus();
    absl::Status s = Observe(conversation_id, current);
    if (absl::IsFailedPrecondition(s)) return absl::OkStatus();
    return s;
  }

  if (!is_signed) {
    return absl::PermissionDeniedError(absl::StrCat(
        "conversation ", conversation_id,
        " was end-to-end encrypted; the server now reports ",
        ModeName(current.mode()),
        " (server-readable) without a signed statement: refusing to send "
        "plaintext"));
  }
  v1::SecurityStatement statement;
  if (absl::Status s = ObserveImpl(conversation_id, current, &statement);
      !s.ok()) {
    return s;
  }
  const v1::SecurityStatement* st = &statement;
  {
    absl::MutexLock l(&mu_);
    threshold = states_[conversation_id].e2ee_threshold();
  }
  if (threshold == 0) {
    // client_saw_e2ee: the Client saw E2EE, this verifier never did.
    return absl::FailedPreconditionError(absl::StrCat(
        "conversation ", conversation_id,
        " was end-to-end encrypted on this device, but the verifier has no "
        "record of which epoch; cannot tell whether the server's ",
        ModeName(current.mode()), " state (epoch ", st->epoch(),
        ") is newer: refusing to send plaintext"));
  }
  if (st->epoch() <= threshold) {
    return absl::FailedPreconditionError(absl::StrCat(
        "conversation ", conversation_id,
        " was end-to-end encrypted at epoch ", threshold,
        "; the server's signed ", ModeName(current.mode()),
        " state has epoch ", st->epoch(),
        ", not newer: refusing to send plaintext"));
  }
  if (options_.refuse_downgrade) {
    return absl::FailedPreconditionError(absl::StrCat(
        "conversation ", conversation_id,
        " is no longer end-to-end encrypted (verified ",
        ModeName(current.mode()), " since epoch ", st->epoch(),
        ", end-to-end encrypted until epoch ", threshold,
        "); this client refuses downgrades: not sending plaintext"));
  }
  if (options_.confirm_downgrade) {
    return options_.confirm_downgrade(conversation_id, *st, threshold);
  }
  return absl::OkStatus();
}

}  // namespace parley
