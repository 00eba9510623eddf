// Server-signed security statements: what parleyd signs about a
// conversation's security state, and how a client verifies it. Part of the
// API contract: a client in any language implements Verify exactly as
// specified here. Shared by parleyd (core/statement.h, the signer) and the
// SDK (clients/sdk/statement_verifier.h, downgrade protection), so both ends
// read one definition.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Wire format (api/parley/v1/common.proto):
//   SecurityState.signed_statement = deterministic serialization
//       (Serialize) of a v1::SecurityStatement built from the state
//       (FromState): version 1, conversation_id, epoch, mode,
//       policy_revision, rule_id, effective_at_ms, pending mode and time,
//       locked, server_key_id, e2ee_ever_enabled.
//   SecurityState.signature = Ed25519(server key,
//       "parley-security-statement-v1\0" || signed_statement)  (SigningInput)
//   server_key_id = first 16 lower-case hex characters of
//       SHA-256(raw 32-byte public key)  (KeyId)
// Ed25519 is deterministic: the same state signed twice gives the same bytes.
//
// Pure functions; thread-safe; no I/O.
#ifndef PARLEY_API_PARLEY_STATEMENT_STATEMENT_H_
#define PARLEY_API_PARLEY_STATEMENT_STATEMENT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parley/v1/common.pb.h"

namespace parley::statement {

// Domain separation: prefixed to the statement bytes before signing. 29
// bytes: the text and one NUL.
inline constexpr absl::string_view kSigningContext(
    "parley-security-statement-v1\0", 29);
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kPublicKeySize = 32;  // raw Ed25519 public key
inline constexpr size_t kSignatureSize = 64;  // Ed25519 signature

// The bytes that are signed: kSigningContext + signed_statement.
std::string SigningInput(absl::string_view signed_statement);

// First 16 lower-case hex characters of SHA-256(public_key): the
// SecurityStatement.server_key_id of statements signed by that key.
std::string KeyId(absl::string_view public_key);

// The statement for `state` of `conversation_id` (signed_statement,
// signature, reason, notice and the consent lists are not part of it).
v1::SecurityStatement FromState(const std::string& conversation_id,
                                const v1::SecurityState& state,
                                absl::string_view server_key_id);

// Deterministic serialization (fields in number order; equal statements give
// equal bytes with the same protobuf library). Internal on a protobuf
// failure.
absl::StatusOr<std::string> Serialize(const v1::SecurityStatement& statement);

// Verifies `state` (of conversation `conversation_id`) against the pinned
// 32-byte Ed25519 `public_key` and returns its statement. Errors name the
// conversation, the epoch and what is wrong:
//   INVALID_ARGUMENT   the key is not 32 bytes;
//   PERMISSION_DENIED  unsigned; signature not 64 bytes or not by the key;
//                      statement unparsable, of another version, about
//                      another conversation or naming another key id; a
//                      field (mode, epoch, policy_revision, rule_id,
//                      effective_at_ms, pending mode and time, locked,
//                      e2ee_ever_enabled) that disagrees with the state's
//                      visible one (untrusted strings are shown C-escaped);
//   INTERNAL           an OpenSSL failure.
absl::StatusOr<v1::SecurityStatement> Verify(
    absl::string_view public_key, const v1::SecurityState& state,
    const std::string& conversation_id);

}  // namespace parley::statement

#endif  // PARLEY_API_PARLEY_STATEMENT_STATEMENT_H_
