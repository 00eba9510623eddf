// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/crypto/crypto.h"

#include <openssl/crypto.h>
#include <signal/curve.h>
#include <signal/fingerprint.h>
#include <signal/group_cipher.h>
#include <signal/group_session_builder.h>
#include <signal/key_helper.h>
#include <signal/protocol.h>
#include <signal/ratchet.h>
#include <signal/sender_key_record.h>
#include <signal/session_builder.h>
#include <signal/session_cipher.h>
#include <signal/session_pre_key.h>
#include <signal/signal_protocol.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/crypto/key_store.h"
#include "clients/crypto/openssl_provider.h"
#include "clients/crypto/signal_holder.h"
#include "clients/crypto/signal_stores.h"

#define PARLEY_CRYPTO_CONCAT_INNER_(a, b) a##b
#define PARLEY_CRYPTO_CONCAT_(a, b) PARLEY_CRYPTO_CONCAT_INNER_(a, b)
#define PARLEY_CRYPTO_RETURN_IF_ERROR(expr)        \
  do {                                             \
    ::absl::Status parley_crypto_st_ = (expr);     \
    if (!parley_crypto_st_.ok()) return parley_crypto_st_; \
  } while (0)
#define PARLEY_CRYPTO_ASSIGN_OR_RETURN(lhs, expr)                               \
  PARLEY_CRYPTO_ASSIGN_OR_RETURN_IMPL_(                                        \
      PARLEY_CRYPTO_CONCAT_(parley_crypto_so_, __LINE__), lhs, expr)
#define PARLEY_CRYPTO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                         \
  if (!tmp.ok()) return std::move(tmp).status();             \
  lhs = std::move(tmp).value()

namespace parley::crypto {

// ---- Error mapping -----------------------------------------------------------

absl::Status SignalError(int code, std::string_view what, std::string_view peer) {
  const std::string where = peer.empty()
                                ? std::string(what)
                                : absl::StrCat(AV(what), " (", AV(peer), ")");
  switch (code) {
    case SG_ERR_NOMEM:
      return absl::ResourceExhaustedError(absl::StrCat(where, ": out of memory"));
    case SG_ERR_INVAL:
      return absl::InvalidArgumentError(absl::StrCat(where, ": invalid argument"));
    case SG_ERR_DUPLICATE_MESSAGE:
      return absl::AlreadyExistsError(
          absl::StrCat(where, ": duplicate message (already decrypted)"));
    case SG_ERR_INVALID_KEY:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": invalid key or signature"));
    case SG_ERR_INVALID_KEY_ID:
      return absl::NotFoundError(
          absl::StrCat(where, ": unknown key id (pre-key or sender key gone)"));
    case SG_ERR_INVALID_MAC:
      return absl::InvalidArgumentError(absl::StrCat(where, ": bad MAC"));
    case SG_ERR_INVALID_MESSAGE:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": invalid message (no session can decrypt it)"));
    case SG_ERR_INVALID_VERSION:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unsupported protocol version"));
    case SG_ERR_LEGACY_MESSAGE:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": legacy message version"));
    case SG_ERR_NO_SESSION:
      return absl::NotFoundError(absl::StrCat(where, ": no session"));
    case SG_ERR_STALE_KEY_EXCHANGE:
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": stale key exchange"));
    case SG_ERR_UNTRUSTED_IDENTITY:
      return absl::FailedPreconditionError(absl::StrCat(
          "identity key of ", peer.empty() ? absl::string_view("peer") : AV(peer),
          " changed (", AV(what), " refused; verify the new safety number)"));
    case SG_ERR_VRF_SIG_VERIF_FAILED:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": signature verification failed"));
    case SG_ERR_INVALID_PROTO_BUF:
      return absl::InvalidArgumentError(absl::StrCat(where, ": malformed message"));
    case SG_ERR_FP_VERSION_MISMATCH:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": fingerprint version mismatch"));
    case SG_ERR_FP_IDENT_MISMATCH:
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": fingerprint identity mismatch"));
    default:
      return absl::InternalError(
          absl::StrCat(where, ": libsignal error ", code));
  }
}

std::string Address::ToString() const {
  return absl::StrCat(name, ".", device_id);
}

