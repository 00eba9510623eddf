// The null server: Parley's RPC shapes over the same gRPC/TLS stack with no
// storage and no policy, as the baseline for parley-bench.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Serves AccountService.CreateAccount, ConversationService.CreateDirect /
// CreateGroup, MessagingService.Send / Receive / Ack and KeyService.UploadKeys
// / FetchBundles (keys kept in memory unchecked; a fetch hands out the latest
// upload with one one-time pre-key); everything else is UNIMPLEMENTED. One device per
// account. State lives in memory: accounts and tokens, conversation members
// and per-device queues of unacknowledged envelopes (so offline devices get
// their backlog, as from parleyd). A Send appends one envelope per recipient
// device (plain: every member device but the sender's; encrypted: the device
// each ciphertext names) and wakes that device's Receive stream; nothing is
// validated beyond authentication and membership. The Receive stream is a
// callback write reactor like parleyd's (one write in flight, no thread per
// stream). TLS with a CA and certificate generated in memory at start.
#ifndef PARLEY_TOOLS_BENCH_NULL_SERVER_H_
#define PARLEY_TOOLS_BENCH_NULL_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace parley::bench {

class NullServer {
 public:
  // `listen`: host:port (port 0 picks a free port).
  static absl::StatusOr<std::unique_ptr<NullServer>> Start(
      const std::string& listen);
  virtual ~NullServer() = default;

  virtual int port() const = 0;
  virtual const std::string& ca_pem() const = 0;
  // Ends every stream and stops serving (bounded). Idempotent.
  virtual void Shutdown() = 0;
  // Blocks until Shutdown() is called from another thread.
  virtual void Wait() = 0;
};

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_NULL_SERVER_H_
