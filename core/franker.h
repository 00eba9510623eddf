// The server side of message franking (api/parley/franking/franking.h):
// stamps the commitments of E2EE messages and checks what reporters reveal.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// The stamp key (32 random bytes) lives in <data-dir>/keys/franking.key,
// mode 0600, created on first start and never logged. Losing it makes
// earlier messages unreportable, nothing else.
//
// Thread-safe and immutable after Open.
#ifndef PARLEY_CORE_FRANKER_H_
#define PARLEY_CORE_FRANKER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "api/parley/franking/franking.h"
#include "parley/v1/parley.pb.h"

namespace parley::core {

class Franker {
 public:
  // Loads the key at `path` or creates it (directory 0700, file 0600). A
  // key file readable by others is refused (PERMISSION_DENIED).
  static absl::StatusOr<std::unique_ptr<Franker>> Open(const std::string& path);
  // A franker with a given key (tests).
  static std::unique_ptr<Franker> ForKey(std::string key);
  ~Franker();

  absl::StatusOr<std::string> Stamp(const franking::StampInput& in) const;

  // Checks a report's reveal for message `seq` of `conversation_id`: the
  // commitment recomputed from the revealed content, and the stamp
  // recomputed from the commitment and the metadata, must both match.
  // INVALID_ARGUMENT naming what does not check otherwise.
  absl::Status Verify(const std::string& conversation_id, uint64_t seq,
                      const v1::FrankingReveal& reveal) const;

 private:
  explicit Franker(std::string key) : key_(std::move(key)) {}
  std::string key_;
};

}  // namespace parley::core

#endif  // PARLEY_CORE_FRANKER_H_