namespace {

constexpr uint32_t kMaxKeyId = 0xFFFFFE;  // 0xFFFFFF is reserved (last resort)
constexpr char kMetaIdentity[] = "identity";
constexpr char kMetaRegistrationId[] = "registration_id";
constexpr char kMetaNextPreKeyId[] = "next_pre_key_id";
constexpr char kMetaNextSignedPreKeyId[] = "next_signed_pre_key_id";
constexpr char kMetaCurrentSignedPreKey[] = "current_signed_pre_key";
constexpr int kMaxPreKeyBatch = 10000;

struct SessionCipherFree {
  void operator()(session_cipher* c) const { session_cipher_free(c); }
};
struct SessionBuilderFree {
  void operator()(session_builder* b) const { session_builder_free(b); }
};
struct GroupCipherFree {
  void operator()(group_cipher* c) const { group_cipher_free(c); }
};
struct GroupBuilderFree {
  void operator()(group_session_builder* b) const { group_session_builder_free(b); }
};
struct FingerprintGeneratorFree {
  void operator()(fingerprint_generator* g) const { fingerprint_generator_free(g); }
};
struct PreKeyListFree {
  void operator()(signal_protocol_key_helper_pre_key_list_node* n) const {
    signal_protocol_key_helper_key_list_free(n);
  }
};

void Wipe(std::string& s) { OPENSSL_cleanse(s.data(), s.size()); }

// Wipes the WriteBatch's internal copy of what was written (private keys).
void WipeBatch(rocksdb::WriteBatch& batch) {
  auto& rep = const_cast<std::string&>(batch.Data());
  OPENSSL_cleanse(rep.data(), rep.size());
  batch.Clear();
}

absl::Status CheckAddress(const Address& a) {
  if (a.name.empty()) return absl::InvalidArgumentError("address has an empty name");
  if (a.name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("address name contains NUL");
  }
  if (a.device_id < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("address ", a.ToString(), ": device id must be >= 1"));
  }
  return absl::OkStatus();
}

signal_protocol_address ToSignal(const Address& a) {
  return signal_protocol_address{a.name.c_str(), a.name.size(), a.device_id};
}

std::string ToString(const signal_buffer* b) { return std::string(AsView(b)); }

}  // namespace

// ---- State -------------------------------------------------------------------

