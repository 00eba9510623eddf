// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/service.h"

#include "core/safety.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/ids.h"
#include "core/status_macros.h"

namespace parley::core {
namespace {

constexpr size_t kMaxDisplayName = 64;
constexpr size_t kMaxDeviceName = 64;
constexpr size_t kMaxTitle = 100;
constexpr size_t kMaxContentType = 100;
constexpr int kDirect = v1::CONVERSATION_KIND_DIRECT;
constexpr int kGroup = v1::CONVERSATION_KIND_GROUP;
// Signal framing around a message body (version byte, MAC, pre-key header).
constexpr size_t kCiphertextOverhead = 4096;

bool IsMember(const storage::ConversationRecord& c, const std::string& account_id) {
  for (const auto& m : c.members) {
    if (m.account_id == account_id) return true;
  }
  return false;
}

bool IsAdmin(const storage::ConversationRecord& c, const std::string& account_id) {
  for (const auto& m : c.members) {
    if (m.account_id == account_id) return m.admin;
  }
  return false;
}

void ToProto(const storage::AccountRecord& r, v1::Account* out) {
  out->set_account_id(r.account_id);
  out->set_username(r.username);
  out->set_display_name(r.display_name);
  auto* a = out->mutable_attributes();
  a->set_kind(static_cast<v1::AccountKind>(r.kind));
  a->set_age_band(static_cast<v1::AgeBand>(r.age_band));
  a->set_region_code(r.region_code);
  a->set_organization(r.organization);
  out->set_created_at_ms(r.created_at_ms);
}

void ToProto(const storage::DeviceRecord& r, v1::Device* out) {
  out->set_device_id(r.device_id);
  out->set_name(r.name);
  out->set_created_at_ms(r.created_at_ms);
  out->set_last_seen_at_ms(r.last_seen_at_ms);
  out->set_registration_id(r.registration_id);
}

absl::Status ValidateAttributes(const v1::AccountAttributes& a) {
  if (!v1::AccountKind_IsValid(a.kind())) {
    return absl::InvalidArgumentError(
        absl::StrCat("attributes.kind: unknown account kind ", a.kind()));
  }
  if (!v1::AgeBand_IsValid(a.age_band())) {
    return absl::InvalidArgumentError(
        absl::StrCat("attributes.age_band: unknown age band ", a.age_band()));
  }
  PARLEY_RETURN_IF_ERROR(ValidateRegionCode(a.region_code(), "attributes.region_code"));
  PARLEY_RETURN_IF_ERROR(ValidateText(a.organization(), 64, true, "attributes.organization"));
  return absl::OkStatus();
}

// Converts a storage NotFound into one that names what the caller asked for.
absl::Status Named(const absl::Status& s, absl::string_view what) {
  if (absl::IsNotFound(s)) return absl::NotFoundError(absl::StrCat(what, " not found"));
  return s;
}

}  // namespace

void ToProto(const storage::SecurityStateRecord& r, v1::SecurityState* out) {
  out->set_mode(static_cast<v1::SecurityMode>(r.mode));
  out->set_epoch(r.epoch);
  out->set_policy_revision(r.policy_revision);
  out->set_rule_id(r.rule_id);
  out->set_reason(r.reason);
  out->set_effective_at_ms(r.effective_at_ms);
  out->set_e2ee_ever_enabled(r.e2ee_ever_enabled);
  out->set_locked(r.locked);
  if (r.pending_mode != 0) {
    auto* p = out->mutable_pending();
    p->set_new_mode(static_cast<v1::SecurityMode>(r.pending_mode));
    p->set_effective_at_ms(r.pending_effective_at_ms);
    p->set_reason(r.pending_reason);
    p->set_rule_id(r.pending_rule_id);
    p->set_policy_revision(r.pending_policy_revision);
  }
  out->set_set_by_participants(r.set_by_participants);
  for (const auto& id : r.enable_requests) out->add_enable_requested_by(id);
  for (const auto& id : r.disable_requests) out->add_disable_requested_by(id);
  out->set_notice(r.notice);
}

ParleyService::ParleyService(Deps deps) : d_(std::move(deps)) {
  if (d_.storage == nullptr || d_.hub == nullptr || !d_.now_ms || d_.policy == nullptr ||
      d_.signer == nullptr) {
    std::abort();  // wiring bug: fail loudly
  }
}

absl::Mutex* ParleyService::ConversationLock(const std::string& conversation_id) {
  return &conversation_locks_[absl::Hash<std::string>{}(conversation_id) % kConversationLocks];
}

// ------------------------------------------------------------------ auth

absl::StatusOr<Caller> ParleyService::Authenticate(absl::string_view authorization) const {
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "missing authorization metadata (expected \"authorization: Bearer <device token>\")");
  }
  PARLEY_ASSIGN_OR_RETURN(std::string token, ParseBearer(authorization));
  auto dev = d_.storage->accounts().FindDeviceByTokenHash(Sha256(token));
  if (absl::IsNotFound(dev.status())) {
    return absl::UnauthenticatedError("unknown or revoked device token");
  }
  if (!dev.ok()) return dev.status();
  PARLEY_ASSIGN_OR_RETURN(storage::AccountRecord acct,
                          d_.storage->accounts().GetAccount(dev->account_id));
  if (acct.suspended) {
    return absl::PermissionDeniedError(absl::StrCat("account ", acct.username, " is suspended"));
  }
  if (d_.rate_limiter != nullptr) {
    PARLEY_RETURN_IF_ERROR(
        d_.rate_limiter->Take(absl::StrCat(dev->account_id, "/", dev->device_id), Now()));
  }
  return Caller{dev->account_id, dev->device_id};
}

// -------------------------------------------------------------- accounts

absl::StatusOr<v1::CreateAccountResponse> ParleyService::CreateAccount(
    const v1::CreateAccountRequest& req) {
  PARLEY_ASSIGN_OR_RETURN(std::string username, CanonicalUsername(req.username(), "username"));
  PARLEY_RETURN_IF_ERROR(ValidateText(req.display_name(), kMaxDisplayName, true, "display_name"));
  PARLEY_RETURN_IF_ERROR(ValidateText(req.device_name(), kMaxDeviceName, true, "device_name"));
  PARLEY_RETURN_IF_ERROR(ValidateAttributes(req.attributes()));

  const int64_t now = Now();
  storage::AccountRecord acct;
  acct.account_id = NewAccountId();
  acct.username = username;
  acct.display_name = req.display_name().empty() ? username : req.display_name();
  acct.kind = req.attributes().kind() == v1::ACCOUNT_KIND_UNSPECIFIED
                  ? v1::ACCOUNT_KIND_PERSONAL
                  : req.attributes().kind();
  acct.age_band = req.attributes().age_band() == v1::AGE_BAND_UNSPECIFIED
                      ? v1::AGE_BAND_UNKNOWN
                      : req.attributes().age_band();
  acct.region_code = req.attributes().region_code();
  acct.organization = req.attributes().organization();
  acct.created_at_ms = now;

  std::string token = NewToken();
  storage::DeviceRecord dev;
  dev.account_id = acct.account_id;
  dev.name = req.device_name().empty() ? "primary" : req.device_name();
  dev.token_hash = Sha256(token);
  dev.created_at_ms = now;
  dev.last_seen_at_ms = now;
  auto created = d_.storage->accounts().CreateAccount(acct, dev);
  if (absl::IsAlreadyExists(created.status())) {
    return absl::AlreadyExistsError(absl::StrCat("username: \"", username, "\" is already taken"));
  }
  if (!created.ok()) return created.status();

  v1::CreateAccountResponse resp;
  ToProto(acct, resp.mutable_account());
  ToProto(*created, resp.mutable_device());
  resp.set_device_token(token);
  resp.set_server_signing_key(d_.signer->public_key());
  resp.set_server_key_id(d_.signer->key_id());
  return resp;
}

