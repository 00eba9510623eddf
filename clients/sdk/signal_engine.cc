// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/sdk/signal_engine.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/sdk/e2ee_format.h"
#include "clients/sdk/key_wire.h"
#include "clients/sdk/parse.h"
#include "clients/sdk/profile.h"

namespace parley {
namespace {

constexpr char kPublishedFile[] = "published";
constexpr char kGroupsDir[] = "groups";
constexpr char kIdentityChangesDir[] = "identity-changes";
// Server-side limit of one UploadKeys call.
constexpr int kMaxPreKeysPerUpload = 100;

#define PARLEY_ENGINE_RETURN_IF_ERROR(expr)        \
  do {                                             \
    ::absl::Status parley_engine_st_ = (expr);     \
    if (!parley_engine_st_.ok()) return parley_engine_st_; \
  } while (0)

void Wipe(std::string& s) {
  volatile char* p = s.data();
  for (size_t i = 0; i < s.size(); ++i) p[i] = 0;
  s.clear();
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// temp file (0600) + fsync + rename.
absl::Status WriteFileAtomic(const std::string& path,
                             absl::string_view content) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  const int fd = ::open(tmp.c_str(),
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                        0600);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::UnavailableError(
          absl::StrCat("cannot write ", tmp, ": ", std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || absl::EndsWith(name, ".tmp")) continue;
    names.push_back(name);
  }
  ::closedir(d);
  return names;
}

std::optional<std::string> HexDecode(absl::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

bool UsesSenderKeys(const v1::Conversation& c) {
  return c.kind() == v1::CONVERSATION_KIND_GROUP ||
         c.kind() == v1::CONVERSATION_KIND_BROADCAST;
}

crypto::Address AddressOf(const std::string& account_id, uint32_t device_id) {
  return crypto::Address{account_id, static_cast<int32_t>(device_id)};
}

absl::Status Prefixed(const absl::Status& s, absl::string_view what) {
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

}  // namespace

// Holds the key store open for one operation (mu_ held throughout). On the
// way out it collects identity changes and, unless keep_open, closes it.
class SignalEngine::Use {
 public:
  explicit Use(SignalEngine* engine) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine->mu_)
      : engine_(engine) {
    absl::StatusOr<crypto::DeviceCrypto*> dc = engine_->OpenLocked();
    if (dc.ok()) {
      dc_ = *dc;
    } else {
      status_ = dc.status();
    }
  }
  ~Use() {
    if (dc_ == nullptr) return;
    engine_->CollectIdentityChangesLocked();
    engine_->ReleaseLocked();
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;

  const absl::Status& status() const { return status_; }
  crypto::DeviceCrypto* operator->() const { return dc_; }
  crypto::DeviceCrypto& operator*() const { return *dc_; }

 private:
  SignalEngine* const engine_;
  crypto::DeviceCrypto* dc_ = nullptr;
  absl::Status status_;
};

absl::StatusOr<std::shared_ptr<SignalEngine>> SignalEngine::Create(
    std::string dir, SignalEngineOptions options) {
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "end-to-end encryption needs a profile directory for its keys");
  }
  if (options.one_time_pre_keys < 1 || options.one_time_pre_keys > 1000 ||
      options.replenish_below < 0) {
    return absl::InvalidArgumentError("invalid pre-key settings");
  }
  return std::shared_ptr<SignalEngine>(
      new SignalEngine(std::move(dir), std::move(options)));
}

SignalEngine::SignalEngine(std::string dir, SignalEngineOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

SignalEngine::~SignalEngine() = default;

absl::StatusOr<crypto::DeviceCrypto*> SignalEngine::OpenLocked() {
  if (crypto_) {
    ++users_;
    return crypto_.get();
  }
  const absl::Time deadline = absl::Now() + options_.lock_wait;
  for (;;) {
    auto dc = crypto::DeviceCrypto::Open(dir_, options_.crypto);
    if (dc.ok()) {
      crypto_ = *std::move(dc);
      ++users_;
      return crypto_.get();
    }
    // RocksDB's LOCK: another process (or engine) has the store open.
    const bool locked =
        absl::IsUnavailable(dc.status()) &&
        absl::StrContains(absl::AsciiStrToLower(dc.status().message()),
                          "lock");
    if (!locked || absl::Now() >= deadline) {
      return absl::Status(
          dc.status().code(),
          absl::StrCat("opening the end-to-end encryption keys in ", dir_,
                       ": ", dc.status().message(),
                       locked ? " (another process using this profile holds "
                                "them)"
                              : ""));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

void SignalEngine::ReleaseLocked() {
  if (users_ > 0) --users_;
  if (users_ == 0 && !options_.keep_open) crypto_.reset();
}

void SignalEngine::CollectIdentityChangesLocked() {
  if (!crypto_) return;
  for (const crypto::IdentityChange& c : crypto_->TakeIdentityChanges()) {
    IdentityChangeNotice n;
    n.account_id = c.address.name;
    n.device_id = static_cast<uint32_t>(c.address.device_id);
    n.was_verified = c.was_verified;
    n.blocked = c.blocked;
    const std::string dir = absl::StrCat(dir_, "/", kIdentityChangesDir);
    if (MakePrivateDirs(dir).ok()) {
      (void)WriteFileAtomic(
          absl::StrCat(dir, "/", HexEncode(n.account_id), ".", n.device_id),
          absl::StrCat(n.was_verified ? 1 : 0, " ", n.blocked ? 1 : 0, "\n"));
    }
    changes_.push_back(std::move(n));
  }
}

// ------------------------------------------------------------------ keys

absl::Status SignalEngine::UploadLocked(E2eeHost& host,
                                        const crypto::PreKeyUpload& up) {
  for (const v1::UploadKeysRequest& req :
       UploadRequests(up, kMaxPreKeysPerUpload)) {
    PARLEY_ENGINE_RETURN_IF_ERROR(host.UploadKeys(req));
  }
  return absl::OkStatus();
}

absl::Status SignalEngine::MaintainKeys(E2eeHost& host, bool force) {
  absl::MutexLock l(&mu_);
  return MaintainKeysLocked(host, force);
}

absl::Status SignalEngine::MaintainKeysLocked(E2eeHost& host, bool force) {
  const std::string account = host.account_id();
  const uint32_t device = host.device_id();
  if (account.empty() || device == 0) {
    return absl::FailedPreconditionError(
        "end-to-end encryption keys: this profile is not registered");
  }
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  const absl::Time now = absl::Now();
  const std::string marker = absl::StrCat(account, " ", device, " ",
                                          dc->registration_id(), "\n");
  const std::string marker_path = absl::StrCat(dir_, "/", kPublishedFile);
  pre_key_messages_ = 0;
  if (force || ReadFile(marker_path) != marker) {
    absl::StatusOr<bool> rotated = dc->RotateSignedPreKeyIfDue(now);
    if (!rotated.ok()) return rotated.status();
    auto up = dc->GeneratePreKeys(options_.one_time_pre_keys);
    if (!up.ok()) return up.status();
    PARLEY_ENGINE_RETURN_IF_ERROR(UploadLocked(host, *up));
    return WriteFileAtomic(marker_path, marker);
  }
  absl::StatusOr<bool> rotated = dc->RotateSignedPreKeyIfDue(now);
  if (!rotated.ok()) return rotated.status();
  if (*rotated) {
    auto up = dc->CurrentPreKeys();
    if (!up.ok()) return up.status();
    PARLEY_ENGINE_RETURN_IF_ERROR(UploadLocked(host, *up));
  }
  absl::StatusOr<uint32_t> count = host.PreKeyCount();
  if (!count.ok()) return count.status();
  if (*count < static_cast<uint32_t>(options_.replenish_below)) {
    auto up = dc->GeneratePreKeys(options_.one_time_pre_keys);
    if (!up.ok()) return up.status();
    PARLEY_ENGINE_RETURN_IF_ERROR(UploadLocked(host, *up));
  }
  return absl::OkStatus();
}

// -------------------------------------------------------------- sessions

absl::Status SignalEngine::FetchSessionsLocked(E2eeHost& host,
                                               const std::string& account_id,
                                               const std::set<uint32_t>& only) {
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  auto bundles = host.FetchBundles(account_id);
  if (!bundles.ok()) return bundles.status();
  fetched_.insert(account_id);
  const std::string self = host.account_id();
  const uint32_t self_device = host.device_id();
  for (const v1::PreKeyBundle& b : *bundles) {
    const uint32_t device = b.device_id();
    if (device == 0) continue;
    if (account_id == self && device == self_device) continue;
    const crypto::Address addr = AddressOf(account_id, device);
    if (!only.empty()) {
      if (!only.contains(device)) continue;
    } else if (dc->HasSession(addr)) {
      continue;
    }
    if (absl::Status s = dc->ProcessBundle(addr, BundleFromProto(b)); !s.ok()) {
      return Prefixed(s, absl::StrCat("session with ", account_id, " device ",
                                      device));
    }
  }
  return absl::OkStatus();
}

absl::Status SignalEngine::RepairSessions(E2eeHost& host,
                                          const v1::DeviceMismatch& mismatch) {
  absl::MutexLock l(&mu_);
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  std::map<std::string, std::set<uint32_t>> rebuild;
  for (const v1::DeviceAddress& x : mismatch.extra()) {
    if (x.device_id() == 0 || x.account_id().empty()) continue;
    PARLEY_ENGINE_RETURN_IF_ERROR(
        dc->DeleteSession(AddressOf(x.account_id(), x.device_id())));
  }
  for (const v1::DeviceAddress& x : mismatch.stale()) {
    if (x.device_id() == 0 || x.account_id().empty()) continue;
    PARLEY_ENGINE_RETURN_IF_ERROR(
        dc->DeleteSession(AddressOf(x.account_id(), x.device_id())));
    rebuild[x.account_id()].insert(x.device_id());
  }
  for (const v1::DeviceAddress& x : mismatch.missing()) {
    if (x.device_id() == 0 || x.account_id().empty()) continue;
    rebuild[x.account_id()].insert(x.device_id());
  }
  for (const auto& [account, devices] : rebuild) {
    PARLEY_ENGINE_RETURN_IF_ERROR(FetchSessionsLocked(host, account, devices));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------ messaging

std::set<SignalEngine::DeviceKey> SignalEngine::LoadGroupLocked(
    const std::string& conversation_id) {
  std::set<DeviceKey> holders;
  std::optional<std::string> text = ReadFile(
      absl::StrCat(dir_, "/", kGroupsDir, "/", HexEncode(conversation_id)));
  if (!text) return holders;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    std::vector<absl::string_view> f =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() != 3) continue;
    DeviceKey k;
    k.account_id = std::string(f[0]);
    if (!absl::SimpleAtoi(f[1], &k.device_id) ||
        !absl::SimpleAtoi(f[2], &k.registration_id)) {
      continue;
    }
    holders.insert(std::move(k));
  }
  return holders;
}

absl::Status SignalEngine::SaveGroupLocked(const std::string& conversation_id,
                                           const std::set<DeviceKey>& holders) {
  const std::string dir = absl::StrCat(dir_, "/", kGroupsDir);
  PARLEY_ENGINE_RETURN_IF_ERROR(MakePrivateDirs(dir));
  std::string text;
  for (const DeviceKey& k : holders) {
    absl::StrAppend(&text, k.account_id, " ", k.device_id, " ",
                    k.registration_id, "\n");
  }
  return WriteFileAtomic(
      absl::StrCat(dir, "/", HexEncode(conversation_id)), text);
}

absl::StatusOr<v1::EncryptedBody> SignalEngine::Encrypt(
    E2eeHost& host, const v1::Conversation& conversation,
    const E2eeContent& content) {
  absl::MutexLock l(&mu_);
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  const std::string self = host.account_id();
  const uint32_t self_device = host.device_id();
  const std::string& conv_id = conversation.conversation_id();
  if (self.empty() || self_device == 0) {
    return absl::FailedPreconditionError("this profile is not registered");
  }

  // Every device of every member this device knows, but itself.
  std::set<std::string> members;
  std::vector<crypto::Address> targets;
  for (const v1::Member& m : conversation.members()) {
    const std::string& account = m.account_id();
    if (account.empty() || !members.insert(account).second) continue;
    std::vector<int32_t> devices = dc->SessionDevices(account);
    if (devices.empty() && !fetched_.contains(account)) {
      PARLEY_ENGINE_RETURN_IF_ERROR(FetchSessionsLocked(host, account, {}));
      devices = dc->SessionDevices(account);
    }
    for (int32_t d : devices) {
      if (d < 1) continue;
      if (account == self && static_cast<uint32_t>(d) == self_device) continue;
      targets.push_back(crypto::Address{account, d});
    }
  }

  InnerEnvelope env;
  env.conversation_id = conv_id;
  env.content_type = content.content_type;
  env.content = content.content;
  // Message franking: the same key and timestamp in every device's copy.
  env.franking_key = content.franking_key;
  env.sent_at_ms = content.sent_at_ms;
  v1::EncryptedBody body;
  auto add_pairwise = [&](const crypto::Address& to,
                          const std::string& bytes) -> absl::Status {
    auto ct = dc->Encrypt(to, bytes);
    if (!ct.ok()) return Prefixed(ct.status(), to.ToString());
    v1::DeviceCiphertext* out = body.add_ciphertexts();
    out->set_account_id(to.name);
    out->set_device_id(static_cast<uint32_t>(to.device_id));
    out->set_registration_id(ct->remote_registration_id);
    out->set_type(static_cast<uint32_t>(ct->type));
    out->set_ciphertext(std::move(ct->bytes));
    return absl::OkStatus();
  };

  if (!UsesSenderKeys(conversation)) {
    std::string bytes = EncodeInnerEnvelope(env);
    Wipe(env.content);
    Wipe(env.franking_key);
    absl::Status status;
    for (const crypto::Address& to : targets) {
      status = add_pairwise(to, bytes);
      if (!status.ok()) break;
    }
    Wipe(bytes);
    if (!status.ok()) return status;
    return body;
  }

  // Groups: sender keys.
  std::map<std::pair<std::string, uint32_t>, uint32_t> registration;
  for (const crypto::Address& to : targets) {
    auto reg = dc->RemoteRegistrationId(to);
    if (!reg.ok()) return Prefixed(reg.status(), to.ToString());
    registration[{to.name, static_cast<uint32_t>(to.device_id)}] = *reg;
  }
  std::set<DeviceKey> holders = LoadGroupLocked(conv_id);
  bool rotate = false;
  for (const DeviceKey& h : holders) {
    if (!members.contains(h.account_id) ||
        !registration.contains({h.account_id, h.device_id})) {
      rotate = true;  // a member left / was removed, or a device is gone
      break;
    }
  }
  if (rotate) {
    PARLEY_ENGINE_RETURN_IF_ERROR(dc->RotateSenderKey(conv_id));
    holders.clear();
    PARLEY_ENGINE_RETURN_IF_ERROR(SaveGroupLocked(conv_id, holders));
  }
  auto holds = [&](const crypto::Address& to) {
    const uint32_t device = static_cast<uint32_t>(to.device_id);
    return holders.contains(
        DeviceKey{to.name, device, registration.at({to.name, device})});
  };
  bool any_holder = false;
  bool any_other = false;
  for (const crypto::Address& to : targets) {
    (holds(to) ? any_holder : any_other) = true;
  }
  absl::Status status;
  if (any_other) {
    auto skdm = dc->CreateSenderKeyDistribution(conv_id);
    if (!skdm.ok()) return skdm.status();
    InnerEnvelope with_key = env;
    with_key.sender_key_distribution = *std::move(skdm);
    std::string bytes = EncodeInnerEnvelope(with_key);
    Wipe(with_key.content);
    Wipe(with_key.franking_key);
    for (const crypto::Address& to : targets) {
      if (holds(to)) continue;
      status = add_pairwise(to, bytes);
      if (!status.ok()) break;
    }
    Wipe(bytes);
  }
  if (status.ok() && any_holder) {
    std::string bytes = EncodeInnerEnvelope(env);
    auto group_ct = dc->GroupEncrypt(conv_id, bytes);
    Wipe(bytes);
    if (!group_ct.ok()) {
      status = group_ct.status();
    } else {
      for (const crypto::Address& to : targets) {
        if (!holds(to)) continue;
        v1::DeviceCiphertext* out = body.add_ciphertexts();
        out->set_account_id(to.name);
        out->set_device_id(static_cast<uint32_t>(to.device_id));
        out->set_registration_id(
            registration.at({to.name, static_cast<uint32_t>(to.device_id)}));
        out->set_type(4);
        out->set_ciphertext(*group_ct);
      }
    }
  }
  Wipe(env.content);
  Wipe(env.franking_key);
  if (!status.ok()) return status;
  return body;
}

void SignalEngine::Sent(const v1::Conversation& conversation,
                        const v1::EncryptedBody& body) {
  if (!UsesSenderKeys(conversation)) return;
  absl::MutexLock l(&mu_);
  // Type 4 went to holders; type 2/3 carried the distribution message. So
  // exactly the body's devices hold the current sender key now.
  std::set<DeviceKey> holders;
  for (const v1::DeviceCiphertext& ct : body.ciphertexts()) {
    holders.insert(
        DeviceKey{ct.account_id(), ct.device_id(), ct.registration_id()});
  }
  (void)SaveGroupLocked(conversation.conversation_id(), holders);
}

absl::StatusOr<E2eeContent> SignalEngine::Decrypt(E2eeHost& host,
                                                  const v1::Message& message) {
  if (!message.has_ciphertext()) {
    return absl::InvalidArgumentError("not an end-to-end encrypted message");
  }
  const v1::DeviceCiphertext& ct = message.ciphertext();
  if (message.sender_account_id().empty() || message.sender_device_id() == 0) {
    return absl::InvalidArgumentError("the message names no sender device");
  }
  const crypto::Address sender =
      AddressOf(message.sender_account_id(), message.sender_device_id());
  const std::string from = absl::StrCat(
      "message #", message.seq(), " from ", sender.name, " device ",
      sender.device_id);
  absl::MutexLock l(&mu_);
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  absl::StatusOr<std::string> plain;
  switch (ct.type()) {
    case 2:
    case 3: {
      crypto::Ciphertext in;
      in.type = ct.type() == 3 ? crypto::MessageType::kPreKey
                               : crypto::MessageType::kSignal;
      in.bytes = ct.ciphertext();
      plain = dc->Decrypt(sender, in);
      if (ct.type() == 3 && plain.ok()) ++pre_key_messages_;
      break;
    }
    case 4:
      plain = dc->GroupDecrypt(message.conversation_id(), sender,
                               ct.ciphertext());
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          from, ": unsupported ciphertext type ", ct.type()));
  }
  if (!plain.ok()) return Prefixed(plain.status(), from);
  absl::StatusOr<InnerEnvelope> env = DecodeInnerEnvelope(*plain);
  Wipe(*plain);
  if (!env.ok()) return Prefixed(env.status(), from);
  if (env->conversation_id != message.conversation_id()) {
    Wipe(env->content);
    Wipe(env->franking_key);
    return absl::InvalidArgumentError(absl::StrCat(
        from, ": it was written for another conversation; refused"));
  }
  if (!env->sender_key_distribution.empty() && ct.type() != 4) {
    // Best effort: the content is readable either way; without the sender
    // key only this sender's next group messages fail.
    (void)dc->ProcessSenderKeyDistribution(message.conversation_id(), sender,
                                           env->sender_key_distribution);
  }
  // A pre-key message consumed a one-time pre-key: replenish when low.
  if (pre_key_messages_ > 0) (void)MaintainKeysLocked(host, /*force=*/false);
  E2eeContent out;
  out.content_type =
      env->content_type.empty() ? "text/plain" : env->content_type;
  out.content = std::move(env->content);
  // Verbatim (not defaulted): the commitment covers the envelope's bytes.
  out.committed_content_type = std::move(env->content_type);
  out.franking_key = std::move(env->franking_key);
  out.sent_at_ms = env->sent_at_ms;
  return out;
}

std::vector<IdentityChangeNotice> SignalEngine::TakeIdentityChanges() {
  absl::MutexLock l(&mu_);
  std::vector<IdentityChangeNotice> out;
  out.swap(changes_);
  return out;
}

// ---------------------------------------------------------- verification

absl::StatusOr<std::vector<SafetyNumberInfo>> SignalEngine::SafetyNumbers(
    E2eeHost& host, const std::string& account_id) {
  const std::string self = host.account_id();
  if (account_id.empty()) return absl::InvalidArgumentError("no account");
  if (account_id == self) {
    return absl::InvalidArgumentError(
        "that is this account: safety numbers are compared with a contact");
  }
  absl::MutexLock l(&mu_);
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  const bool verified = dc->IsVerified(account_id);
  std::vector<SafetyNumberInfo> out;
  std::vector<int32_t> devices = dc->SessionDevices(account_id);
  if (devices.empty()) {
    // No session: with the keys the server presents now. A key refused
    // because the contact was verified is shown too (that is the number the
    // user must compare before accepting it).
    auto bundles = host.FetchBundles(account_id);
    if (!bundles.ok()) return bundles.status();
    fetched_.insert(account_id);
    for (const v1::PreKeyBundle& b : *bundles) {
      if (b.device_id() == 0) continue;
      const crypto::Address addr = AddressOf(account_id, b.device_id());
      const absl::Status processed = dc->ProcessBundle(addr, BundleFromProto(b));
      if (!processed.ok() && !absl::IsFailedPrecondition(processed)) {
        return Prefixed(processed, addr.ToString());
      }
      auto digits = dc->SafetyNumber(
          self, account_id,
          crypto::PublicKey::FromSerialized(b.identity_key()));
      if (!digits.ok()) return digits.status();
      SafetyNumberInfo info;
      info.device_id = b.device_id();
      info.digits = *std::move(digits);
      info.verified = verified;
      info.refused = !processed.ok();
      out.push_back(std::move(info));
    }
  } else {
    for (int32_t d : devices) {
      std::optional<crypto::PublicKey> key =
          dc->RemoteIdentity(crypto::Address{account_id, d});
      if (!key) continue;
      auto digits = dc->SafetyNumber(self, account_id, *key);
      if (!digits.ok()) return digits.status();
      SafetyNumberInfo info;
      info.device_id = static_cast<uint32_t>(d);
      info.digits = *std::move(digits);
      info.verified = verified;
      out.push_back(std::move(info));
    }
  }
  if (out.empty()) {
    return absl::NotFoundError(
        "no device of this account has published end-to-end encryption keys");
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.device_id < b.device_id;
  });
  return out;
}

absl::Status SignalEngine::MarkVerified(const std::string& account_id) {
  absl::MutexLock l(&mu_);
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  return dc->MarkVerified(account_id);
}

absl::Status SignalEngine::MarkUnverified(const std::string& account_id) {
  absl::MutexLock l(&mu_);
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  return dc->MarkUnverified(account_id);
}

absl::StatusOr<bool> SignalEngine::IsVerified(const std::string& account_id) {
  absl::MutexLock l(&mu_);
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  return dc->IsVerified(account_id);
}

std::vector<IdentityChangeNotice> SignalEngine::PendingIdentityChanges() {
  absl::MutexLock l(&mu_);
  const std::string dir = absl::StrCat(dir_, "/", kIdentityChangesDir);
  std::vector<IdentityChangeNotice> out;
  for (const std::string& name : ListDir(dir)) {
    const size_t dot = name.rfind('.');
    if (dot == std::string::npos) continue;
    std::optional<std::string> account = HexDecode(name.substr(0, dot));
    IdentityChangeNotice n;
    if (!account || !absl::SimpleAtoi(name.substr(dot + 1), &n.device_id)) {
      continue;
    }
    n.account_id = *std::move(account);
    if (std::optional<std::string> text =
            ReadFile(absl::StrCat(dir, "/", name))) {
      n.was_verified = absl::StartsWith(*text, "1");
      n.blocked = text->size() >= 3 && (*text)[2] == '1';
    }
    out.push_back(std::move(n));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.account_id, a.device_id) <
           std::tie(b.account_id, b.device_id);
  });
  return out;
}

void SignalEngine::AcknowledgeIdentityChanges(const std::string& account_id) {
  absl::MutexLock l(&mu_);
  const std::string dir = absl::StrCat(dir_, "/", kIdentityChangesDir);
  const std::string prefix = absl::StrCat(HexEncode(account_id), ".");
  for (const std::string& name : ListDir(dir)) {
    if (absl::StartsWith(name, prefix)) {
      ::unlink(absl::StrCat(dir, "/", name).c_str());
    }
  }
}

absl::StatusOr<uint32_t> SignalEngine::RegistrationId() {
  absl::MutexLock l(&mu_);
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  return dc->registration_id();
}

absl::StatusOr<int> SignalEngine::LocalOneTimePreKeyCount() {
  absl::MutexLock l(&mu_);
  Use dc(this);
  PARLEY_ENGINE_RETURN_IF_ERROR(dc.status());
  return dc->OneTimePreKeyCount();
}

}  // namespace parley