struct DeviceCrypto::State {
  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
    identity.reset();
    if (store != nullptr) signal_protocol_store_context_destroy(store);
    if (ctx != nullptr) signal_context_destroy(ctx);
  }

  Options options;
  std::recursive_mutex signal_mutex;  // libsignal's lock (must be recursive)
  std::unique_ptr<KeyStore> db;
  signal_context* ctx = nullptr;
  signal_protocol_store_context* store = nullptr;
  StoreBinding binding;
  SignalPtr<ratchet_identity_key_pair> identity;
  uint32_t registration_id = 0;

  // Maps a libsignal result, preferring a key-store failure behind it.
  absl::Status Error(int code, std::string_view what, std::string_view peer = {}) {
    if (!binding.last_error.ok()) return binding.last_error;
    return SignalError(code, what, peer);
  }

  absl::StatusOr<uint32_t> TakeNextId(const char* meta, uint32_t count) {
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(std::optional<std::string> v,
                                   db->Get(keys::Meta(meta)));
    uint32_t id = 0;
    if (v.has_value() && v->size() == 4) id = keys::ReadBe32(*v);
    if (id < 1 || id > kMaxKeyId) {
      int r = 0;
      if (signal_protocol_key_helper_get_random_sequence(
              &r, static_cast<int>(kMaxKeyId), ctx) < 0) {
        return absl::InternalError("random id generation failed");
      }
      id = static_cast<uint32_t>(r) + 1;
    }
    const uint32_t next = static_cast<uint32_t>(
        (uint64_t{id} - 1 + count) % kMaxKeyId + 1);
    PARLEY_CRYPTO_RETURN_IF_ERROR(db->Put(keys::Meta(meta), keys::Be32(next)));
    return id;
  }

  absl::Status LoadOrCreateIdentity() {
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                                   db->Get(keys::Meta(kMetaIdentity)));
    if (!stored.has_value()) {
      int rc = signal_protocol_key_helper_generate_identity_key_pair(
          identity.out(), ctx);
      if (rc < 0) return Error(rc, "generate identity key pair");
      rc = signal_protocol_key_helper_generate_registration_id(&registration_id,
                                                               0, ctx);
      if (rc < 0) return Error(rc, "generate registration id");
      SignalBuffer serialized(/*secret=*/true);
      rc = ratchet_identity_key_pair_serialize(serialized.out(), identity.get());
      if (rc < 0) return Error(rc, "serialize identity key pair");
      rocksdb::WriteBatch batch;
      const std::string_view s = serialized.view();
      batch.Put(keys::Meta(kMetaIdentity), rocksdb::Slice(s.data(), s.size()));
      batch.Put(keys::Meta(kMetaRegistrationId), keys::Be32(registration_id));
      absl::Status st = db->Write(batch, /*force_sync=*/true);
      WipeBatch(batch);
      PARLEY_CRYPTO_RETURN_IF_ERROR(st);
    } else {
      int rc = ratchet_identity_key_pair_deserialize(
          identity.out(), AsBytes(*stored), stored->size(), ctx);
      Wipe(*stored);
      if (rc < 0) return Error(rc, "load identity key pair");
      PARLEY_CRYPTO_ASSIGN_OR_RETURN(std::optional<std::string> reg,
                                     db->Get(keys::Meta(kMetaRegistrationId)));
      if (!reg.has_value() || reg->size() != 4) {
        return absl::DataLossError("key store has no registration id");
      }
      registration_id = keys::ReadBe32(*reg);
    }
    SignalBuffer pub;
    SignalBuffer priv(/*secret=*/true);
    int rc = ec_public_key_serialize(
        pub.out(), ratchet_identity_key_pair_get_public(identity.get()));
    if (rc < 0) return Error(rc, "serialize identity key");
    rc = ec_private_key_serialize(
        priv.out(), ratchet_identity_key_pair_get_private(identity.get()));
    if (rc < 0) return Error(rc, "serialize identity key");
    binding.identity_public = std::string(pub.view());
    Wipe(binding.identity_private);
    binding.identity_private = std::string(priv.view());
    binding.registration_id = registration_id;
    return absl::OkStatus();
  }

  // Loads a signed pre-key record (contains the private key: never leaves).
  absl::StatusOr<SignalPtr<session_signed_pre_key>> LoadSignedPreKey(uint32_t id) {
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(std::optional<std::string> v,
                                   db->Get(keys::SignedPreKey(id)));
    if (!v.has_value()) {
      return absl::NotFoundError(absl::StrCat("signed pre-key ", id, " not found"));
    }
    SignalPtr<session_signed_pre_key> spk;
    int rc = session_signed_pre_key_deserialize(spk.out(), AsBytes(*v), v->size(), ctx);
    Wipe(*v);
    if (rc < 0) return Error(rc, "load signed pre-key");
    return spk;
  }

  absl::StatusOr<std::optional<uint32_t>> CurrentSignedPreKeyId() {
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(std::optional<std::string> v,
                                   db->Get(keys::Meta(kMetaCurrentSignedPreKey)));
    if (!v.has_value() || v->size() != 4) return std::optional<uint32_t>();
    return std::optional<uint32_t>(keys::ReadBe32(*v));
  }

  absl::StatusOr<bool> RotateIfDue(absl::Time now) {
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(std::optional<uint32_t> current,
                                   CurrentSignedPreKeyId());
    bool due = true;
    if (current.has_value()) {
      absl::StatusOr<SignalPtr<session_signed_pre_key>> spk =
          LoadSignedPreKey(*current);
      if (spk.ok()) {
        const absl::Time created = absl::FromUnixMillis(static_cast<int64_t>(
            session_signed_pre_key_get_timestamp(spk->get())));
        due = now - created >= options.signed_pre_key_rotation;
      } else if (!absl::IsNotFound(spk.status())) {
        return spk.status();
      }
    }
    if (due) {
      PARLEY_CRYPTO_ASSIGN_OR_RETURN(uint32_t id,
                                     TakeNextId(kMetaNextSignedPreKeyId, 1));
      SignalPtr<session_signed_pre_key> spk;
      int rc = signal_protocol_key_helper_generate_signed_pre_key(
          spk.out(), identity.get(), id,
          static_cast<uint64_t>(std::max<int64_t>(0, absl::ToUnixMillis(now))), ctx);
      if (rc < 0) return Error(rc, "generate signed pre-key");
      SignalBuffer serialized(/*secret=*/true);
      rc = session_signed_pre_key_serialize(serialized.out(), spk.get());
      if (rc < 0) return Error(rc, "serialize signed pre-key");
      rocksdb::WriteBatch batch;
      const std::string_view s = serialized.view();
      batch.Put(keys::SignedPreKey(id), rocksdb::Slice(s.data(), s.size()));
      batch.Put(keys::Meta(kMetaCurrentSignedPreKey), keys::Be32(id));
      absl::Status st = db->Write(batch);
      WipeBatch(batch);
      PARLEY_CRYPTO_RETURN_IF_ERROR(st);
      current = id;
    }

    // Prune: a replaced key was retired when its successor was created.
    std::vector<std::pair<int64_t, uint32_t>> all;  // (created ms, id)
    absl::Status scan = db->Scan(
        keys::kSignedPreKeyPrefix, [&](std::string_view k, std::string_view v) {
          if (k.size() != 5) return true;
          SignalPtr<session_signed_pre_key> spk;
          if (session_signed_pre_key_deserialize(spk.out(), AsBytes(v), v.size(),
                                                 ctx) < 0) {
            return true;  // unreadable records are left alone
          }
          all.emplace_back(
              static_cast<int64_t>(session_signed_pre_key_get_timestamp(spk.get())),
              keys::ReadBe32(k.substr(1)));
          return true;
        });
    PARLEY_CRYPTO_RETURN_IF_ERROR(scan);
    std::sort(all.begin(), all.end());
    rocksdb::WriteBatch prune;
    for (size_t i = 0; i + 1 < all.size(); ++i) {
      if (all[i].second == *current) continue;
      const absl::Time retired = absl::FromUnixMillis(all[i + 1].first);
      if (now - retired > options.signed_pre_key_grace) {
        prune.Delete(keys::SignedPreKey(all[i].second));
      }
    }
    if (prune.Count() > 0) PARLEY_CRYPTO_RETURN_IF_ERROR(db->Write(prune));
    return due;
  }

  absl::StatusOr<PreKeyUpload> Upload() {
    PreKeyUpload up;
    up.identity_key = PublicKey::FromSerialized(binding.identity_public);
    up.registration_id = registration_id;
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(std::optional<uint32_t> current,
                                   CurrentSignedPreKeyId());
    if (!current.has_value()) {
      return absl::FailedPreconditionError("no signed pre-key");
    }
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(SignalPtr<session_signed_pre_key> spk,
                                   LoadSignedPreKey(*current));
    SignalBuffer pub;
    int rc = ec_public_key_serialize(
        pub.out(), ec_key_pair_get_public(session_signed_pre_key_get_key_pair(spk.get())));
    if (rc < 0) return Error(rc, "serialize signed pre-key");
    up.signed_pre_key.id = *current;
    up.signed_pre_key.key = PublicKey::FromSerialized(std::string(pub.view()));
    up.signed_pre_key.signature.assign(
        reinterpret_cast<const char*>(session_signed_pre_key_get_signature(spk.get())),
        session_signed_pre_key_get_signature_len(spk.get()));
    up.signed_pre_key.timestamp_ms =
        static_cast<int64_t>(session_signed_pre_key_get_timestamp(spk.get()));
    return up;
  }

  absl::StatusOr<PreKeyUpload> Generate(int count) {
    if (count < 0 || count > kMaxPreKeyBatch) {
      return absl::InvalidArgumentError(
          absl::StrCat("pre-key count must be in [0, ", kMaxPreKeyBatch, "]"));
    }
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(PreKeyUpload up, Upload());
    if (count == 0) return up;
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(
        uint32_t start, TakeNextId(kMetaNextPreKeyId, static_cast<uint32_t>(count)));
    signal_protocol_key_helper_pre_key_list_node* head = nullptr;
    int rc = signal_protocol_key_helper_generate_pre_keys(
        &head, start, static_cast<unsigned>(count), ctx);
    std::unique_ptr<signal_protocol_key_helper_pre_key_list_node, PreKeyListFree>
        list(head);
    if (rc < 0) return Error(rc, "generate pre-keys");
    rocksdb::WriteBatch batch;
    for (auto* n = head; n != nullptr; n = signal_protocol_key_helper_key_list_next(n)) {
      session_pre_key* pk = signal_protocol_key_helper_key_list_element(n);
      SignalBuffer serialized(/*secret=*/true);
      rc = session_pre_key_serialize(serialized.out(), pk);
      if (rc < 0) {
        WipeBatch(batch);
        return Error(rc, "serialize pre-key");
      }
      const uint32_t id = session_pre_key_get_id(pk);
      const std::string_view s = serialized.view();
      batch.Put(keys::PreKey(id), rocksdb::Slice(s.data(), s.size()));
      SignalBuffer pub;
      rc = ec_public_key_serialize(
          pub.out(), ec_key_pair_get_public(session_pre_key_get_key_pair(pk)));
      if (rc < 0) {
        WipeBatch(batch);
        return Error(rc, "serialize pre-key");
      }
      up.one_time_pre_keys.push_back(
          OneTimePreKeyPublic{id, PublicKey::FromSerialized(std::string(pub.view()))});
    }
    absl::Status st = db->Write(batch);
    WipeBatch(batch);
    PARLEY_CRYPTO_RETURN_IF_ERROR(st);
    return up;
  }

  absl::StatusOr<SignalPtr<ec_public_key>> DecodeKey(const PublicKey& key,
                                                     std::string_view what) {
    SignalPtr<ec_public_key> out;
    if (key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(AV(what), ": missing"));
    }
    int rc = curve_decode_point(out.out(), AsBytes(key.serialized()),
                                key.serialized().size(), ctx);
    if (rc < 0) {
      return absl::InvalidArgumentError(absl::StrCat(AV(what), ": malformed public key"));
    }
    return out;
  }

  bool HasSession(const Address& remote) {
    signal_protocol_address a = ToSignal(remote);
    return signal_protocol_session_contains_session(store, &a) == 1;
  }

  // Our own sender key is stored under an address no real peer can have
  // (empty name, device 0; CheckAddress refuses both).
  static signal_protocol_sender_key_name SenderKeyName(const std::string& group,
                                                       const Address* sender) {
    static const char kSelf[] = "";
    signal_protocol_sender_key_name n;
    n.group_id = group.c_str();
    n.group_id_len = group.size();
    if (sender == nullptr) {
      n.sender = signal_protocol_address{kSelf, 0, 0};
    } else {
      n.sender = ToSignal(*sender);
    }
    return n;
  }
};