absl::StatusOr<v1::GetAccountResponse> ParleyService::GetAccount(const Caller& c,
                                                           const v1::GetAccountRequest& req) {
  absl::StatusOr<storage::AccountRecord> acct;
  switch (req.key_case()) {
    case v1::GetAccountRequest::kAccountId:
      PARLEY_RETURN_IF_ERROR(ValidateAccountId(req.account_id(), "account_id"));
      acct = d_.storage->accounts().GetAccount(req.account_id());
      if (!acct.ok()) return Named(acct.status(), absl::StrCat("account ", req.account_id()));
      break;
    case v1::GetAccountRequest::kUsername: {
      PARLEY_ASSIGN_OR_RETURN(std::string u, CanonicalUsername(req.username(), "username"));
      acct = d_.storage->accounts().GetAccountByUsername(u);
      if (!acct.ok()) return Named(acct.status(), absl::StrCat("user \"", u, "\""));
      break;
    }
    default:
      return absl::InvalidArgumentError("key: set account_id or username");
  }
  v1::GetAccountResponse resp;
  ToProto(*acct, resp.mutable_account());
  if (acct->account_id != c.account_id) {
    // Age band and region are the account's own (policy facts for parleyd,
    // not a directory for other users: they would single out minors).
    resp.mutable_account()->mutable_attributes()->clear_age_band();
    resp.mutable_account()->mutable_attributes()->clear_region_code();
  }
  return resp;
}

absl::StatusOr<v1::CreateDeviceLinkResponse> ParleyService::CreateDeviceLink(const Caller& c) {
  std::string code = RandomHex(16);
  storage::DeviceLinkRecord link;
  link.code_hash = Sha256(code);
  link.account_id = c.account_id;
  link.expires_at_ms = Now() + d_.limits.device_link_ttl_ms;
  PARLEY_RETURN_IF_ERROR(d_.storage->accounts().PutDeviceLink(link));
  v1::CreateDeviceLinkResponse resp;
  resp.set_link_code(code);
  resp.set_expires_at_ms(link.expires_at_ms);
  return resp;
}

absl::StatusOr<v1::LinkDeviceResponse> ParleyService::LinkDevice(const v1::LinkDeviceRequest& req) {
  if (req.link_code().empty()) return absl::InvalidArgumentError("link_code: is required");
  if (req.link_code().size() != 32) {
    return absl::InvalidArgumentError("link_code: malformed (expected 32 hex digits)");
  }
  PARLEY_RETURN_IF_ERROR(ValidateText(req.device_name(), kMaxDeviceName, true, "device_name"));
  auto link = d_.storage->accounts().TakeDeviceLink(Sha256(req.link_code()));
  if (absl::IsNotFound(link.status())) {
    return absl::NotFoundError("link_code: unknown or already used");
  }
  if (!link.ok()) return link.status();
  const int64_t now = Now();
  if (link->expires_at_ms < now) {
    return absl::FailedPreconditionError("link_code: expired; create a new one on an existing device");
  }
  PARLEY_ASSIGN_OR_RETURN(auto devices, d_.storage->accounts().ListDevices(link->account_id));
  if (devices.size() >= d_.limits.max_devices_per_account) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "account already has ", devices.size(), " devices (limit ", d_.limits.max_devices_per_account,
        "); remove one first"));
  }
  PARLEY_ASSIGN_OR_RETURN(storage::AccountRecord acct,
                          d_.storage->accounts().GetAccount(link->account_id));
  std::string token = NewToken();
  storage::DeviceRecord dev;
  dev.account_id = link->account_id;
  dev.name = req.device_name().empty() ? absl::StrCat("device ", devices.size() + 1) : req.device_name();
  dev.token_hash = Sha256(token);
  dev.created_at_ms = now;
  dev.last_seen_at_ms = now;
  PARLEY_ASSIGN_OR_RETURN(storage::DeviceRecord added, d_.storage->accounts().AddDevice(dev));
  InvalidateDevices(link->account_id);
  v1::LinkDeviceResponse resp;
  ToProto(acct, resp.mutable_account());
  ToProto(added, resp.mutable_device());
  resp.set_device_token(token);
  resp.set_server_signing_key(d_.signer->public_key());
  resp.set_server_key_id(d_.signer->key_id());
  return resp;
}

absl::StatusOr<v1::ListDevicesResponse> ParleyService::ListDevices(const Caller& c) {
  PARLEY_ASSIGN_OR_RETURN(auto devices, d_.storage->accounts().ListDevices(c.account_id));
  v1::ListDevicesResponse resp;
  for (const auto& d : devices) ToProto(d, resp.add_devices());
  return resp;
}

absl::Status ParleyService::RemoveDevice(const Caller& c, const v1::RemoveDeviceRequest& req) {
  if (req.device_id() == 0) return absl::InvalidArgumentError("device_id: is required");
  PARLEY_ASSIGN_OR_RETURN(auto devices, d_.storage->accounts().ListDevices(c.account_id));
  bool found = false;
  for (const auto& d : devices) found |= d.device_id == req.device_id();
  if (!found) return absl::NotFoundError(absl::StrCat("device ", req.device_id(), " not found"));
  if (devices.size() == 1) {
    return absl::FailedPreconditionError("device_id: cannot remove the account's only device");
  }
  PARLEY_RETURN_IF_ERROR(d_.storage->accounts().RemoveDevice(c.account_id, req.device_id()));
  InvalidateDevices(c.account_id);
  d_.hub->Close({c.account_id, req.device_id()}, absl::UnauthenticatedError("device was removed"));
  return absl::OkStatus();
}

void ParleyService::Touch(const Caller& c) {
  auto dev = d_.storage->accounts().GetDevice(c.account_id, c.device_id);
  if (!dev.ok()) return;
  dev->last_seen_at_ms = Now();
  (void)d_.storage->accounts().UpdateDevice(*dev);  // best effort
}

absl::StatusOr<std::vector<uint32_t>> ParleyService::DeviceIds(const std::string& account_id) {
  {
    absl::MutexLock lock(&devices_mu_);
    auto it = devices_.find(account_id);
    if (it != devices_.end()) return it->second;
  }
  PARLEY_ASSIGN_OR_RETURN(auto devices, d_.storage->accounts().ListDevices(account_id));
  std::vector<uint32_t> ids;
  ids.reserve(devices.size());
  for (const auto& d : devices) ids.push_back(d.device_id);
  absl::MutexLock lock(&devices_mu_);
  devices_[account_id] = ids;
  return ids;
}

void ParleyService::InvalidateDevices(const std::string& account_id) {
  absl::MutexLock lock(&devices_mu_);
  devices_.erase(account_id);
}

// --------------------------------------------------------- conversations

absl::StatusOr<v1::Conversation> ParleyService::ConversationToProto(
    const storage::ConversationRecord& r) {
  v1::Conversation out;
  out.set_conversation_id(r.conversation_id);
  out.set_kind(static_cast<v1::ConversationKind>(r.kind));
  out.set_title(r.title);
  for (const auto& m : r.members) {
    auto* pm = out.add_members();
    pm->set_account_id(m.account_id);
    auto acct = d_.storage->accounts().GetAccount(m.account_id);
    if (acct.ok()) pm->set_username(acct->username);
    pm->set_admin(m.admin);
    pm->set_joined_at_ms(m.joined_at_ms);
  }
  PARLEY_RETURN_IF_ERROR(SignedState(r.conversation_id, r.security, out.mutable_security()));
  out.set_created_at_ms(r.created_at_ms);
  out.set_last_message_seq(r.last_seq);
  return out;
}

