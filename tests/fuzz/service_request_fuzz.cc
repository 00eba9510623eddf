// libFuzzer target: the server's request handlers.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// A real ParleyService (RocksDB storage in a private temp directory, the
// policy engine with the default preset, a statement signer) and a
// KeyDirectory, set up once per process with three accounts (alice, bob,
// carol, device 1 each; bob and carol have published keys), an opt-in direct
// conversation alice-bob, an end-to-end encrypted direct conversation
// alice-carol and a group of the three.
//
// Input: one selector byte, then a serialized request. The low 5 bits pick
// the handler (kHandlers below), the high 3 bits the calling device (alice,
// bob, carol, or a device that does not exist). The request is parsed with
// ParseFromArray (inputs that do not parse are dropped) and passed to the
// handler; results are ignored: only crashes and sanitizer reports matter.
//
// Placeholders make the fixtures reachable: a conversation id "D", "E" or
// "G" becomes the opt-in direct, the E2EE direct or the group; an account id
// "A", "B" or "C" becomes alice's, bob's or carol's; a link code "L" becomes
// a fresh link code of the caller.
//
// State growth is bounded: the service, its storage and the fixtures are
// rebuilt from scratch every kResetEvery inputs, and accounts and groups
// created by inputs are capped in between.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/audit.h"
#include "core/delivery.h"
#include "core/franker.h"
#include "core/safety.h"
#include "core/key_directory.h"
#include "core/policy_engine.h"
#include "core/presets.h"
#include "core/service.h"
#include "core/statement.h"
#include "parley/v1/parley.pb.h"
#include "spdlog/spdlog.h"
#include "storage/rocksdb_storage.h"
#include "google/protobuf/stubs/logging.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using parley::fuzz::Check;
namespace core = parley::core;
namespace storage = parley::storage;
namespace v1 = parley::v1;

constexpr int64_t kStartMs = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr uint64_t kResetEvery = 20000;
constexpr int kMaxCreatedAccounts = 100;
constexpr int kMaxCreatedGroups = 100;

enum Handler : uint8_t {
  kCreateAccount = 0,
  kGetAccount,
  kLinkDevice,
  kListDevices,
  kRemoveDevice,
  kCreateDirect,
  kCreateGroup,
  kGetConversation,
  kListConversations,
  kAddMembers,
  kRemoveMember,
  kRequestSecurityChange,
  kSend,
  kAck,
  kGetHistory,
  kUploadKeys,
  kGetPreKeyCount,
  kFetchBundles,
  kAuthenticate,     // payload: the authorization header value
  kReadQueue,        // GetHistoryRequest: before_seq = after id, limit
  kReevaluate,       // GetConversationRequest: Reevaluate(conversation_id)
  kSwitchPolicy,     // payload byte: preset index; Commit + ReevaluateAll
  kRunDueChanges,    // no payload
  kReportMessage,    // ReportMessageRequest (with or without a franking reveal)
  kHandlerCount,
};

struct World {
  std::string dir;
  std::unique_ptr<storage::Storage> storage;
  core::DeliveryHub hub;
  std::unique_ptr<core::PolicyEngine> policy;
  std::unique_ptr<core::StatementSigner> signer;
  std::unique_ptr<core::Franker> franker;
  std::unique_ptr<core::Safety> safety;
  std::unique_ptr<core::AuditLog> audit;
  std::unique_ptr<core::ParleyService> service;
  std::unique_ptr<core::KeyDirectory> keys;
  int64_t now_ms = kStartMs;
  core::Caller alice, bob, carol;
  std::string direct, e2ee, group;
  int created_accounts = 0;
  int created_groups = 0;
};

World* g_world = nullptr;
uint64_t g_inputs = 0;

template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    fprintf(stderr, "service_request_fuzz setup: %s: %s\n", what, v.status().ToString().c_str());
    std::abort();
  }
  return *std::move(v);
}

core::Caller Account(World& w, const std::string& name, uint32_t registration_id, bool keys) {
  v1::CreateAccountRequest req;
  req.set_username(name);
  req.set_display_name(name);
  auto resp = Must(w.service->CreateAccount(req), "CreateAccount");
  core::Caller c{resp.account().account_id(), resp.device().device_id()};
  if (keys) {
    // Stored directly: the fuzzer cannot sign pre-keys, but E2EE sends need
    // recipient devices with keys.
    storage::DeviceKeysRecord k;
    k.account_id = c.account_id;
    k.device_id = c.device_id;
    k.identity_key = std::string(1, '\x05') + std::string(32, static_cast<char>(registration_id));
    k.registration_id = registration_id;
    k.signed_pre_key.key_id = 1;
    k.signed_pre_key.public_key = k.identity_key;
    k.signed_pre_key.signature = std::string(64, '\x01');
    Check(w.storage->keys().SetDeviceKeys(k).ok(), "SetDeviceKeys");
    std::vector<storage::PreKeyRecord> pre;
    for (uint32_t i = 1; i <= 3; ++i) pre.push_back({i, k.identity_key});
    Check(w.storage->keys().AddOneTimePreKeys(c.account_id, c.device_id, pre).ok(),
          "AddOneTimePreKeys");
  }
  return c;
}