// ---- DeviceCrypto --------------------------------------------------------------

DeviceCrypto::DeviceCrypto(std::unique_ptr<State> state) : s_(std::move(state)) {}
DeviceCrypto::~DeviceCrypto() = default;

absl::StatusOr<std::unique_ptr<DeviceCrypto>> DeviceCrypto::Open(
    const std::string& dir, const Options& options) {
  if (options.fingerprint_iterations < 1) {
    return absl::InvalidArgumentError("fingerprint_iterations must be >= 1");
  }
  if (options.signed_pre_key_rotation <= absl::ZeroDuration() ||
      options.signed_pre_key_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("invalid signed pre-key rotation settings");
  }
  PARLEY_CRYPTO_RETURN_IF_ERROR(MakePrivateDir(dir));
  auto s = std::make_unique<State>();
  s->options = options;
  PARLEY_CRYPTO_ASSIGN_OR_RETURN(s->db,
                                 KeyStore::Open(dir + "/keystore", options.sync_writes));
  int rc = signal_context_create(&s->ctx, &s->signal_mutex);
  if (rc < 0) return SignalError(rc, "create signal context");
  rc = signal_context_set_crypto_provider(s->ctx, &OpenSslCryptoProvider());
  if (rc < 0) return SignalError(rc, "install crypto provider");
  rc = signal_context_set_locking_functions(s->ctx, SignalLock, SignalUnlock);
  if (rc < 0) return SignalError(rc, "install locking functions");

  s->binding.db = s->db.get();
  s->binding.block_verified_identity_changes = options.block_verified_identity_changes;
  PARLEY_CRYPTO_RETURN_IF_ERROR(s->LoadOrCreateIdentity());

  rc = signal_protocol_store_context_create(&s->store, s->ctx);
  if (rc < 0) return SignalError(rc, "create store context");
  rc = InstallSignalStores(s->store, &s->binding);
  if (rc < 0) return SignalError(rc, "install stores");

  // First open: the first signed pre-key. Later opens: nothing unless due.
  PARLEY_CRYPTO_ASSIGN_OR_RETURN(std::optional<uint32_t> current,
                                 s->CurrentSignedPreKeyId());
  if (!current.has_value()) {
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(bool rotated, s->RotateIfDue(absl::Now()));
    (void)rotated;
  }
  return std::unique_ptr<DeviceCrypto>(new DeviceCrypto(std::move(s)));
}