absl::StatusOr<storage::ConversationRecord> ParleyService::LoadMemberConversation(
    const Caller& c, const std::string& id, absl::string_view field) {
  PARLEY_RETURN_IF_ERROR(ValidateConversationId(id, field));
  auto conv = d_.storage->conversations().GetConversation(id);
  if (!conv.ok()) return Named(conv.status(), absl::StrCat("conversation ", id));
  if (!IsMember(*conv, c.account_id)) {
    return absl::PermissionDeniedError(absl::StrCat("not a member of conversation ", id));
  }
  return conv;
}

absl::StatusOr<std::vector<storage::QueueTarget>> ParleyService::Targets(
    const storage::ConversationRecord& conv, const Caller* exclude) {
  std::vector<storage::QueueTarget> targets;
  for (const auto& m : conv.members) {
    PARLEY_ASSIGN_OR_RETURN(std::vector<uint32_t> ids, DeviceIds(m.account_id));
    for (uint32_t id : ids) {
      if (exclude != nullptr && m.account_id == exclude->account_id && id == exclude->device_id) {
        continue;
      }
      targets.push_back({m.account_id, id});
    }
  }
  return targets;
}

absl::Status ParleyService::AppendEvent(const storage::ConversationRecord& conv, const Caller* by,
                                  const std::function<void(v1::Message*)>& fill,
                                  const std::vector<storage::QueueTarget>& extra_targets,
                                  const storage::SecurityStateRecord* new_security) {
  PARLEY_ASSIGN_OR_RETURN(auto targets, Targets(conv, nullptr));
  targets.insert(targets.end(), extra_targets.begin(), extra_targets.end());
  storage::AppendRequest req;
  req.conversation_id = conv.conversation_id;
  req.server_time_ms = Now();
  if (by != nullptr) {
    req.sender_account_id = by->account_id;
    req.sender_device_id = by->device_id;
  }
  req.targets = targets;
  // Events carry no content: they stay in history in every mode.
  req.keep_history = true;
  if (new_security != nullptr) {
    req.new_security = *new_security;
    req.expect_epoch = conv.security.epoch;
  }
  const uint64_t epoch = new_security != nullptr ? new_security->epoch : conv.security.epoch;
  const int64_t t = req.server_time_ms;
  req.make_payload = [&](uint64_t seq) {
    v1::Message m;
    m.set_conversation_id(conv.conversation_id);
    m.set_seq(seq);
    if (by != nullptr) {
      m.set_sender_account_id(by->account_id);
      m.set_sender_device_id(by->device_id);
    }
    m.set_server_time_ms(t);
    m.set_security_epoch(epoch);
    fill(&m);
    return m.SerializeAsString();
  };
  PARLEY_RETURN_IF_ERROR(d_.storage->messages().Append(req).status());
  d_.hub->Notify(targets);
  return absl::OkStatus();
}

absl::StatusOr<v1::CreateDirectResponse> ParleyService::CreateDirect(const Caller& c,
                                                               const v1::CreateDirectRequest& req) {
  PARLEY_ASSIGN_OR_RETURN(std::string peer_name, CanonicalUsername(req.peer_username(), "peer_username"));
  auto peer = d_.storage->accounts().GetAccountByUsername(peer_name);
  if (!peer.ok()) return Named(peer.status(), absl::StrCat("peer_username: user \"", peer_name, "\""));
  if (peer->account_id == c.account_id) {
    return absl::InvalidArgumentError("peer_username: cannot start a direct conversation with yourself");
  }
  v1::CreateDirectResponse resp;
  auto existing = d_.storage->conversations().FindDirect(c.account_id, peer->account_id);
  if (existing.ok()) {
    PARLEY_ASSIGN_OR_RETURN(auto conv, d_.storage->conversations().GetConversation(*existing));
    PARLEY_ASSIGN_OR_RETURN(*resp.mutable_conversation(), ConversationToProto(conv));
    resp.set_created(false);
    return resp;
  }
  if (!absl::IsNotFound(existing.status())) return existing.status();

  PARLEY_ASSIGN_OR_RETURN(storage::AccountRecord me, d_.storage->accounts().GetAccount(c.account_id));
  const int64_t now = Now();
  storage::ConversationRecord conv;
  conv.conversation_id = NewConversationId();
  conv.kind = kDirect;
  conv.members = {{c.account_id, false, now}, {peer->account_id, false, now}};
  conv.created_at_ms = now;
  PARLEY_ASSIGN_OR_RETURN(conv.security, InitialSecurity(conv, {me, *peer}));
  absl::Status s = d_.storage->conversations().CreateConversation(conv);
  if (absl::IsAlreadyExists(s)) {
    // Lost a race with the peer creating the same pair: return theirs.
    PARLEY_ASSIGN_OR_RETURN(std::string id,
                            d_.storage->conversations().FindDirect(c.account_id, peer->account_id));
    PARLEY_ASSIGN_OR_RETURN(auto theirs, d_.storage->conversations().GetConversation(id));
    PARLEY_ASSIGN_OR_RETURN(*resp.mutable_conversation(), ConversationToProto(theirs));
    resp.set_created(false);
    return resp;
  }
  PARLEY_RETURN_IF_ERROR(s);
  PARLEY_ASSIGN_OR_RETURN(*resp.mutable_conversation(), ConversationToProto(conv));
  resp.set_created(true);
  return resp;
}

absl::StatusOr<v1::CreateGroupResponse> ParleyService::CreateGroup(const Caller& c,
                                                             const v1::CreateGroupRequest& req) {
  PARLEY_RETURN_IF_ERROR(ValidateText(req.title(), kMaxTitle, false, "title"));
  if (static_cast<size_t>(req.member_usernames_size()) + 1 > d_.limits.max_group_members) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "member_usernames: a group may have at most ", d_.limits.max_group_members, " members"));
  }
  PARLEY_ASSIGN_OR_RETURN(storage::AccountRecord me, d_.storage->accounts().GetAccount(c.account_id));
  const int64_t now = Now();
  storage::ConversationRecord conv;
  conv.conversation_id = NewConversationId();
  conv.kind = kGroup;
  conv.title = req.title();
  conv.created_at_ms = now;
  conv.members.push_back({c.account_id, true, now});
  std::vector<storage::AccountRecord> accounts = {me};
  absl::flat_hash_set<std::string> seen = {c.account_id};
  for (int i = 0; i < req.member_usernames_size(); ++i) {
    std::string field = absl::StrCat("member_usernames[", i, "]");
    PARLEY_ASSIGN_OR_RETURN(std::string u, CanonicalUsername(req.member_usernames(i), field));
    auto acct = d_.storage->accounts().GetAccountByUsername(u);
    if (!acct.ok()) return Named(acct.status(), absl::StrCat(field, ": user \"", u, "\""));
    if (!seen.insert(acct->account_id).second) continue;  // duplicates and self are ignored
    conv.members.push_back({acct->account_id, false, now});
    accounts.push_back(*acct);
  }
  PARLEY_ASSIGN_OR_RETURN(conv.security, InitialSecurity(conv, accounts));
  PARLEY_RETURN_IF_ERROR(d_.storage->conversations().CreateConversation(conv));
  std::vector<std::string> ids;
  for (const auto& m : conv.members) ids.push_back(m.account_id);
  PARLEY_RETURN_IF_ERROR(AppendEvent(conv, &c, [&](v1::Message* m) {
    auto* mc = m->mutable_membership_change();
    mc->set_action(v1::MembershipChange::ACTION_CREATED);
    for (const auto& id : ids) mc->add_account_ids(id);
    mc->set_by_account_id(c.account_id);
  }));
  PARLEY_ASSIGN_OR_RETURN(auto stored, d_.storage->conversations().GetConversation(conv.conversation_id));
  v1::CreateGroupResponse resp;
  PARLEY_ASSIGN_OR_RETURN(*resp.mutable_conversation(), ConversationToProto(stored));
  return resp;
}