std::string Group(World& w) {
  v1::CreateGroupRequest g;
  g.set_title("team");
  g.add_member_usernames("bob");
  g.add_member_usernames("carol");
  return Must(w.service->CreateGroup(w.alice, g), "CreateGroup").conversation().conversation_id();
}

std::unique_ptr<World> MakeWorld() {
  auto w = std::make_unique<World>();
  w->dir = parley::fuzz::ProcessTempDir() + "/world";
  std::filesystem::remove_all(w->dir);
  storage::RocksDbOptions ro;
  ro.path = w->dir + "/db";
  ro.block_cache_bytes = 4 << 20;
  ro.write_buffer_bytes = 2 << 20;
  w->storage = Must(storage::OpenRocksDbStorage(ro), "OpenRocksDbStorage");
  World* raw = w.get();
  auto now = [raw] { return raw->now_ms; };
  core::PolicyEngine::Options po;
  po.storage = w->storage.get();
  po.now_ms = now;
  const core::BuiltinPreset* def = core::FindPreset(core::kDefaultPreset);
  Check(def != nullptr, "default preset compiled in");
  po.default_content = def->content;
  po.default_file_name = std::string("preset:") + core::kDefaultPreset;
  w->policy = Must(core::PolicyEngine::Open(po), "PolicyEngine::Open").first;
  w->signer = Must(core::StatementSigner::LoadOrCreate(w->dir + "/keys/statement.key"),
                   "StatementSigner::LoadOrCreate");
  core::ParleyService::Deps deps;
  deps.storage = w->storage.get();
  deps.hub = &w->hub;
  deps.now_ms = now;
  deps.policy = w->policy.get();
  deps.signer = w->signer.get();
  w->franker = core::Franker::ForKey(std::string(32, 'k'));
  deps.franker = w->franker.get();
  w->audit = Must(core::AuditLog::Open(&w->storage->audit(), now), "AuditLog::Open");
  core::Safety::Deps sd;
  sd.storage = w->storage.get();
  sd.policy = w->policy.get();
  sd.audit = w->audit.get();
  sd.hub = &w->hub;
  sd.now_ms = now;
  sd.post_event = [raw](const std::string& id, const std::function<void(v1::Message*)>& fill,
                        const std::vector<std::string>& only) { return raw->service->PostEvent(id, fill, only); };
  w->safety = std::make_unique<core::Safety>(sd, core::Safety::Options());
  deps.safety = w->safety.get();
  deps.limits.max_group_members = 20;
  deps.limits.max_devices_per_account = 4;
  deps.limits.max_history_page = 50;
  deps.limits.max_body_bytes = 4096;
  w->service = std::make_unique<core::ParleyService>(deps);
  w->keys = std::make_unique<core::KeyDirectory>(w->storage.get());

  w->alice = Account(*w, "alice", 101, false);
  w->bob = Account(*w, "bob", 102, true);
  w->carol = Account(*w, "carol", 103, true);
  v1::CreateDirectRequest d;
  d.set_peer_username("bob");
  w->direct = Must(w->service->CreateDirect(w->alice, d), "CreateDirect").conversation().conversation_id();
  d.set_peer_username("carol");
  w->e2ee = Must(w->service->CreateDirect(w->alice, d), "CreateDirect").conversation().conversation_id();
  v1::RequestSecurityChangeRequest on;
  on.set_conversation_id(w->e2ee);
  on.set_requested_mode(v1::SECURITY_MODE_E2EE);
  (void)Must(w->service->RequestSecurityChange(w->alice, on), "RequestSecurityChange");
  w->group = Group(*w);
  return w;
}

void DestroyWorld() {
  if (g_world == nullptr) return;
  g_world->hub.CloseAll(absl::CancelledError("reset"));
  delete g_world;
  g_world = nullptr;
}