uint32_t DeviceCrypto::registration_id() const {
  absl::MutexLock l(&mu_);
  return s_->registration_id;
}

PublicKey DeviceCrypto::identity_key() const {
  absl::MutexLock l(&mu_);
  return PublicKey::FromSerialized(s_->binding.identity_public);
}

absl::StatusOr<PreKeyUpload> DeviceCrypto::GeneratePreKeys(int count) {
  absl::MutexLock l(&mu_);
  s_->binding.Reset();
  return s_->Generate(count);
}

absl::StatusOr<PreKeyUpload> DeviceCrypto::CurrentPreKeys() {
  absl::MutexLock l(&mu_);
  s_->binding.Reset();
  return s_->Upload();
}

absl::StatusOr<bool> DeviceCrypto::RotateSignedPreKeyIfDue(absl::Time now) {
  absl::MutexLock l(&mu_);
  s_->binding.Reset();
  return s_->RotateIfDue(now);
}

absl::StatusOr<int> DeviceCrypto::OneTimePreKeyCount() {
  absl::MutexLock l(&mu_);
  int n = 0;
  absl::Status st = s_->db->Scan(keys::kPreKeyPrefix,
                                 [&](std::string_view, std::string_view) {
                                   ++n;
                                   return true;
                                 });
  if (!st.ok()) return st;
  return n;
}

absl::Status DeviceCrypto::ProcessBundle(const Address& remote,
                                         const PreKeyBundle& bundle) {
  PARLEY_CRYPTO_RETURN_IF_ERROR(CheckAddress(remote));
  const std::string peer = remote.ToString();
  if (bundle.device_id != remote.device_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bundle for ", peer, " carries device id ", bundle.device_id));
  }
  absl::MutexLock l(&mu_);
  State& s = *s_;
  s.binding.Reset();
  PARLEY_CRYPTO_ASSIGN_OR_RETURN(
      SignalPtr<ec_public_key> identity,
      s.DecodeKey(bundle.identity_key, absl::StrCat("identity key of ", peer)));
  PARLEY_CRYPTO_ASSIGN_OR_RETURN(
      SignalPtr<ec_public_key> signed_pre_key,
      s.DecodeKey(bundle.signed_pre_key.key, absl::StrCat("signed pre-key of ", peer)));
  SignalPtr<ec_public_key> one_time;
  uint32_t one_time_id = 0;
  if (bundle.one_time_pre_key.has_value()) {
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(
        one_time, s.DecodeKey(bundle.one_time_pre_key->key,
                              absl::StrCat("one-time pre-key of ", peer)));
    one_time_id = bundle.one_time_pre_key->id;
  }
  SignalPtr<session_pre_key_bundle> b;
  int rc = session_pre_key_bundle_create(
      b.out(), bundle.registration_id, bundle.device_id, one_time_id, one_time.get(),
      bundle.signed_pre_key.id, signed_pre_key.get(),
      AsBytes(bundle.signed_pre_key.signature), bundle.signed_pre_key.signature.size(),
      identity.get());
  if (rc < 0) return s.Error(rc, "pre-key bundle", peer);

  signal_protocol_address addr = ToSignal(remote);
  session_builder* raw = nullptr;
  rc = session_builder_create(&raw, s.store, &addr, s.ctx);
  std::unique_ptr<session_builder, SessionBuilderFree> builder(raw);
  if (rc < 0) return s.Error(rc, "session setup", peer);
  rc = session_builder_process_pre_key_bundle(builder.get(), b.get());
  if (rc < 0) return s.Error(rc, "session setup", peer);
  return absl::OkStatus();
}