absl::StatusOr<v1::GetConversationResponse> ParleyService::GetConversation(
    const Caller& c, const v1::GetConversationRequest& req) {
  PARLEY_ASSIGN_OR_RETURN(auto conv, LoadMemberConversation(c, req.conversation_id(), "conversation_id"));
  v1::GetConversationResponse resp;
  PARLEY_ASSIGN_OR_RETURN(*resp.mutable_conversation(), ConversationToProto(conv));
  return resp;
}

absl::StatusOr<v1::ListConversationsResponse> ParleyService::ListConversations(const Caller& c) {
  PARLEY_ASSIGN_OR_RETURN(auto ids, d_.storage->conversations().ListConversationIds(c.account_id));
  v1::ListConversationsResponse resp;
  for (const auto& id : ids) {
    auto conv = d_.storage->conversations().GetConversation(id);
    if (absl::IsNotFound(conv.status())) continue;
    if (!conv.ok()) return conv.status();
    PARLEY_ASSIGN_OR_RETURN(*resp.add_conversations(), ConversationToProto(*conv));
  }
  return resp;
}

absl::StatusOr<v1::AddMembersResponse> ParleyService::AddMembers(const Caller& c,
                                                           const v1::AddMembersRequest& req) {
  if (req.usernames_size() == 0) return absl::InvalidArgumentError("usernames: at least one is required");
  absl::MutexLock lock(ConversationLock(req.conversation_id()));
  PARLEY_ASSIGN_OR_RETURN(auto conv, LoadMemberConversation(c, req.conversation_id(), "conversation_id"));
  if (conv.kind != kGroup) {
    return absl::FailedPreconditionError(
        absl::StrCat("conversation ", conv.conversation_id, " is not a group; members cannot be added"));
  }
  if (!IsAdmin(conv, c.account_id)) {
    return absl::PermissionDeniedError(
        absl::StrCat("only admins of conversation ", conv.conversation_id, " may add members"));
  }
  const int64_t now = Now();
  std::vector<std::string> added;
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < req.usernames_size(); ++i) {
    std::string field = absl::StrCat("usernames[", i, "]");
    PARLEY_ASSIGN_OR_RETURN(std::string u, CanonicalUsername(req.usernames(i), field));
    auto acct = d_.storage->accounts().GetAccountByUsername(u);
    if (!acct.ok()) return Named(acct.status(), absl::StrCat(field, ": user \"", u, "\""));
    if (IsMember(conv, acct->account_id)) {
      return absl::AlreadyExistsError(absl::StrCat(field, ": \"", u, "\" is already a member"));
    }
    if (!seen.insert(acct->account_id).second) continue;
    added.push_back(acct->account_id);
  }
  if (conv.members.size() + added.size() > d_.limits.max_group_members) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "usernames: the group would have ", conv.members.size() + added.size(),
        " members (limit ", d_.limits.max_group_members, ")"));
  }
  for (const auto& id : added) conv.members.push_back({id, false, now});
  PARLEY_RETURN_IF_ERROR(d_.storage->conversations().UpdateConversation(conv));
  PARLEY_RETURN_IF_ERROR(AppendEvent(conv, &c, [&](v1::Message* m) {
    auto* mc = m->mutable_membership_change();
    mc->set_action(v1::MembershipChange::ACTION_ADDED);
    for (const auto& id : added) mc->add_account_ids(id);
    mc->set_by_account_id(c.account_id);
  }));
  // New members may change what the policy decides (e.g. a minor joins).
  PARLEY_RETURN_IF_ERROR(ReevaluateLocked(conv, &c).status());
  PARLEY_ASSIGN_OR_RETURN(auto stored, d_.storage->conversations().GetConversation(conv.conversation_id));
  v1::AddMembersResponse resp;
  PARLEY_ASSIGN_OR_RETURN(*resp.mutable_conversation(), ConversationToProto(stored));
  return resp;
}

absl::Status ParleyService::RemoveMember(const Caller& c, const v1::RemoveMemberRequest& req) {
  PARLEY_RETURN_IF_ERROR(ValidateAccountId(req.account_id(), "account_id"));
  absl::MutexLock lock(ConversationLock(req.conversation_id()));
  PARLEY_ASSIGN_OR_RETURN(auto conv, LoadMemberConversation(c, req.conversation_id(), "conversation_id"));
  if (conv.kind != kGroup) {
    return absl::FailedPreconditionError(absl::StrCat(
        "conversation ", conv.conversation_id, " is not a group; members cannot be removed"));
  }
  const bool leaving = req.account_id() == c.account_id;
  if (!leaving && !IsAdmin(conv, c.account_id)) {
    return absl::PermissionDeniedError(
        absl::StrCat("only admins of conversation ", conv.conversation_id, " may remove members"));
  }
  auto it = std::find_if(conv.members.begin(), conv.members.end(),
                         [&](const storage::MemberRecord& m) { return m.account_id == req.account_id(); });
  if (it == conv.members.end()) {
    return absl::NotFoundError(absl::StrCat("account_id: ", req.account_id(), " is not a member of ",
                                            conv.conversation_id));
  }
  conv.members.erase(it);
  // A group never loses its last admin: promote the longest-standing member.
  bool any_admin = std::any_of(conv.members.begin(), conv.members.end(),
                               [](const storage::MemberRecord& m) { return m.admin; });
  if (!any_admin && !conv.members.empty()) conv.members.front().admin = true;
  // Consent requests of the departed member no longer count.
  auto drop = [&](std::vector<std::string>* v) {
    v->erase(std::remove(v->begin(), v->end(), req.account_id()), v->end());
  };
  drop(&conv.security.enable_requests);
  drop(&conv.security.disable_requests);
  PARLEY_RETURN_IF_ERROR(d_.storage->conversations().UpdateConversation(conv));
  // The removed member's devices get the event too, then nothing more.
  std::vector<storage::QueueTarget> removed_targets;
  PARLEY_ASSIGN_OR_RETURN(std::vector<uint32_t> removed_devices, DeviceIds(req.account_id()));
  for (uint32_t id : removed_devices) removed_targets.push_back({req.account_id(), id});
  const std::string removed = req.account_id();
  PARLEY_RETURN_IF_ERROR(AppendEvent(conv, &c, [&](v1::Message* m) {
    auto* mc = m->mutable_membership_change();
    mc->set_action(leaving ? v1::MembershipChange::ACTION_LEFT : v1::MembershipChange::ACTION_REMOVED);
    mc->add_account_ids(removed);
    mc->set_by_account_id(c.account_id);
  }, removed_targets));
  return ReevaluateLocked(conv, &c).status();
}

// -------------------------------------------------------------- messaging

absl::StatusOr<v1::SendResponse> ParleyService::Send(const Caller& c, const v1::SendRequest& req) {
  absl::StatusOr<v1::SendResponse> r = SendUncounted(c, req);
  std::atomic<uint64_t>& counter = !r.ok() ? sends_refused_ : r->duplicate() ? sends_duplicate_ : sends_stored_;
  counter.fetch_add(1, std::memory_order_relaxed);
  return r;
}

ParleyService::Counters ParleyService::counters() const {
  return Counters{.sends_stored = sends_stored_.load(std::memory_order_relaxed),
                  .sends_duplicate = sends_duplicate_.load(std::memory_order_relaxed),
                  .sends_refused = sends_refused_.load(std::memory_order_relaxed),
                  .acked = acked_.load(std::memory_order_relaxed)};
}

