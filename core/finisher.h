// Finisher: runs short completions (answering a unary RPC) on a thread of
// its own, so the thread that did the work can go back to gRPC at once.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Why: a unary Send that finishes inline writes its reply on the gRPC
// callback thread that handled it (one `sendmsg` before that thread polls
// again). Handing the Finish to this thread lets the callback threads take
// the next requests sooner and lets replies leave in bursts; in 1:1 load
// tests it gave 12-22% more messages/s for less CPU per message
// (BENCHMARKS.md, seventh round). With batched log writes (the default
// since the eleventh round) most Sends are answered by the store's committer
// thread instead; the finisher answers those that were durable already.
//
// Contract:
// - Thread-safe: Post may be called from any thread, concurrently.
// - Completions run one at a time, in the order they were posted, on the
//   finisher's thread. They must not block (they run before every later
//   completion) and must not throw.
// - The destructor runs every completion already posted, then joins the
//   thread. Posting during or after destruction is a bug (checked: aborts).
#ifndef PARLEY_CORE_FINISHER_H_
#define PARLEY_CORE_FINISHER_H_

#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace parley::core {

class Finisher {
 public:
  Finisher();
  ~Finisher();
  Finisher(const Finisher&) = delete;
  Finisher& operator=(const Finisher&) = delete;

  // Queues `done` to run on the finisher's thread.
  void Post(std::function<void()> done);

  // True on the finisher's own thread (for assertions and tests).
  bool OnFinisherThread() const;

 private:
  void Run();

  absl::Mutex mu_;
  std::vector<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: started after the fields above exist
};

}  // namespace parley::core

#endif  // PARLEY_CORE_FINISHER_H_