absl::StatusOr<Ciphertext> DeviceCrypto::Encrypt(const Address& remote,
                                                 std::string_view plaintext) {
  PARLEY_CRYPTO_RETURN_IF_ERROR(CheckAddress(remote));
  const std::string peer = remote.ToString();
  absl::MutexLock l(&mu_);
  State& s = *s_;
  s.binding.Reset();
  if (!s.HasSession(remote)) {
    if (!s.binding.last_error.ok()) return s.binding.last_error;
    return absl::NotFoundError(absl::StrCat("encrypt (", peer, "): no session"));
  }
  signal_protocol_address addr = ToSignal(remote);
  session_cipher* raw = nullptr;
  int rc = session_cipher_create(&raw, s.store, &addr, s.ctx);
  std::unique_ptr<session_cipher, SessionCipherFree> cipher(raw);
  if (rc < 0) return s.Error(rc, "encrypt", peer);
  SignalPtr<ciphertext_message> msg;
  rc = session_cipher_encrypt(cipher.get(), AsBytes(plaintext), plaintext.size(),
                              msg.out());
  if (rc < 0) return s.Error(rc, "encrypt", peer);
  Ciphertext out;
  out.type = ciphertext_message_get_type(msg.get()) == CIPHERTEXT_PREKEY_TYPE
                 ? MessageType::kPreKey
                 : MessageType::kSignal;
  out.bytes = ToString(ciphertext_message_get_serialized(msg.get()));
  rc = session_cipher_get_remote_registration_id(cipher.get(),
                                                 &out.remote_registration_id);
  if (rc < 0) return s.Error(rc, "encrypt", peer);
  return out;
}

absl::StatusOr<std::string> DeviceCrypto::Decrypt(const Address& remote,
                                                  const Ciphertext& ciphertext) {
  PARLEY_CRYPTO_RETURN_IF_ERROR(CheckAddress(remote));
  const std::string peer = remote.ToString();
  absl::MutexLock l(&mu_);
  State& s = *s_;
  s.binding.Reset();
  signal_protocol_address addr = ToSignal(remote);
  session_cipher* raw = nullptr;
  int rc = session_cipher_create(&raw, s.store, &addr, s.ctx);
  std::unique_ptr<session_cipher, SessionCipherFree> cipher(raw);
  if (rc < 0) return s.Error(rc, "decrypt", peer);
  SignalBuffer plain(/*secret=*/true);
  const std::string& in = ciphertext.bytes;
  switch (ciphertext.type) {
    case MessageType::kPreKey: {
      SignalPtr<pre_key_signal_message> m;
      rc = pre_key_signal_message_deserialize(m.out(), AsBytes(in), in.size(), s.ctx);
      if (rc < 0) return s.Error(rc, "decrypt PreKeySignalMessage", peer);
      rc = session_cipher_decrypt_pre_key_signal_message(cipher.get(), m.get(),
                                                         nullptr, plain.out());
      break;
    }
    case MessageType::kSignal: {
      SignalPtr<signal_message> m;
      rc = signal_message_deserialize(m.out(), AsBytes(in), in.size(), s.ctx);
      if (rc < 0) return s.Error(rc, "decrypt SignalMessage", peer);
      rc = session_cipher_decrypt_signal_message(cipher.get(), m.get(), nullptr,
                                                 plain.out());
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "decrypt (", peer, "): unknown message type ",
          static_cast<int>(ciphertext.type)));
  }
  if (rc < 0) return s.Error(rc, "decrypt", peer);
  return std::string(plain.view());
}

bool DeviceCrypto::HasSession(const Address& remote) {
  if (!CheckAddress(remote).ok()) return false;
  absl::MutexLock l(&mu_);
  s_->binding.Reset();
  return s_->HasSession(remote);
}

absl::StatusOr<uint32_t> DeviceCrypto::RemoteRegistrationId(const Address& remote) {
  PARLEY_CRYPTO_RETURN_IF_ERROR(CheckAddress(remote));
  const std::string peer = remote.ToString();
  absl::MutexLock l(&mu_);
  State& s = *s_;
  s.binding.Reset();
  if (!s.HasSession(remote)) {
    if (!s.binding.last_error.ok()) return s.binding.last_error;
    return absl::NotFoundError(absl::StrCat("no session with ", peer));
  }
  signal_protocol_address addr = ToSignal(remote);
  session_cipher* raw = nullptr;
  int rc = session_cipher_create(&raw, s.store, &addr, s.ctx);
  std::unique_ptr<session_cipher, SessionCipherFree> cipher(raw);
  if (rc < 0) return s.Error(rc, "registration id", peer);
  uint32_t id = 0;
  rc = session_cipher_get_remote_registration_id(cipher.get(), &id);
  if (rc < 0) return s.Error(rc, "registration id", peer);
  return id;
}

absl::Status DeviceCrypto::DeleteSession(const Address& remote) {
  PARLEY_CRYPTO_RETURN_IF_ERROR(CheckAddress(remote));
  absl::MutexLock l(&mu_);
  s_->binding.Reset();
  signal_protocol_address addr = ToSignal(remote);
  int rc = signal_protocol_session_delete_session(s_->store, &addr);
  if (rc < 0) return s_->Error(rc, "delete session", remote.ToString());
  return absl::OkStatus();
}

absl::Status DeviceCrypto::DeleteAllSessions(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("empty name");
  absl::MutexLock l(&mu_);
  s_->binding.Reset();
  int rc = signal_protocol_session_delete_all_sessions(s_->store, name.data(),
                                                       name.size());
  if (rc < 0) return s_->Error(rc, "delete sessions", name);
  return absl::OkStatus();
}