absl::StatusOr<v1::SendResponse> ParleyService::SendUncounted(const Caller& c, const v1::SendRequest& req) {
  PARLEY_RETURN_IF_ERROR(ValidateClientMessageId(req.client_message_id(), "client_message_id"));
  switch (req.body().kind_case()) {
    case v1::Body::kPlain: {
      const auto& p = req.body().plain();
      if (p.content().empty()) return absl::InvalidArgumentError("body.plain.content: must not be empty");
      if (p.content().size() > d_.limits.max_body_bytes) {
        return absl::ResourceExhaustedError(absl::StrCat("body.plain.content: ", p.content().size(),
                                                         " bytes exceeds the limit of ",
                                                         d_.limits.max_body_bytes));
      }
      PARLEY_RETURN_IF_ERROR(ValidateText(p.content_type(), kMaxContentType, true, "body.plain.content_type"));
      if (p.content_type().empty() || p.content_type().rfind("text/", 0) == 0) {
        PARLEY_RETURN_IF_ERROR(ValidateUtf8(p.content(), "body.plain.content"));
      }
      break;
    }
    case v1::Body::kEncrypted:
      break;
    default:
      return absl::InvalidArgumentError("body: set plain or encrypted");
  }
  // A policy change may land between reading the state and appending: the
  // append is conditional on the epoch, and re-checked against the new state.
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<v1::SendResponse> r = SendOnce(c, req);
    if (attempt < 3 && absl::IsAborted(r.status())) continue;
    return r;
  }
}

absl::StatusOr<v1::SendResponse> ParleyService::SendOnce(const Caller& c, const v1::SendRequest& req) {
  PARLEY_ASSIGN_OR_RETURN(auto conv, LoadMemberConversation(c, req.conversation_id(), "conversation_id"));

  // The server enforces the conversation's mode.
  const bool e2ee = conv.security.mode == v1::SECURITY_MODE_E2EE;
  if (e2ee && req.body().has_plain()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "conversation ", conv.conversation_id, " is end-to-end encrypted (rule ", conv.security.rule_id,
        ", policy revision ", conv.security.policy_revision, "): plaintext bodies are refused"));
  }
  if (!e2ee && req.body().has_encrypted()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "conversation ", conv.conversation_id, " is in ",
        v1::SecurityMode_Name(static_cast<v1::SecurityMode>(conv.security.mode)), " mode (rule ",
        conv.security.rule_id, ", policy revision ", conv.security.policy_revision,
        "): bodies must be server-readable"));
  }
  if (e2ee) return SendEncrypted(c, req, conv);

  PARLEY_ASSIGN_OR_RETURN(auto targets, Targets(conv, &c));
  storage::AppendRequest a;
  a.conversation_id = conv.conversation_id;
  a.sender_account_id = c.account_id;
  a.sender_device_id = c.device_id;
  a.client_message_id = req.client_message_id();
  a.server_time_ms = Now();
  a.idempotency_not_before_ms = IdempotencyNotBefore(a.server_time_ms);
  a.targets = targets;
  a.keep_history = true;
  const uint64_t epoch = conv.security.epoch;
  auto message_at = [&](uint64_t seq) {
    v1::Message m;
    m.set_conversation_id(conv.conversation_id);
    m.set_seq(seq);
    m.set_sender_account_id(c.account_id);
    m.set_sender_device_id(c.device_id);
    m.set_client_message_id(req.client_message_id());
    m.set_server_time_ms(a.server_time_ms);
    m.set_security_epoch(epoch);
    *m.mutable_plain() = req.body().plain();
    return m;
  };
  a.make_payload = [&](uint64_t seq) -> absl::StatusOr<std::string> { return message_at(seq).SerializeAsString(); };
  a.expect_epoch = conv.security.epoch;
  a.defer_durability = true;  // the gRPC adapter waits (Storage::WhenDurable)
  a.return_queued = true;     // handed to connected streams (DeliveryHub::Offer)
  auto appended = d_.storage->messages().Append(a);
  if (absl::IsFailedPrecondition(appended.status())) {
    return absl::AbortedError(absl::StrCat("conversation ", conv.conversation_id,
                                           ": security state changed during the send; retry"));
  }
  if (!appended.ok()) return appended.status();
  const storage::AppendResult& r = *appended;
  if (!r.duplicate) OfferWhenDurable(std::move(targets), r.queued);
  if (!r.duplicate && d_.safety != nullptr && d_.safety->scanning_configured()) {
    d_.safety->ScanMessage(conv, message_at(r.seq));
  }
  v1::SendResponse resp;
  resp.set_seq(r.seq);
  resp.set_server_time_ms(r.server_time_ms);
  resp.set_duplicate(r.duplicate);
  return resp;
}

