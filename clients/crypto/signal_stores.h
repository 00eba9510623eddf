// SPDX-License-Identifier: GPL-3.0-or-later
//
// Internal: libsignal-protocol-c store callbacks (session, pre-key, signed
// pre-key, identity, sender key) over the RocksDB KeyStore, and the identity
// trust policy documented in clients/crypto/crypto.h.
//
// Return conventions follow signal_protocol.h: load_session / load_sender_key
// return 1 (found) or 0; load_pre_key / load_signed_pre_key return SG_SUCCESS
// or SG_ERR_INVALID_KEY_ID; signal_protocol_address.name is not
// NUL-terminated (name_len is used). A store failure returns SG_ERR_UNKNOWN
// and keeps the detailed status in StoreBinding::last_error.
//
// Called only from inside DeviceCrypto methods, under its mutex.
#ifndef PARLEY_CLIENTS_CRYPTO_SIGNAL_STORES_H_
#define PARLEY_CLIENTS_CRYPTO_SIGNAL_STORES_H_

#include <signal/signal_protocol.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "clients/crypto/crypto.h"
#include "clients/crypto/key_store.h"

namespace parley::crypto {

struct StoreBinding {
  StoreBinding() = default;
  StoreBinding(const StoreBinding&) = delete;
  StoreBinding& operator=(const StoreBinding&) = delete;
  ~StoreBinding();

  KeyStore* db = nullptr;
  bool block_verified_identity_changes = true;

  // Our identity key pair, serialized (the private half is wiped on
  // destruction), and registration id.
  std::string identity_public;
  std::string identity_private;
  uint32_t registration_id = 0;

  // Queued identity-change events.
  std::vector<IdentityChange> changes;

  // The last save_identity that replaced a key, so that libsignal's
  // save_identity(NULL) after a failed decryption can undo exactly that.
  struct Replaced {
    Address address;
    std::optional<std::string> old_key;
    bool was_verified = false;
    bool event_queued = false;
  };
  std::optional<Replaced> last_replaced;

  // First key-store failure seen by a callback since the last Reset().
  absl::Status last_error;

  // Called at the start of every DeviceCrypto operation.
  void Reset() {
    last_error = absl::OkStatus();
    last_replaced.reset();
  }
};

// Installs all five stores on `store`, with `binding` as user data. `binding`
// must outlive `store`.
int InstallSignalStores(signal_protocol_store_context* store,
                        StoreBinding* binding);

}  // namespace parley::crypto

#endif  // PARLEY_CLIENTS_CRYPTO_SIGNAL_STORES_H_
