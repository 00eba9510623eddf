// The bytes inside an end-to-end encrypted message, and the server's
// DeviceMismatch error details.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Inner envelope
// --------------
// What a Signal ciphertext (DeviceCiphertext.ciphertext, any type) decrypts
// to. Encoded in the protobuf wire format (proto3 rules: unknown fields are
// skipped, so later versions can add fields), as if declared
//
//   message InnerEnvelope {
//     uint32 version = 1;             // 1
//     // The conversation the content was written for. A receiver refuses an
//     // envelope whose conversation differs from the Message carrying it
//     // (the server could otherwise move a ciphertext between two
//     // conversations of the same sender and receiver).
//     string conversation_id = 2;
//     string content_type = 3;        // "text/plain" (empty means text/plain)
//     bytes content = 4;              // the message itself
//     // Groups: the sender's Signal sender-key distribution message (type 5
//     // bytes) for conversation_id. Only ever inside a pairwise (type 2/3)
//     // ciphertext; the receiver processes it before reading the content.
//     bytes sender_key_distribution = 5;
//     // Message franking (api/parley/franking/franking.h): the fresh
//     // 32-byte key of this message (the same for all its devices) and the
//     // sender's clock when it was written (Unix ms). The sender commits
//     // to (conversation, sender, client_message_id, sent_at_ms,
//     // content_type, content) with the key; the receiver recomputes it.
//     bytes franking_key = 6;
//     int64 sent_at_ms = 7;
//     // Zero bytes so that the whole encoding is a multiple of 64 bytes
//     // (hides the exact length of short messages). Always present.
//     bytes padding = 15;
//   }
//
// Pure functions; thread-safe; no I/O.
#ifndef PARLEY_CLIENTS_SDK_E2EE_FORMAT_H_
#define PARLEY_CLIENTS_SDK_E2EE_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parley/v1/common.pb.h"

namespace parley {

struct InnerEnvelope {
  static constexpr uint32_t kVersion = 1;
  static constexpr size_t kPadBlock = 64;

  uint32_t version = kVersion;
  std::string conversation_id;
  std::string content_type;
  std::string content;
  std::string sender_key_distribution;
  std::string franking_key;  // secret: wipe after use
  int64_t sent_at_ms = 0;
};

// Serializes `envelope` (padded, see above).
std::string EncodeInnerEnvelope(const InnerEnvelope& envelope);
// Parses an encoding; InvalidArgument when it is not a valid envelope
// (malformed wire format, version 0, no conversation id). Fields this
// version does not know are skipped.
absl::StatusOr<InnerEnvelope> DecodeInnerEnvelope(absl::string_view bytes);

// The type URL of a parley.v1.DeviceMismatch inside an error's details.
inline constexpr absl::string_view kDeviceMismatchTypeUrl =
    "type.googleapis.com/parley.v1.DeviceMismatch";

// Extracts the DeviceMismatch from a gRPC status' error details (the
// serialized parley.v1.RpcStatus / google.rpc.Status of
// grpc::Status::error_details()). nullopt when there is none or the details
// do not parse.
std::optional<v1::DeviceMismatch> ParseDeviceMismatch(
    absl::string_view error_details);

}  // namespace parley

#endif  // PARLEY_CLIENTS_SDK_E2EE_FORMAT_H_