absl::StatusOr<v1::SendResponse> ParleyService::SendEncrypted(const Caller& c, const v1::SendRequest& req,
                                                               const storage::ConversationRecord& conv) {
  const v1::EncryptedBody& body = req.body().encrypted();
  // The devices that must get a ciphertext: every device of every member
  // that has published keys (a device without keys cannot decrypt), except
  // the sending device. Registration ids come from the key directory.
  struct Expected {
    uint32_t registration_id;
    int index;  // into body.ciphertexts, -1 until matched
  };
  std::map<std::pair<std::string, uint32_t>, Expected> expected;
  for (const auto& m : conv.members) {
    PARLEY_ASSIGN_OR_RETURN(std::vector<uint32_t> ids, DeviceIds(m.account_id));
    for (uint32_t id : ids) {
      if (m.account_id == c.account_id && id == c.device_id) continue;
      auto keys = d_.storage->keys().GetDeviceKeys(m.account_id, id);
      if (absl::IsNotFound(keys.status())) continue;
      if (!keys.ok()) return keys.status();
      expected[{m.account_id, id}] = {keys->registration_id, -1};
    }
  }
  v1::DeviceMismatch mismatch;
  for (int i = 0; i < body.ciphertexts_size(); ++i) {
    const v1::DeviceCiphertext& ct = body.ciphertexts(i);
    const std::string field = absl::StrCat("body.encrypted.ciphertexts[", i, "]");
    PARLEY_RETURN_IF_ERROR(ValidateAccountId(ct.account_id(), absl::StrCat(field, ".account_id")));
    if (ct.device_id() == 0) return absl::InvalidArgumentError(absl::StrCat(field, ".device_id: is required"));
    if (ct.type() < 2 || ct.type() > 5) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".type: ", ct.type(), " is not a Signal message type (2 whisper, 3 pre-key, 4/5 sender key)"));
    }
    if (ct.ciphertext().empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".ciphertext: is empty"));
    if (ct.ciphertext().size() > d_.limits.max_body_bytes + kCiphertextOverhead) {
      return absl::ResourceExhaustedError(absl::StrCat(field, ".ciphertext: ", ct.ciphertext().size(),
                                                       " bytes exceeds the limit of ",
                                                       d_.limits.max_body_bytes + kCiphertextOverhead));
    }
    auto it = expected.find({ct.account_id(), ct.device_id()});
    if (it == expected.end()) {
      auto* x = mismatch.add_extra();
      x->set_account_id(ct.account_id());
      x->set_device_id(ct.device_id());
      continue;
    }
    if (it->second.index != -1) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": a second ciphertext for device ", ct.account_id(),
                                                     "/", ct.device_id()));
    }
    it->second.index = i;
    if (ct.registration_id() != it->second.registration_id) {
      auto* x = mismatch.add_stale();
      x->set_account_id(ct.account_id());
      x->set_device_id(ct.device_id());
    }
  }
  for (const auto& [dev, e] : expected) {
    if (e.index != -1) continue;
    auto* x = mismatch.add_missing();
    x->set_account_id(dev.first);
    x->set_device_id(dev.second);
  }
  if (mismatch.missing_size() + mismatch.extra_size() + mismatch.stale_size() > 0) {
    absl::Status st = absl::FailedPreconditionError(absl::StrCat(
        "body.encrypted.ciphertexts do not match the devices of conversation ", conv.conversation_id, ": ",
        mismatch.missing_size(), " missing, ", mismatch.extra_size(), " extra, ", mismatch.stale_size(),
        " stale (the status details carry a parley.v1.DeviceMismatch); update sessions and retry"));
    st.SetPayload(kDeviceMismatchTypeUrl, absl::Cord(mismatch.SerializeAsString()));
    return st;
  }
  if (!body.franking_commitment().empty() &&
      body.franking_commitment().size() != franking::kCommitmentBytes) {
    return absl::InvalidArgumentError(absl::StrCat("body.encrypted.franking_commitment: ",
                                                   body.franking_commitment().size(), " bytes, expected ",
                                                   franking::kCommitmentBytes, " (HMAC-SHA256)"));
  }
  if (expected.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no other device in conversation ", conv.conversation_id,
        " has published end-to-end encryption keys; nothing can be delivered"));
  }

  std::vector<storage::QueueTarget> targets;
  targets.reserve(expected.size());
  for (const auto& [dev, e] : expected) targets.push_back({dev.first, dev.second});
  storage::AppendRequest a;
  a.conversation_id = conv.conversation_id;
  a.sender_account_id = c.account_id;
  a.sender_device_id = c.device_id;
  a.client_message_id = req.client_message_id();
  a.server_time_ms = Now();
  a.idempotency_not_before_ms = IdempotencyNotBefore(a.server_time_ms);
  a.targets = targets;
  a.keep_history = false;  // the server keeps no readable content of E2EE conversations
  a.expect_epoch = conv.security.epoch;
  a.defer_durability = true;  // the gRPC adapter waits (Storage::WhenDurable)
  a.return_queued = true;     // handed to connected streams (DeliveryHub::Offer)
  const uint64_t epoch = conv.security.epoch;
  // The franking stamp binds the sender's commitment to this message's
  // metadata (computed once, when the seq is known).
  std::string stamp;
  uint64_t stamped_seq = 0;
  // A stamp that cannot be made aborts the Append (nothing is stored): a
  // message with a commitment is never delivered unstamped.
  a.make_target_payload = [&](uint64_t seq, const storage::QueueTarget& t) -> absl::StatusOr<std::string> {
    if (!body.franking_commitment().empty() && stamped_seq != seq) {
      stamped_seq = seq;
      franking::StampInput si;
      si.commitment = body.franking_commitment();
      si.conversation_id = conv.conversation_id;
      si.sender_account_id = c.account_id;
      si.sender_device_id = c.device_id;
      si.client_message_id = req.client_message_id();
      si.seq = seq;
      si.server_time_ms = a.server_time_ms;
      auto st = d_.franker->Stamp(si);
      if (!st.ok()) return absl::InternalError(absl::StrCat("franking stamp: ", st.status().message()));
      stamp = *std::move(st);
    }
    v1::Message m;
    m.set_conversation_id(conv.conversation_id);
    m.set_seq(seq);
    m.set_sender_account_id(c.account_id);
    m.set_sender_device_id(c.device_id);
    m.set_client_message_id(req.client_message_id());
    m.set_server_time_ms(a.server_time_ms);
    m.set_security_epoch(epoch);
    *m.mutable_ciphertext() = body.ciphertexts(expected.at({t.account_id, t.device_id}).index);
    if (!body.franking_commitment().empty()) {
      m.set_franking_commitment(body.franking_commitment());
      m.set_franking_stamp(stamp);
    }
    return m.SerializeAsString();
  };
  auto appended = d_.storage->messages().Append(a);
  if (absl::IsFailedPrecondition(appended.status())) {
    return absl::AbortedError(absl::StrCat("conversation ", conv.conversation_id,
                                           ": security state changed during the send; retry"));
  }
  if (!appended.ok()) return appended.status();
  if (!appended->duplicate) OfferWhenDurable(std::move(targets), std::move(appended->queued));
  v1::SendResponse resp;
  resp.set_seq(appended->seq);
  resp.set_server_time_ms(appended->server_time_ms);
  resp.set_duplicate(appended->duplicate);
  return resp;
}

void ParleyService::OfferWhenDurable(std::vector<storage::QueueTarget> targets,
                                     std::vector<storage::QueuedEntry> queued) {
  DeliveryHub* hub = d_.hub;
  d_.storage->WhenDurable([hub, targets = std::move(targets), queued = std::move(queued)](absl::Status st) {
    // Not durable (a log write failed): not offered. The entries are in the
    // queues; a stream reads them once the store works again (its gap timer
    // or its next read), and the sender, answered with the error, may retry.
    if (st.ok()) hub->Offer(targets, queued);
  });
}

absl::StatusOr<v1::AckResponse> ParleyService::Ack(const Caller& c, const v1::AckRequest& req) {
  if (req.delivery_ids_size() == 0) return absl::InvalidArgumentError("delivery_ids: at least one is required");
  if (req.delivery_ids_size() > 10000) {
    return absl::InvalidArgumentError("delivery_ids: at most 10000 per call");
  }
  std::vector<uint64_t> ids(req.delivery_ids().begin(), req.delivery_ids().end());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == 0) return absl::InvalidArgumentError(absl::StrCat("delivery_ids[", i, "]: must be positive"));
  }
  PARLEY_ASSIGN_OR_RETURN(size_t removed, d_.storage->messages().Ack(c.account_id, c.device_id, ids));
  acked_.fetch_add(removed, std::memory_order_relaxed);
  v1::AckResponse resp;
  resp.set_removed(static_cast<uint32_t>(removed));
  return resp;
}

absl::StatusOr<v1::GetHistoryResponse> ParleyService::GetHistory(const Caller& c,
                                                           const v1::GetHistoryRequest& req) {
  PARLEY_ASSIGN_OR_RETURN(auto conv, LoadMemberConversation(c, req.conversation_id(), "conversation_id"));
  size_t limit = req.limit() == 0 ? 50 : req.limit();
  if (limit > d_.limits.max_history_page) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit: at most ", d_.limits.max_history_page, " messages per page"));
  }
  const int64_t cutoff = Now() - d_.history_retention_days * 24 * 3600 * 1000;
  PARLEY_ASSIGN_OR_RETURN(auto entries,
                          d_.storage->messages().ReadHistory(conv.conversation_id, req.before_seq(), limit + 1));
  v1::GetHistoryResponse resp;
  for (size_t i = 0; i < entries.size() && i < limit; ++i) {
    if (entries[i].server_time_ms < cutoff) break;  // past retention: purged soon
    if (!resp.add_messages()->ParseFromString(entries[i].payload)) {
      return absl::DataLossError(absl::StrCat("history entry ", conv.conversation_id, "#",
                                              entries[i].seq, " is corrupt"));
    }
  }
  resp.set_more(entries.size() > limit);
  return resp;
}