std::vector<int32_t> DeviceCrypto::SessionDevices(std::string_view name) {
  absl::MutexLock l(&mu_);
  s_->binding.Reset();
  signal_int_list* list = nullptr;
  std::vector<int32_t> out;
  if (signal_protocol_session_get_sub_device_sessions(s_->store, &list, name.data(),
                                                      name.size()) < 0 ||
      list == nullptr) {
    return out;
  }
  for (unsigned i = 0; i < signal_int_list_size(list); ++i) {
    out.push_back(signal_int_list_at(list, i));
  }
  signal_int_list_free(list);
  std::sort(out.begin(), out.end());
  return out;
}

// ---- Groups --------------------------------------------------------------------

absl::StatusOr<std::string> DeviceCrypto::CreateSenderKeyDistribution(
    std::string_view group_id) {
  if (group_id.empty()) return absl::InvalidArgumentError("empty group id");
  const std::string group(group_id);
  absl::MutexLock l(&mu_);
  State& s = *s_;
  s.binding.Reset();
  const signal_protocol_sender_key_name name = State::SenderKeyName(group, nullptr);
  group_session_builder* raw = nullptr;
  int rc = group_session_builder_create(&raw, s.store, s.ctx);
  std::unique_ptr<group_session_builder, GroupBuilderFree> builder(raw);
  if (rc < 0) return s.Error(rc, "create sender key");
  SignalPtr<sender_key_distribution_message> skdm;
  rc = group_session_builder_create_session(builder.get(), skdm.out(), &name);
  if (rc < 0) return s.Error(rc, "create sender key");
  return ToString(ciphertext_message_get_serialized(
      reinterpret_cast<ciphertext_message*>(skdm.get())));
}

absl::Status DeviceCrypto::ProcessSenderKeyDistribution(std::string_view group_id,
                                                        const Address& sender,
                                                        std::string_view distribution) {
  if (group_id.empty()) return absl::InvalidArgumentError("empty group id");
  PARLEY_CRYPTO_RETURN_IF_ERROR(CheckAddress(sender));
  const std::string group(group_id);
  const std::string peer = sender.ToString();
  absl::MutexLock l(&mu_);
  State& s = *s_;
  s.binding.Reset();
  SignalPtr<sender_key_distribution_message> skdm;
  int rc = sender_key_distribution_message_deserialize(
      skdm.out(), AsBytes(distribution), distribution.size(), s.ctx);
  if (rc < 0) return s.Error(rc, "sender key distribution", peer);
  const signal_protocol_sender_key_name name = State::SenderKeyName(group, &sender);
  group_session_builder* raw = nullptr;
  rc = group_session_builder_create(&raw, s.store, s.ctx);
  std::unique_ptr<group_session_builder, GroupBuilderFree> builder(raw);
  if (rc < 0) return s.Error(rc, "sender key distribution", peer);
  rc = group_session_builder_process_session(builder.get(), &name, skdm.get());
  if (rc < 0) return s.Error(rc, "sender key distribution", peer);
  return absl::OkStatus();
}

absl::StatusOr<std::string> DeviceCrypto::GroupEncrypt(std::string_view group_id,
                                                       std::string_view plaintext) {
  if (group_id.empty()) return absl::InvalidArgumentError("empty group id");
  const std::string group(group_id);
  absl::MutexLock l(&mu_);
  State& s = *s_;
  s.binding.Reset();
  PARLEY_CRYPTO_ASSIGN_OR_RETURN(std::optional<std::string> record,
                                 s.db->Get(keys::SenderKey(group, "", 0)));
  if (!record.has_value()) {
    return absl::FailedPreconditionError(
        "group encrypt: no sender key for this group; call "
        "CreateSenderKeyDistribution and distribute it first");
  }
  Wipe(*record);
  const signal_protocol_sender_key_name name = State::SenderKeyName(group, nullptr);
  group_cipher* raw = nullptr;
  int rc = group_cipher_create(&raw, s.store, &name, s.ctx);
  std::unique_ptr<group_cipher, GroupCipherFree> cipher(raw);
  if (rc < 0) return s.Error(rc, "group encrypt");
  SignalPtr<ciphertext_message> msg;
  rc = group_cipher_encrypt(cipher.get(), AsBytes(plaintext), plaintext.size(),
                            msg.out());
  if (rc < 0) return s.Error(rc, "group encrypt");
  return ToString(ciphertext_message_get_serialized(msg.get()));
}

