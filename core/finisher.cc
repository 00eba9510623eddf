// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/finisher.h"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace parley::core {

Finisher::Finisher() : thread_([this] { Run(); }) {}

Finisher::~Finisher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void Finisher::Post(std::function<void()> done) {
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    std::fprintf(stderr, "Finisher::Post after the finisher began to stop\n");
    std::abort();
  }
  queue_.push_back(std::move(done));
}

bool Finisher::OnFinisherThread() const {
  return std::this_thread::get_id() == thread_.get_id();
}

void Finisher::Run() {
  pthread_setname_np(pthread_self(), "parley-finish");
  std::vector<std::function<void()>> batch;
  while (true) {
    batch.clear();
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping, and everything has run
      batch.swap(queue_);
    }
    // Outside the lock: a completion may post again (it runs in a later
    // batch).
    for (auto& done : batch) done();
  }
}

}  // namespace parley::core
