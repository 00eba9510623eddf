// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/crypto/signal_stores.h"

#include <openssl/crypto.h>

#include <string_view>
#include <utility>

namespace parley::crypto {
namespace {

StoreBinding* B(void* user_data) { return static_cast<StoreBinding*>(user_data); }

std::string_view Name(const signal_protocol_address* a) {
  return {a->name, a->name_len};
}

Address ToAddress(const signal_protocol_address* a) {
  return Address{std::string(Name(a)), a->device_id};
}

std::string_view Bytes(const uint8_t* data, size_t len) {
  return {reinterpret_cast<const char*>(data), len};
}

// Records a store failure and returns the libsignal error code.
int Fail(StoreBinding* b, const absl::Status& s) {
  if (b->last_error.ok()) b->last_error = s;
  return SG_ERR_UNKNOWN;
}

// Loads `key` into a new signal_buffer. Returns 1 found, 0 absent, <0 error.
// `secret` values are wiped from the intermediate std::string.
int LoadInto(StoreBinding* b, const std::string& key, signal_buffer** out,
             bool secret) {
  absl::StatusOr<std::optional<std::string>> v = b->db->Get(key);
  if (!v.ok()) return Fail(b, v.status());
  if (!v->has_value()) return 0;
  std::string& value = **v;
  signal_buffer* buf = signal_buffer_create(
      reinterpret_cast<const uint8_t*>(value.data()), value.size());
  if (secret) OPENSSL_cleanse(value.data(), value.size());
  if (buf == nullptr) return SG_ERR_NOMEM;
  *out = buf;
  return 1;
}

int Contains(StoreBinding* b, const std::string& key) {
  absl::StatusOr<std::optional<std::string>> v = b->db->Get(key);
  if (!v.ok()) {
    Fail(b, v.status());
    return 0;  // the contains_* callbacks have no error return
  }
  const int found = v->has_value() ? 1 : 0;
  if (found) OPENSSL_cleanse((*v)->data(), (*v)->size());
  return found;
}

int PutOrFail(StoreBinding* b, const std::string& key, std::string_view value) {
  absl::Status s = b->db->Put(key, value);
  return s.ok() ? SG_SUCCESS : Fail(b, s);
}

int DeleteOrFail(StoreBinding* b, const std::string& key) {
  absl::Status s = b->db->Delete(key);
  return s.ok() ? SG_SUCCESS : Fail(b, s);
}

// ---- Sessions ---------------------------------------------------------------

int LoadSession(signal_buffer** record, signal_buffer** /*user_record*/,
                const signal_protocol_address* address, void* ud) {
  return LoadInto(B(ud), keys::Session(Name(address), address->device_id),
                  record, /*secret=*/true);
}

int GetSubDeviceSessions(signal_int_list** sessions, const char* name,
                         size_t name_len, void* ud) {
  StoreBinding* b = B(ud);
  signal_int_list* list = signal_int_list_alloc();
  if (list == nullptr) return SG_ERR_NOMEM;
  const std::string prefix = keys::SessionPrefix(std::string_view(name, name_len));
  int rc = SG_SUCCESS;
  absl::Status s = b->db->Scan(prefix, [&](std::string_view k, std::string_view) {
    if (k.size() != prefix.size() + 4) return true;
    const int32_t device = static_cast<int32_t>(keys::ReadBe32(k.substr(prefix.size())));
    if (signal_int_list_push_back(list, device) < 0) {
      rc = SG_ERR_NOMEM;
      return false;
    }
    return true;
  });
  if (!s.ok()) rc = Fail(b, s);
  if (rc < 0) {
    signal_int_list_free(list);
    return rc;
  }
  *sessions = list;
  return static_cast<int>(signal_int_list_size(list));
}

int StoreSession(const signal_protocol_address* address, uint8_t* record,
                 size_t record_len, uint8_t* /*user_record*/,
                 size_t /*user_record_len*/, void* ud) {
  // We never set session user records, so only the record is persisted.
  return PutOrFail(B(ud), keys::Session(Name(address), address->device_id),
                   Bytes(record, record_len));
}

int ContainsSession(const signal_protocol_address* address, void* ud) {
  return Contains(B(ud), keys::Session(Name(address), address->device_id));
}

int DeleteSession(const signal_protocol_address* address, void* ud) {
  StoreBinding* b = B(ud);
  const std::string key = keys::Session(Name(address), address->device_id);
  if (Contains(b, key) == 0) return 0;
  const int rc = DeleteOrFail(b, key);
  return rc < 0 ? rc : 1;
}

int DeleteAllSessions(const char* name, size_t name_len, void* ud) {
  StoreBinding* b = B(ud);
  absl::StatusOr<int> n =
      b->db->DeletePrefix(keys::SessionPrefix(std::string_view(name, name_len)));
  return n.ok() ? *n : Fail(b, n.status());
}

// ---- Pre-keys and signed pre-keys --------------------------------------------

int LoadPreKey(signal_buffer** record, uint32_t id, void* ud) {
  const int rc = LoadInto(B(ud), keys::PreKey(id), record, /*secret=*/true);
  if (rc < 0) return rc;
  return rc == 1 ? SG_SUCCESS : SG_ERR_INVALID_KEY_ID;
}

int StorePreKey(uint32_t id, uint8_t* record, size_t record_len, void* ud) {
  return PutOrFail(B(ud), keys::PreKey(id), Bytes(record, record_len));
}

int ContainsPreKey(uint32_t id, void* ud) {
  return Contains(B(ud), keys::PreKey(id));
}

int RemovePreKey(uint32_t id, void* ud) {
  return DeleteOrFail(B(ud), keys::PreKey(id));
}

int LoadSignedPreKey(signal_buffer** record, uint32_t id, void* ud) {
  const int rc = LoadInto(B(ud), keys::SignedPreKey(id), record, /*secret=*/true);
  if (rc < 0) return rc;
  return rc == 1 ? SG_SUCCESS : SG_ERR_INVALID_KEY_ID;
}

int StoreSignedPreKey(uint32_t id, uint8_t* record, size_t record_len,
                      void* ud) {
  return PutOrFail(B(ud), keys::SignedPreKey(id), Bytes(record, record_len));
}

int ContainsSignedPreKey(uint32_t id, void* ud) {
  return Contains(B(ud), keys::SignedPreKey(id));
}

int RemoveSignedPreKey(uint32_t id, void* ud) {
  return DeleteOrFail(B(ud), keys::SignedPreKey(id));
}

// ---- Identity -------------------------------------------------------------------

int GetIdentityKeyPair(signal_buffer** public_data, signal_buffer** private_data,
                       void* ud) {
  StoreBinding* b = B(ud);
  signal_buffer* pub = signal_buffer_create(
      reinterpret_cast<const uint8_t*>(b->identity_public.data()),
      b->identity_public.size());
  signal_buffer* priv = signal_buffer_create(
      reinterpret_cast<const uint8_t*>(b->identity_private.data()),
      b->identity_private.size());
  if (pub == nullptr || priv == nullptr) {
    signal_buffer_free(pub);
    signal_buffer_bzero_free(priv);
    return SG_ERR_NOMEM;
  }
  *public_data = pub;
  *private_data = priv;
  return SG_SUCCESS;
}

int GetLocalRegistrationId(void* ud, uint32_t* registration_id) {
  *registration_id = B(ud)->registration_id;
  return SG_SUCCESS;
}

absl::StatusOr<bool> IsVerifiedName(StoreBinding* b, std::string_view name) {
  absl::StatusOr<std::optional<std::string>> v = b->db->Get(keys::Verified(name));
  if (!v.ok()) return v.status();
  return v->has_value();
}

int SaveIdentity(const signal_protocol_address* address, uint8_t* key_data,
                 size_t key_len, void* ud) {
  StoreBinding* b = B(ud);
  const std::string id_key = keys::Identity(Name(address), address->device_id);

  if (key_data == nullptr) {
    // libsignal undoes a save after a failed decryption. Only undo a
    // replacement made during this very operation; otherwise keep the key
    // (dropping it would turn the next key into a silent first use).
    if (!b->last_replaced.has_value() ||
        !(b->last_replaced->address == ToAddress(address))) {
      return SG_SUCCESS;
    }
    StoreBinding::Replaced r = std::move(*b->last_replaced);
    b->last_replaced.reset();
    rocksdb::WriteBatch batch;
    if (r.old_key.has_value()) {
      batch.Put(id_key, *r.old_key);
    } else {
      batch.Delete(id_key);
    }
    if (r.was_verified) batch.Put(keys::Verified(Name(address)), "1");
    absl::Status s = b->db->Write(batch);
    if (!s.ok()) return Fail(b, s);
    if (r.event_queued && !b->changes.empty()) b->changes.pop_back();
    return SG_SUCCESS;
  }

  const std::string_view key = Bytes(key_data, key_len);
  absl::StatusOr<std::optional<std::string>> old = b->db->Get(id_key);
  if (!old.ok()) return Fail(b, old.status());
  if (old->has_value() && **old == key) return SG_SUCCESS;

  StoreBinding::Replaced r;
  r.address = ToAddress(address);
  r.old_key = *old;
  rocksdb::WriteBatch batch;
  batch.Put(id_key, rocksdb::Slice(key.data(), key.size()));
  if (old->has_value()) {
    absl::StatusOr<bool> verified = IsVerifiedName(b, Name(address));
    if (!verified.ok()) return Fail(b, verified.status());
    r.was_verified = *verified;
    // An accepted change always drops the verified status.
    batch.Delete(keys::Verified(Name(address)));
  }
  absl::Status s = b->db->Write(batch);
  if (!s.ok()) return Fail(b, s);
  if (old->has_value()) {
    IdentityChange change;
    change.address = r.address;
    change.old_key = PublicKey::FromSerialized(**old);
    change.new_key = PublicKey::FromSerialized(std::string(key));
    change.was_verified = r.was_verified;
    change.blocked = false;
    b->changes.push_back(std::move(change));
    r.event_queued = true;
  }
  b->last_replaced = std::move(r);
  return SG_SUCCESS;
}

int IsTrustedIdentity(const signal_protocol_address* address, uint8_t* key_data,
                      size_t key_len, void* ud) {
  StoreBinding* b = B(ud);
  const std::string_view key = Bytes(key_data, key_len);
  absl::StatusOr<std::optional<std::string>> old =
      b->db->Get(keys::Identity(Name(address), address->device_id));
  if (!old.ok()) return Fail(b, old.status());
  if (!old->has_value() || **old == key) return 1;  // first use, or same key
  if (!b->block_verified_identity_changes) return 1;
  absl::StatusOr<bool> verified = IsVerifiedName(b, Name(address));
  if (!verified.ok()) return Fail(b, verified.status());
  if (!*verified) return 1;  // TOFU: accepted, reported by save_identity

  // A verified contact presents a new key: refuse, and tell the app once.
  const Address addr = ToAddress(address);
  const PublicKey new_key = PublicKey::FromSerialized(std::string(key));
  for (const IdentityChange& c : b->changes) {
    if (c.blocked && c.address == addr && c.new_key == new_key) return 0;
  }
  IdentityChange change;
  change.address = addr;
  change.old_key = PublicKey::FromSerialized(**old);
  change.new_key = new_key;
  change.was_verified = true;
  change.blocked = true;
  b->changes.push_back(std::move(change));
  return 0;
}

// ---- Sender keys -----------------------------------------------------------------

std::string SenderKeyKey(const signal_protocol_sender_key_name* n) {
  return keys::SenderKey(std::string_view(n->group_id, n->group_id_len),
                         Name(&n->sender), n->sender.device_id);
}

int StoreSenderKey(const signal_protocol_sender_key_name* name, uint8_t* record,
                   size_t record_len, uint8_t* /*user_record*/,
                   size_t /*user_record_len*/, void* ud) {
  return PutOrFail(B(ud), SenderKeyKey(name), Bytes(record, record_len));
}

int LoadSenderKey(signal_buffer** record, signal_buffer** /*user_record*/,
                  const signal_protocol_sender_key_name* name, void* ud) {
  return LoadInto(B(ud), SenderKeyKey(name), record, /*secret=*/true);
}

}  // namespace

StoreBinding::~StoreBinding() {
  OPENSSL_cleanse(identity_private.data(), identity_private.size());
}

int InstallSignalStores(signal_protocol_store_context* store,
                        StoreBinding* binding) {
  signal_protocol_session_store sessions = {
      .load_session_func = LoadSession,
      .get_sub_device_sessions_func = GetSubDeviceSessions,
      .store_session_func = StoreSession,
      .contains_session_func = ContainsSession,
      .delete_session_func = DeleteSession,
      .delete_all_sessions_func = DeleteAllSessions,
      .destroy_func = nullptr,
      .user_data = binding,
  };
  signal_protocol_pre_key_store pre_keys = {
      .load_pre_key = LoadPreKey,
      .store_pre_key = StorePreKey,
      .contains_pre_key = ContainsPreKey,
      .remove_pre_key = RemovePreKey,
      .destroy_func = nullptr,
      .user_data = binding,
  };
  signal_protocol_signed_pre_key_store signed_pre_keys = {
      .load_signed_pre_key = LoadSignedPreKey,
      .store_signed_pre_key = StoreSignedPreKey,
      .contains_signed_pre_key = ContainsSignedPreKey,
      .remove_signed_pre_key = RemoveSignedPreKey,
      .destroy_func = nullptr,
      .user_data = binding,
  };
  signal_protocol_identity_key_store identities = {
      .get_identity_key_pair = GetIdentityKeyPair,
      .get_local_registration_id = GetLocalRegistrationId,
      .save_identity = SaveIdentity,
      .is_trusted_identity = IsTrustedIdentity,
      .destroy_func = nullptr,
      .user_data = binding,
  };
  signal_protocol_sender_key_store sender_keys = {
      .store_sender_key = StoreSenderKey,
      .load_sender_key = LoadSenderKey,
      .destroy_func = nullptr,
      .user_data = binding,
  };
  int rc = signal_protocol_store_context_set_session_store(store, &sessions);
  if (rc == 0) rc = signal_protocol_store_context_set_pre_key_store(store, &pre_keys);
  if (rc == 0) {
    rc = signal_protocol_store_context_set_signed_pre_key_store(store, &signed_pre_keys);
  }
  if (rc == 0) {
    rc = signal_protocol_store_context_set_identity_key_store(store, &identities);
  }
  if (rc == 0) {
    rc = signal_protocol_store_context_set_sender_key_store(store, &sender_keys);
  }
  return rc;
}

}  // namespace parley::crypto