absl::StatusOr<v1::ReportMessageResponse> ParleyService::ReportMessage(
    const Caller& c, const v1::ReportMessageRequest& req) {
  if (d_.safety == nullptr) return absl::UnimplementedError("reporting is not configured on this server");
  if (!v1::ReportReason_IsValid(req.reason()) || req.reason() == v1::REPORT_REASON_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "reason: required (spam, harassment, hate, violence, sexual_content, child_safety, self_harm, "
        "fraud, other)");
  }
  if (req.comment().size() > 1000) return absl::InvalidArgumentError("comment: at most 1000 bytes");
  PARLEY_RETURN_IF_ERROR(ValidateUtf8(req.comment(), "comment"));
  if (req.seq() == 0) return absl::InvalidArgumentError("seq: required (the message's seq)");
  PARLEY_ASSIGN_OR_RETURN(auto conv, LoadMemberConversation(c, req.conversation_id(), "conversation_id"));
  if (req.seq() > conv.last_seq) {
    return absl::NotFoundError(
        absl::StrCat("message ", req.seq(), " does not exist in conversation ", conv.conversation_id));
  }
  v1::GetReportResponse draft;
  v1::ReportSummary* r = draft.mutable_report();
  r->set_source(v1::REPORT_SOURCE_PARTICIPANT);
  r->set_reason(req.reason());
  r->set_conversation_id(conv.conversation_id);
  r->set_seq(req.seq());
  r->set_reporter_account_id(c.account_id);
  draft.set_comment(req.comment());
  v1::Message* m = draft.mutable_message();
  if (req.has_reveal()) {
    // End-to-end encrypted: accepted only if the franking reveal checks.
    const v1::FrankingReveal& rv = req.reveal();
    if (rv.content().size() > d_.limits.max_body_bytes) {
      return absl::InvalidArgumentError("reveal.content: larger than any message can be");
    }
    if (rv.sender_account_id() == c.account_id) {
      return absl::InvalidArgumentError("reveal.sender_account_id: you cannot report your own message");
    }
    PARLEY_RETURN_IF_ERROR(d_.franker->Verify(conv.conversation_id, req.seq(), rv));
    r->set_mode(v1::SECURITY_MODE_E2EE);
    r->set_sender_account_id(rv.sender_account_id());
    r->set_franking_verified(true);
    m->set_conversation_id(conv.conversation_id);
    m->set_seq(req.seq());
    m->set_sender_account_id(rv.sender_account_id());
    m->set_sender_device_id(rv.sender_device_id());
    m->set_client_message_id(rv.client_message_id());
    m->set_server_time_ms(rv.server_time_ms());
    m->mutable_plain()->set_content_type(rv.content_type());
    m->mutable_plain()->set_content(rv.content());
    m->set_franking_commitment(rv.franking_commitment());
    m->set_franking_stamp(rv.franking_stamp());
  } else {
    // Server-readable: the report points at the stored message.
    PARLEY_ASSIGN_OR_RETURN(auto entries,
                            d_.storage->messages().ReadHistory(conv.conversation_id, req.seq() + 1, 1));
    if (entries.empty() || entries[0].seq != req.seq()) {
      if (conv.security.mode == v1::SECURITY_MODE_E2EE || conv.security.e2ee_ever_enabled) {
        return absl::InvalidArgumentError(absl::StrCat(
            "message ", req.seq(), " of conversation ", conv.conversation_id,
            " is not in readable history (end-to-end encrypted): the report must reveal it (reveal)"));
      }
      return absl::NotFoundError(absl::StrCat("message ", req.seq(), " of conversation ", conv.conversation_id,
                                              " is no longer in readable history (removed or past retention)"));
    }
    if (!m->ParseFromString(entries[0].payload)) {
      return absl::DataLossError(absl::StrCat("history entry ", conv.conversation_id, "#", req.seq(), " is corrupt"));
    }
    if (!m->has_plain()) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", req.seq(), " is a server event; only messages can be reported"));
    }
    if (m->sender_account_id() == c.account_id) {
      return absl::InvalidArgumentError("seq: you cannot report your own message");
    }
    r->set_mode(static_cast<v1::SecurityMode>(conv.security.mode == v1::SECURITY_MODE_E2EE
                                                  ? v1::SECURITY_MODE_TRANSPORT
                                                  : conv.security.mode));
    r->set_sender_account_id(m->sender_account_id());
  }
  PARLEY_ASSIGN_OR_RETURN(std::string id, d_.safety->FileReport(std::move(draft)));
  v1::ReportMessageResponse resp;
  resp.set_report_id(id);
  resp.set_franking_verified(req.has_reveal());
  return resp;
}