absl::StatusOr<std::string> DeviceCrypto::GroupDecrypt(std::string_view group_id,
                                                       const Address& sender,
                                                       std::string_view ciphertext) {
  if (group_id.empty()) return absl::InvalidArgumentError("empty group id");
  PARLEY_CRYPTO_RETURN_IF_ERROR(CheckAddress(sender));
  const std::string group(group_id);
  const std::string peer = sender.ToString();
  absl::MutexLock l(&mu_);
  State& s = *s_;
  s.binding.Reset();
  SignalPtr<sender_key_message> m;
  int rc = sender_key_message_deserialize(m.out(), AsBytes(ciphertext),
                                          ciphertext.size(), s.ctx);
  if (rc < 0) return s.Error(rc, "group decrypt", peer);
  // libsignal reports an unknown sender-key id as SG_ERR_INVALID_MESSAGE, like
  // a forged signature; tell the two apart so the app knows to ask for a new
  // distribution message.
  {
    PARLEY_CRYPTO_ASSIGN_OR_RETURN(
        std::optional<std::string> stored,
        s.db->Get(keys::SenderKey(group, sender.name, sender.device_id)));
    SignalPtr<sender_key_record> record;
    sender_key_state* state = nullptr;  // owned by record
    const uint32_t key_id = sender_key_message_get_key_id(m.get());
    const bool known =
        stored.has_value() &&
        sender_key_record_deserialize(record.out(), AsBytes(*stored), stored->size(),
                                      s.ctx) >= 0 &&
        sender_key_record_get_sender_key_state_by_id(record.get(), &state, key_id) >= 0;
    if (stored.has_value()) Wipe(*stored);
    if (!known) {
      return absl::NotFoundError(absl::StrCat(
          "group decrypt (", peer, "): no sender key ", key_id,
          " from this sender in this group (never distributed or rotated)"));
    }
  }
  const signal_protocol_sender_key_name name = State::SenderKeyName(group, &sender);
  group_cipher* raw = nullptr;
  rc = group_cipher_create(&raw, s.store, &name, s.ctx);
  std::unique_ptr<group_cipher, GroupCipherFree> cipher(raw);
  if (rc < 0) return s.Error(rc, "group decrypt", peer);
  SignalBuffer plain(/*secret=*/true);
  rc = group_cipher_decrypt(cipher.get(), m.get(), nullptr, plain.out());
  if (rc < 0) return s.Error(rc, "group decrypt", peer);
  return std::string(plain.view());
}

absl::Status DeviceCrypto::RotateSenderKey(std::string_view group_id) {
  if (group_id.empty()) return absl::InvalidArgumentError("empty group id");
  absl::MutexLock l(&mu_);
  s_->binding.Reset();
  return s_->db->Delete(keys::SenderKey(group_id, "", 0));
}

// ---- Identities -------------------------------------------------------------------

absl::StatusOr<std::string> DeviceCrypto::SafetyNumber(
    std::string_view local_stable_id, std::string_view remote_stable_id,
    const PublicKey& remote_identity) {
  const std::string local_id(local_stable_id);
  const std::string remote_id(remote_stable_id);
  if (local_id.empty() || remote_id.empty() ||
      local_id.find('\0') != std::string::npos ||
      remote_id.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("stable ids must be non-empty text");
  }
  absl::MutexLock l(&mu_);
  State& s = *s_;
  s.binding.Reset();
  PARLEY_CRYPTO_ASSIGN_OR_RETURN(
      SignalPtr<ec_public_key> remote,
      s.DecodeKey(remote_identity, "safety number: remote identity key"));
  fingerprint_generator* raw = nullptr;
  int rc = fingerprint_generator_create(&raw, s.options.fingerprint_iterations,
                                        /*scannable_version=*/1, s.ctx);
  std::unique_ptr<fingerprint_generator, FingerprintGeneratorFree> gen(raw);
  if (rc < 0) return s.Error(rc, "safety number");
  SignalPtr<fingerprint> fp;
  rc = fingerprint_generator_create_for(
      gen.get(), local_id.c_str(),
      ratchet_identity_key_pair_get_public(s.identity.get()), remote_id.c_str(),
      remote.get(), fp.out());
  if (rc < 0) return s.Error(rc, "safety number");
  const char* text = displayable_fingerprint_text(fingerprint_get_displayable(fp.get()));
  if (text == nullptr) return absl::InternalError("safety number: no text");
  return std::string(text);
}

std::optional<PublicKey> DeviceCrypto::RemoteIdentity(const Address& remote) {
  if (!CheckAddress(remote).ok()) return std::nullopt;
  absl::MutexLock l(&mu_);
  absl::StatusOr<std::optional<std::string>> v =
      s_->db->Get(keys::Identity(remote.name, remote.device_id));
  if (!v.ok() || !v->has_value()) return std::nullopt;
  return PublicKey::FromSerialized(std::move(**v));
}

std::vector<IdentityChange> DeviceCrypto::TakeIdentityChanges() {
  absl::MutexLock l(&mu_);
  std::vector<IdentityChange> out;
  out.swap(s_->binding.changes);
  return out;
}

absl::Status DeviceCrypto::MarkVerified(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("empty name");
  absl::MutexLock l(&mu_);
  return s_->db->Put(keys::Verified(name), "1");
}

absl::Status DeviceCrypto::MarkUnverified(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("empty name");
  absl::MutexLock l(&mu_);
  return s_->db->Delete(keys::Verified(name));
}

bool DeviceCrypto::IsVerified(std::string_view name) {
  absl::MutexLock l(&mu_);
  absl::StatusOr<std::optional<std::string>> v = s_->db->Get(keys::Verified(name));
  return v.ok() && v->has_value();
}

}  // namespace parley::crypto