// Placeholder substitution (see the file comment).
void Conv(World& w, std::string* id) {
  if (*id == "D") *id = w.direct;
  else if (*id == "E") *id = w.e2ee;
  else if (*id == "G") *id = w.group;
}
void Acct(World& w, std::string* id) {
  if (*id == "A") *id = w.alice.account_id;
  else if (*id == "B") *id = w.bob.account_id;
  else if (*id == "C") *id = w.carol.account_id;
}

template <typename Req>
bool Parse(std::string_view payload, Req* req) {
  return req->ParseFromArray(payload.data(), static_cast<int>(payload.size()));
}

// Keeps the fixed group usable after inputs removed members from it.
void RepairGroup(World& w) {
  v1::GetConversationRequest g;
  g.set_conversation_id(w.group);
  auto got = w.service->GetConversation(w.alice, g);
  if (got.ok() && got->conversation().members_size() >= 2) return;
  w.group = Group(w);
}

void Run(World& w, uint8_t handler, const core::Caller& caller, std::string_view payload) {
  auto& s = *w.service;
  switch (handler) {
    case kCreateAccount: {
      v1::CreateAccountRequest r;
      if (!Parse(payload, &r) || w.created_accounts >= kMaxCreatedAccounts) return;
      if (s.CreateAccount(r).ok()) ++w.created_accounts;
      break;
    }
    case kGetAccount: {
      v1::GetAccountRequest r;
      if (!Parse(payload, &r)) return;
      if (r.key_case() == v1::GetAccountRequest::kAccountId) Acct(w, r.mutable_account_id());
      (void)s.GetAccount(caller, r);
      break;
    }
    case kLinkDevice: {
      v1::LinkDeviceRequest r;
      if (!Parse(payload, &r)) return;
      if (r.link_code() == "L") {
        auto link = s.CreateDeviceLink(caller);
        if (!link.ok()) return;
        r.set_link_code(link->link_code());
      }
      (void)s.LinkDevice(r);
      break;
    }
    case kListDevices:
      (void)s.ListDevices(caller);
      break;
    case kRemoveDevice: {
      v1::RemoveDeviceRequest r;
      if (!Parse(payload, &r) || r.device_id() == 1) return;  // keep the fixtures' devices
      (void)s.RemoveDevice(caller, r);
      break;
    }
    case kCreateDirect: {
      v1::CreateDirectRequest r;
      if (!Parse(payload, &r)) return;
      (void)s.CreateDirect(caller, r);
      break;
    }
    case kCreateGroup: {
      v1::CreateGroupRequest r;
      if (!Parse(payload, &r) || w.created_groups >= kMaxCreatedGroups) return;
      if (s.CreateGroup(caller, r).ok()) ++w.created_groups;
      break;
    }
    case kGetConversation: {
      v1::GetConversationRequest r;
      if (!Parse(payload, &r)) return;
      Conv(w, r.mutable_conversation_id());
      (void)s.GetConversation(caller, r);
      break;
    }
    case kListConversations:
      (void)s.ListConversations(caller);
      break;
    case kAddMembers: {
      v1::AddMembersRequest r;
      if (!Parse(payload, &r)) return;
      Conv(w, r.mutable_conversation_id());
      (void)s.AddMembers(caller, r);
      break;
    }
    case kRemoveMember: {
      v1::RemoveMemberRequest r;
      if (!Parse(payload, &r)) return;
      Conv(w, r.mutable_conversation_id());
      Acct(w, r.mutable_account_id());
      (void)s.RemoveMember(caller, r);
      RepairGroup(w);
      break;
    }
    case kRequestSecurityChange: {
      v1::RequestSecurityChangeRequest r;
      if (!Parse(payload, &r)) return;
      Conv(w, r.mutable_conversation_id());
      (void)s.RequestSecurityChange(caller, r);
      break;
    }
    case kSend: {
      v1::SendRequest r;
      if (!Parse(payload, &r)) return;
      Conv(w, r.mutable_conversation_id());
      if (r.body().has_encrypted()) {
        for (auto& ct : *r.mutable_body()->mutable_encrypted()->mutable_ciphertexts()) {
          Acct(w, ct.mutable_account_id());
        }
      }
      (void)s.Send(caller, r);
      break;
    }
    case kAck: {
      v1::AckRequest r;
      if (!Parse(payload, &r)) return;
      (void)s.Ack(caller, r);
      break;
    }
    case kGetHistory: {
      v1::GetHistoryRequest r;
      if (!Parse(payload, &r)) return;
      Conv(w, r.mutable_conversation_id());
      (void)s.GetHistory(caller, r);
      break;
    }
    case kUploadKeys: {
      v1::UploadKeysRequest r;
      if (!Parse(payload, &r)) return;
      (void)w.keys->Upload(caller.account_id, caller.device_id, r);
      break;
    }
    case kGetPreKeyCount:
      (void)w.keys->Count(caller.account_id, caller.device_id);
      break;
    case kFetchBundles: {
      v1::FetchBundlesRequest r;
      if (!Parse(payload, &r)) return;
      Acct(w, r.mutable_account_id());
      (void)w.keys->Fetch(caller.account_id, caller.device_id, r);
      break;
    }
    case kAuthenticate:
      (void)s.Authenticate(absl::string_view(payload.data(), payload.size()));
      break;
    case kReadQueue: {
      v1::GetHistoryRequest r;
      if (!Parse(payload, &r)) return;
      (void)s.ReadQueue(caller, r.before_seq(), r.limit() % 64);
      (void)s.LastDeliveryId(caller);
      s.Touch(caller);
      break;
    }
    case kReevaluate: {
      v1::GetConversationRequest r;
      if (!Parse(payload, &r)) return;
      Conv(w, r.mutable_conversation_id());
      (void)s.Reevaluate(r.conversation_id());
      break;
    }
    case kSwitchPolicy: {
      if (payload.empty()) return;
      const auto& presets = core::BuiltinPresets();
      const core::BuiltinPreset& p = presets[static_cast<uint8_t>(payload[0]) % presets.size()];
      if (w.policy->Commit(p.content, std::string("preset:") + p.name, "fuzz", "", 0).ok()) {
        (void)s.ReevaluateAll(3, /*schedule_pending=*/false);
      }
      break;
    }
    case kRunDueChanges:
      (void)s.RunDueChanges();
      break;
    case kReportMessage: {
      v1::ReportMessageRequest r;
      if (!Parse(payload, &r)) return;
      Conv(w, r.mutable_conversation_id());
      (void)s.ReportMessage(caller, r);
      break;
    }
    default:
      break;
  }
}

