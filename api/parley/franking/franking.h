// Message franking: how a recipient of an end-to-end encrypted message can
// prove to the server what a sender wrote, without the server ever reading
// E2EE content it was not shown. Part of the API contract: a client in any
// language implements Commit exactly as specified here.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Scheme (as Facebook Messenger's "message franking", with a server stamp):
// 1. The sender picks a fresh random 32-byte franking key FK per message and
//    puts FK, the content and its timestamp inside the ciphertext (the
//    inner envelope, clients/sdk/e2ee_format.h). Beside the ciphertexts it
//    sends the commitment
//      C = HMAC-SHA256(FK, "parley-franking-v1" || LP(conversation_id) ||
//          LP(sender_account_id) || BE32(sender_device_id) ||
//          LP(client_message_id) || BE64(sent_at_ms) || LP(content_type) ||
//          LP(content))
//    where LP(x) = BE32(len(x)) || x and BE32/BE64 are big-endian.
// 2. parleyd stamps C on receipt with its own secret key SK:
//      S = HMAC-SHA256(SK, "parley-stamp-v1" || LP(C) || LP(conversation_id)
//          || LP(sender_account_id) || BE32(sender_device_id) ||
//          LP(client_message_id) || BE64(seq) || BE64(server_time_ms))
//    and every recipient device gets C and S with the message. The
//    sender identity, conversation, seq and time in S are the server's own
//    (authenticated), not the sender's claims.
// 3. To report, a recipient sends the content, FK, sent_at_ms and the
//    message's metadata, C and S. parleyd recomputes C from the revealed
//    content (so the content is what the sender committed to) and S from C
//    and the metadata (so C belongs to that message of that sender), and
//    accepts only if both match (constant-time comparisons).
//
// Pure functions; thread-safe; no I/O. Keys are never logged.
#ifndef PARLEY_API_PARLEY_FRANKING_FRANKING_H_
#define PARLEY_API_PARLEY_FRANKING_FRANKING_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::franking {

inline constexpr size_t kKeyBytes = 32;
inline constexpr size_t kCommitmentBytes = 32;
inline constexpr size_t kStampBytes = 32;

// What the sender commits to.
struct CommitInput {
  absl::string_view conversation_id;
  absl::string_view sender_account_id;
  uint32_t sender_device_id = 0;
  absl::string_view client_message_id;
  int64_t sent_at_ms = 0;
  absl::string_view content_type;
  absl::string_view content;
};

// What the server's stamp binds the commitment to.
struct StampInput {
  absl::string_view commitment;
  absl::string_view conversation_id;
  absl::string_view sender_account_id;
  uint32_t sender_device_id = 0;
  absl::string_view client_message_id;
  uint64_t seq = 0;
  int64_t server_time_ms = 0;
};

// A fresh random franking key (kKeyBytes, from the OpenSSL DRBG).
absl::StatusOr<std::string> NewKey();

// C of step 1. InvalidArgument if `franking_key` is not kKeyBytes long.
absl::StatusOr<std::string> Commit(absl::string_view franking_key, const CommitInput& in);

// S of step 2. InvalidArgument if `server_key` is shorter than 32 bytes or
// the commitment is not kCommitmentBytes long.
absl::StatusOr<std::string> Stamp(absl::string_view server_key, const StampInput& in);

// Constant-time equality of two byte strings (false if lengths differ).
bool Equal(absl::string_view a, absl::string_view b);

}  // namespace parley::franking

#endif  // PARLEY_API_PARLEY_FRANKING_FRANKING_H_