absl::Status ParleyService::PostEvent(const std::string& conversation_id,
                                      const std::function<void(v1::Message*)>& fill,
                                      const std::vector<std::string>& only_accounts) {
  absl::MutexLock lock(ConversationLock(conversation_id));
  auto conv = d_.storage->conversations().GetConversation(conversation_id);
  if (!conv.ok()) return Named(conv.status(), absl::StrCat("conversation ", conversation_id));
  if (only_accounts.empty()) return AppendEvent(*conv, nullptr, fill);
  std::vector<storage::QueueTarget> targets;
  for (const auto& account : only_accounts) {
    PARLEY_ASSIGN_OR_RETURN(std::vector<uint32_t> ids, DeviceIds(account));
    for (uint32_t id : ids) targets.push_back({account, id});
  }
  storage::AppendRequest req;
  req.conversation_id = conv->conversation_id;
  req.server_time_ms = Now();
  req.targets = targets;
  req.keep_history = false;  // private to those accounts
  const uint64_t epoch = conv->security.epoch;
  const int64_t t = req.server_time_ms;
  req.make_payload = [&](uint64_t seq) {
    v1::Message m;
    m.set_conversation_id(conversation_id);
    m.set_seq(seq);
    m.set_server_time_ms(t);
    m.set_security_epoch(epoch);
    fill(&m);
    return m.SerializeAsString();
  };
  PARLEY_RETURN_IF_ERROR(d_.storage->messages().Append(req).status());
  d_.hub->Notify(targets);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<storage::QueueEntry>> ParleyService::ReadQueue(const Caller& c, uint64_t after,
                                                                    size_t limit) {
  PARLEY_ASSIGN_OR_RETURN(auto entries,
                          d_.storage->messages().ReadQueue(c.account_id, c.device_id, after, limit));
  v1::Message check;
  for (const storage::QueueEntry& e : entries) {
    if (!check.ParseFromString(e.payload)) {
      return absl::DataLossError(absl::StrCat("queue entry ", e.delivery_id, " is corrupt"));
    }
  }
  return entries;
}

absl::StatusOr<uint64_t> ParleyService::LastDeliveryId(const Caller& c) {
  return d_.storage->messages().LastDeliveryId(c.account_id, c.device_id);
}

// ----------------------------------------------------------- security

absl::Status ParleyService::SignedState(const std::string& conversation_id,
                                        const storage::SecurityStateRecord& r,
                                        v1::SecurityState* out) const {
  ToProto(r, out);
  return d_.signer->Sign(conversation_id, out);
}

absl::StatusOr<storage::SecurityStateRecord> ParleyService::InitialSecurity(
    const storage::ConversationRecord& conv, const std::vector<storage::AccountRecord>& members) {
  auto v = d_.policy->current();
  FactsBuilder fb(&d_.storage->accounts());
  const int64_t now = Now();
  PARLEY_ASSIGN_OR_RETURN(policy::Facts f, fb.BuildNew(conv, members, now));
  storage::ConversationRecord fresh = conv;
  fresh.security = {};
  return Evaluate(*v, fresh, f, now).state;
}

absl::Status ParleyService::ApplySecurity(const storage::ConversationRecord& conv,
                                          const storage::SecurityStateRecord& next,
                                          const Caller* by) {
  v1::SecurityState old_state, new_state;
  PARLEY_RETURN_IF_ERROR(SignedState(conv.conversation_id, conv.security, &old_state));
  PARLEY_RETURN_IF_ERROR(SignedState(conv.conversation_id, next, &new_state));
  PARLEY_RETURN_IF_ERROR(AppendEvent(
      conv, by,
      [&](v1::Message* m) {
        auto* sc = m->mutable_security_change();
        *sc->mutable_old_state() = old_state;
        *sc->mutable_new_state() = new_state;
        sc->set_reason(next.reason);
        sc->set_effective_at_ms(next.effective_at_ms);
      },
      {}, &next));
  if (next.pending_mode != 0) d_.policy->Schedule(conv.conversation_id, next.pending_effective_at_ms);
  return absl::OkStatus();
}

absl::StatusOr<bool> ParleyService::ReevaluateLocked(const storage::ConversationRecord& conv,
                                                     const Caller* by) {
  auto v = d_.policy->current();
  FactsBuilder fb(&d_.storage->accounts());
  const int64_t now = Now();
  PARLEY_ASSIGN_OR_RETURN(policy::Facts f, fb.Build(conv, now, v->applied_at_ms));
  Evaluation e = Evaluate(*v, conv, f, now);
  if (!e.changed) return false;
  PARLEY_RETURN_IF_ERROR(ApplySecurity(conv, e.state, by));
  return true;
}

absl::StatusOr<bool> ParleyService::Reevaluate(const std::string& conversation_id) {
  absl::MutexLock lock(ConversationLock(conversation_id));
  auto conv = d_.storage->conversations().GetConversation(conversation_id);
  if (absl::IsNotFound(conv.status())) return false;
  if (!conv.ok()) return conv.status();
  return ReevaluateLocked(*conv, nullptr);
}

absl::StatusOr<ParleyService::ReevaluateResult> ParleyService::ReevaluateAll(size_t samples,
                                                                             bool schedule_pending) {
  // Pass 1 (read only): find what changes. Pass 2: change each under its
  // lock, re-deciding from the state as it is then.
  auto v = d_.policy->current();
  const int64_t now = Now();
  FactsBuilder fb(&d_.storage->accounts());
  PlanTally tally(samples);
  std::vector<std::string> changed_ids;
  absl::Status err;
  policy::Facts f;
  PARLEY_RETURN_IF_ERROR(d_.storage->conversations().ForEachConversation(
      [&](const storage::ConversationRecord& conv) {
        err = fb.BuildInto(conv, now, v->applied_at_ms, &f);
        if (!err.ok()) return false;
        Evaluation e = Evaluate(*v, conv, f, now, /*full_state=*/false);
        tally.Add(conv, e);
        if (e.changed) {
          changed_ids.push_back(conv.conversation_id);
        } else if (schedule_pending && conv.security.pending_mode != 0) {
          d_.policy->Schedule(conv.conversation_id, conv.security.pending_effective_at_ms);
        }
        return true;
      }));
  PARLEY_RETURN_IF_ERROR(err);
  ReevaluateResult res;
  for (const auto& id : changed_ids) {
    PARLEY_ASSIGN_OR_RETURN(bool changed, Reevaluate(id));
    if (changed) ++res.changed;
  }
  res.plan = tally.Finish(now, 0);
  res.plan.set_candidate_hash(v->record.content_hash);
  return res;
}

absl::StatusOr<uint64_t> ParleyService::RunDueChanges() {
  uint64_t n = 0;
  for (const auto& id : d_.policy->TakeDue(Now())) {
    PARLEY_ASSIGN_OR_RETURN(bool changed, Reevaluate(id));
    n += changed ? 1 : 0;
  }
  return n;
}

absl::StatusOr<v1::RequestSecurityChangeResponse> ParleyService::RequestSecurityChange(
    const Caller& c, const v1::RequestSecurityChangeRequest& req) {
  const v1::SecurityMode want = req.requested_mode();
  if (want != v1::SECURITY_MODE_E2EE && want != v1::SECURITY_MODE_TRANSPORT &&
      want != v1::SECURITY_MODE_OPT_IN) {
    return absl::InvalidArgumentError(absl::StrCat(
        "requested_mode: must be SECURITY_MODE_E2EE (turn end-to-end encryption on) or "
        "SECURITY_MODE_TRANSPORT / SECURITY_MODE_OPT_IN (turn it off), not ",
        static_cast<int>(want)));
  }
  const bool enable = want == v1::SECURITY_MODE_E2EE;
  PARLEY_RETURN_IF_ERROR(ValidateConversationId(req.conversation_id(), "conversation_id"));
  absl::MutexLock lock(ConversationLock(req.conversation_id()));
  PARLEY_ASSIGN_OR_RETURN(auto conv, LoadMemberConversation(c, req.conversation_id(), "conversation_id"));
  const bool is_e2ee = conv.security.mode == v1::SECURITY_MODE_E2EE;
  if (enable && is_e2ee) {
    return absl::FailedPreconditionError(
        absl::StrCat("conversation ", conv.conversation_id, " is already end-to-end encrypted"));
  }
  if (!enable && !is_e2ee) {
    return absl::FailedPreconditionError(
        absl::StrCat("conversation ", conv.conversation_id, " is not end-to-end encrypted"));
  }

  auto v = d_.policy->current();
  FactsBuilder fb(&d_.storage->accounts());
  const int64_t now = Now();
  PARLEY_ASSIGN_OR_RETURN(policy::Facts f, fb.Build(conv, now, v->applied_at_ms));
  const policy::Decision d = policy::Decide(v->policy, f);
  const std::string where = absl::StrCat("(rule ", std::string(d.rule_id), ", policy revision ",
                                         v->revision_id, ")");
  if (d.locked) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the policy locks the protection of conversation ", conv.conversation_id, " ", where));
  }
  if (enable && d.enable_e2ee == policy::EnableConsent::kNobody) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the policy does not let participants turn on end-to-end encryption in conversation ",
        conv.conversation_id, " ", where));
  }
  if (!enable && d.disable_e2ee == policy::DisableConsent::kNever) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the policy does not let participants turn off end-to-end encryption in conversation ",
        conv.conversation_id, " ", where));
  }
  const bool all = enable ? d.enable_e2ee == policy::EnableConsent::kAllParticipants
                          : d.disable_e2ee == policy::DisableConsent::kAllParticipants;
  auto& mine = enable ? conv.security.enable_requests : conv.security.disable_requests;
  auto& other = enable ? conv.security.disable_requests : conv.security.enable_requests;
  if (std::find(mine.begin(), mine.end(), c.account_id) == mine.end()) mine.push_back(c.account_id);
  other.erase(std::remove(other.begin(), other.end(), c.account_id), other.end());

  PARLEY_ASSIGN_OR_RETURN(policy::Facts f2, fb.Build(conv, now, v->applied_at_ms));
  Evaluation e = Evaluate(*v, conv, f2, now);
  v1::RequestSecurityChangeResponse resp;
  resp.set_consents_required(all ? static_cast<uint32_t>(conv.members.size()) : 1);
  resp.set_consents(static_cast<uint32_t>(mine.size()));
  if (e.changed) {
    PARLEY_RETURN_IF_ERROR(ApplySecurity(conv, e.state, &c));
    PARLEY_RETURN_IF_ERROR(SignedState(conv.conversation_id, e.state, resp.mutable_state()));
    resp.set_pending_consent(e.state.mode != v1::SECURITY_MODE_E2EE ? enable : !enable);
  } else {
    PARLEY_RETURN_IF_ERROR(d_.storage->conversations().UpdateConversation(conv));
    PARLEY_RETURN_IF_ERROR(SignedState(conv.conversation_id, conv.security, resp.mutable_state()));
    resp.set_pending_consent(true);
  }
  return resp;
}

}  // namespace parley::core