// ------------------------------------------------------------------ seeds

void WriteSeeds(const std::string& dir) {
  using parley::fuzz::WriteSeed;
  auto seed = [&](const std::string& name, Handler h, const google::protobuf::Message& m,
                  uint8_t caller = 0) {
    WriteSeed(dir, name, static_cast<uint8_t>(h | (caller << 5)), m.SerializeAsString());
  };
  v1::CreateAccountRequest ca;
  ca.set_username("dave");
  ca.set_display_name("Dave \xc3\xa9");
  ca.set_device_name("laptop");
  ca.mutable_attributes()->set_kind(v1::ACCOUNT_KIND_BUSINESS);
  ca.mutable_attributes()->set_age_band(v1::AGE_BAND_ADULT);
  ca.mutable_attributes()->set_region_code("DE");
  ca.mutable_attributes()->set_organization("Acme");
  seed("create-account", kCreateAccount, ca);
  v1::GetAccountRequest ga;
  ga.set_account_id("B");
  seed("get-account-id", kGetAccount, ga);
  ga.set_username("carol");
  seed("get-account-username", kGetAccount, ga);
  v1::LinkDeviceRequest ld;
  ld.set_link_code("L");
  ld.set_device_name("phone");
  seed("link-device", kLinkDevice, ld);
  seed("list-devices", kListDevices, v1::ListDevicesRequest());
  v1::RemoveDeviceRequest rd;
  rd.set_device_id(2);
  seed("remove-device", kRemoveDevice, rd);
  v1::CreateDirectRequest cd;
  cd.set_peer_username("carol");
  seed("create-direct", kCreateDirect, cd, 1);
  v1::CreateGroupRequest cg;
  cg.set_title("fuzzers");
  cg.add_member_usernames("bob");
  cg.add_member_usernames("carol");
  seed("create-group", kCreateGroup, cg);
  for (const char* id : {"D", "E", "G"}) {
    v1::GetConversationRequest gc;
    gc.set_conversation_id(id);
    seed(std::string("get-conversation-") + id, kGetConversation, gc);
    seed(std::string("reevaluate-") + id, kReevaluate, gc);
  }
  seed("list-conversations", kListConversations, v1::ListConversationsRequest());
  v1::AddMembersRequest am;
  am.set_conversation_id("G");
  am.add_usernames("dave");
  am.add_usernames("bob");
  seed("add-members", kAddMembers, am);
  v1::RemoveMemberRequest rm;
  rm.set_conversation_id("G");
  rm.set_account_id("C");
  seed("remove-member", kRemoveMember, rm);
  rm.set_account_id("B");
  seed("leave-group", kRemoveMember, rm, 1);
  v1::RequestSecurityChangeRequest rs;
  rs.set_conversation_id("D");
  rs.set_requested_mode(v1::SECURITY_MODE_E2EE);
  seed("security-on", kRequestSecurityChange, rs);
  rs.set_conversation_id("E");
  rs.set_requested_mode(v1::SECURITY_MODE_TRANSPORT);
  seed("security-off", kRequestSecurityChange, rs, 2);
  v1::SendRequest sp;
  sp.set_conversation_id("G");
  sp.set_client_message_id("m-1");
  sp.mutable_body()->mutable_plain()->set_content_type("text/plain");
  sp.mutable_body()->mutable_plain()->set_content("hello");
  seed("send-plain-group", kSend, sp);
  sp.set_conversation_id("D");
  seed("send-plain-direct", kSend, sp, 1);
  v1::SendRequest se;
  se.set_conversation_id("E");
  se.set_client_message_id("m-2");
  auto* ct = se.mutable_body()->mutable_encrypted()->add_ciphertexts();
  ct->set_account_id("C");
  ct->set_device_id(1);
  ct->set_registration_id(103);
  ct->set_type(3);
  ct->set_ciphertext(std::string(40, '\x33'));
  seed("send-encrypted", kSend, se);
  v1::AckRequest ack;
  ack.add_delivery_ids(1);
  ack.add_delivery_ids(2);
  seed("ack", kAck, ack, 1);
  v1::GetHistoryRequest gh;
  gh.set_conversation_id("G");
  gh.set_limit(10);
  seed("get-history", kGetHistory, gh);
  gh.set_before_seq(0);
  gh.set_limit(16);
  seed("read-queue", kReadQueue, gh, 1);
  v1::UploadKeysRequest uk;
  uk.set_identity_key(std::string(1, '\x05') + std::string(32, 'i'));
  uk.set_registration_id(1234);
  uk.mutable_signed_pre_key()->set_key_id(1);
  uk.mutable_signed_pre_key()->set_public_key(std::string(1, '\x05') + std::string(32, 's'));
  uk.mutable_signed_pre_key()->set_signature(std::string(64, 'g'));
  auto* pk = uk.add_one_time_pre_keys();
  pk->set_key_id(7);
  pk->set_public_key(std::string(1, '\x05') + std::string(32, 'p'));
  seed("upload-keys", kUploadKeys, uk);
  seed("pre-key-count", kGetPreKeyCount, v1::GetPreKeyCountRequest(), 2);
  v1::FetchBundlesRequest fb;
  fb.set_account_id("C");
  seed("fetch-bundles", kFetchBundles, fb);
  v1::ReportMessageRequest report;
  report.set_seq(1);
  report.set_reason(v1::REPORT_REASON_SPAM);
  seed("report-transport", kReportMessage, report, 1);
  report.mutable_reveal()->set_content("hi");
  report.mutable_reveal()->set_franking_key(std::string(32, 'f'));
  report.mutable_reveal()->set_franking_commitment(std::string(32, 'c'));
  report.mutable_reveal()->set_franking_stamp(std::string(32, 's'));
  seed("report-reveal", kReportMessage, report, 1);
  WriteSeed(dir, "authenticate", kAuthenticate, "Bearer 0123456789abcdef0123456789abcdef");
  WriteSeed(dir, "switch-policy", kSwitchPolicy, std::string(1, '\x00'));
  WriteSeed(dir, "switch-policy-2", kSwitchPolicy, std::string(1, '\x05'));
  WriteSeed(dir, "run-due", kRunDueChanges, "");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  parley::fuzz::WriteSeedsIfAsked(WriteSeeds);
  // Invalid UTF-8 in string fields is logged by protobuf: expected here.
  google::protobuf::SetLogHandler(nullptr);
  spdlog::set_level(spdlog::level::off);
  g_world = MakeWorld().release();
  std::atexit(DestroyWorld);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 16 * 1024) return -1;
  if (++g_inputs % kResetEvery == 0) {
    DestroyWorld();
    g_world = MakeWorld().release();
  }
  World& w = *g_world;
  const uint8_t selector = data[0];
  const uint8_t handler = selector & 31;
  if (handler >= kHandlerCount) return -1;
  const core::Caller bogus{"a_0000000000000000", 1};
  const core::Caller* callers[8] = {&w.alice, &w.bob, &w.carol, &bogus,
                                    &w.alice, &w.alice, &w.bob, &w.alice};
  w.now_ms += 1000;  // one second per request: announced changes fall due
  Run(w, handler, *callers[selector >> 5], std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  return 0;
}
