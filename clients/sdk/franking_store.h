// FrankingStore: what this device keeps of received end-to-end encrypted
// messages so that it can report them later (message franking, see
// api/parley/franking/franking.h and MessagingService.ReportMessage).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Layout: <dir>/ (mode 0700; by convention <profile>/franking)
//   <hex(conversation id)>   one JSON object per line (mode 0600), later
//                            lines replace earlier ones with the same seq:
//     {"seq", "content_type", "content" (base64), "franking_key" (base64),
//      "sent_at_ms", "sender_account_id", "sender_device_id",
//      "client_message_id", "server_time_ms", "commitment" (base64),
//      "stamp" (base64), "commitment_ok"}
// Bounded: at most `max_per_conversation` messages (the highest seqs) per
// conversation are kept. Put appends a line; when the file holds more than
// twice the bound it is rewritten (temp file + rename) with the newest ones.
// Unparsable lines (a torn append after a crash) are skipped.
//
// The store holds decrypted content and franking keys: like the E2EE key
// store it relies on the directory permissions (and OS / disk encryption).
// Nothing here is logged; statuses name files, never content or keys.
//
// Thread-safe (one internal mutex). Several processes may share a profile:
// appends are single write(2) calls with O_APPEND.
#ifndef PARLEY_CLIENTS_SDK_FRANKING_STORE_H_
#define PARLEY_CLIENTS_SDK_FRANKING_STORE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "parley/v1/parley.pb.h"

namespace parley {

// One received E2EE message, as needed for a FrankingReveal.
struct FrankingRecord {
  std::string conversation_id;
  uint64_t seq = 0;
  std::string content_type;  // as committed (the inner envelope's value)
  std::string content;
  std::string franking_key;  // secret
  int64_t sent_at_ms = 0;
  std::string sender_account_id;
  uint32_t sender_device_id = 0;
  std::string client_message_id;
  int64_t server_time_ms = 0;
  std::string commitment;  // Message.franking_commitment
  std::string stamp;       // Message.franking_stamp
  // The commitment recomputed on receipt matched Message.franking_commitment.
  // false: the message cannot be reported ("unreportable").
  bool commitment_ok = false;

  // The reveal for ReportMessageRequest.reveal.
  v1::FrankingReveal ToReveal() const;
  // Wipes the content and the key (OPENSSL_cleanse).
  void Wipe();
};

class FrankingStore {
 public:
  static constexpr size_t kDefaultMaxPerConversation = 1000;

  explicit FrankingStore(std::string dir,
                         size_t max_per_conversation = kDefaultMaxPerConversation);

  // Records `record` (replacing one with the same conversation and seq).
  absl::Status Put(const FrankingRecord& record);
  // NotFound when the message is not in the store.
  absl::StatusOr<FrankingRecord> Get(const std::string& conversation_id,
                                     uint64_t seq) const;
  // Seqs kept for the conversation, ascending (tests, diagnostics).
  std::vector<uint64_t> Seqs(const std::string& conversation_id) const;

  const std::string& dir() const { return dir_; }
  size_t max_per_conversation() const { return max_; }

 private:
  std::string PathOf(const std::string& conversation_id) const;

  const std::string dir_;
  const size_t max_;
  mutable absl::Mutex mu_;
};

}  // namespace parley

#endif  // PARLEY_CLIENTS_SDK_FRANKING_STORE_H_
