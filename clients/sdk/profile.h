// A client profile: one device's credentials on disk.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Layout: <dir>/ (mode 0700)
//   credentials.json (mode 0600): {"server", "ca_file", "insecure",
//       "account_id", "username", "device_id", "device_token",
//       "server_signing_key" (base64), "server_key_id", "refuse_downgrade"}
//   security_states.json: the StatementVerifier's memory (downgrade
//       protection, see statement_verifier.h), when a key is pinned.
//   e2ee-seen/<hex(conversation id)>: conversations this profile has seen as
//       end-to-end encrypted (sticky E2EE, see client.h).
//   e2ee/: the end-to-end encryption keys and state of SignalEngine (see
//       signal_engine.h), when the app uses it there (the CLI does).
//
// The device token is a secret: it is never logged, never part of a Status
// message and redacted by DebugString().
//
// Thread safety: a Profile is a value type; distinct objects may be used
// concurrently, one object needs external synchronisation. Save() writes
// atomically (temp file + rename) so concurrent readers in other processes
// see the old or the new file, never a torn one.
#ifndef PARLEY_CLIENTS_SDK_PROFILE_H_
#define PARLEY_CLIENTS_SDK_PROFILE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace parley {

struct Profile {
  // Directory of the profile; empty = in memory only (Save fails).
  std::string dir;

  // Connection settings saved at registration / linking.
  std::string server;
  std::string ca_file;
  bool insecure = false;

  // Credentials (empty / 0 until registered or linked).
  std::string account_id;
  std::string username;
  uint32_t device_id = 0;
  std::string device_token;  // secret

  // Downgrade protection. The server's raw 32-byte Ed25519 statement key,
  // pinned at Register / LinkDevice (CreateAccountResponse /
  // LinkDeviceResponse.server_signing_key), and its key id. Profiles written
  // before pinning existed (or registered with a server that sent no key)
  // have none: then no statement is verified (no pinning; trust on first
  // use is deliberately not done later, as the server could substitute a
  // key at that point).
  std::string server_signing_key;
  std::string server_key_id;
  // Never send plaintext into a conversation once verified as E2EE, even
  // after a verified downgrade (StatementVerifierOptions::refuse_downgrade).
  bool refuse_downgrade = false;

  static constexpr char kCredentialsFile[] = "credentials.json";

  // Reads <dir>/credentials.json. NotFound when the profile has no
  // credentials yet; PermissionDenied when the file is readable or writable
  // by group/others (fix with chmod 600); InvalidArgument when malformed.
  static absl::StatusOr<Profile> Load(const std::string& dir);

  // Creates `dir` (and missing parents) with mode 0700, forces the profile
  // directory itself to 0700 and writes the credentials file with mode 0600.
  absl::Status Save() const;

  bool registered() const { return !device_token.empty(); }
  std::string credentials_path() const;
  // Everything except the token (shown as "<redacted>").
  std::string DebugString() const;
};

// Creates `dir` and its missing parents with mode 0700 (existing parents are
// left alone; the leaf is chmod'ed to 0700).
absl::Status MakePrivateDirs(const std::string& dir);

}  // namespace parley

#endif  // PARLEY_CLIENTS_SDK_PROFILE_H_
