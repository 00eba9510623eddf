// When `parley listen --timeout SEC` stops: after SEC seconds without
// anything new, counted once the stream has caught up (the messages queued
// while the device was away have arrived, BacklogDrained). Connecting and
// catching up may take longer than SEC (a loaded server, a long backlog)
// without ending the listen before the queued messages are shown; that phase
// is bounded by `catch_up` from the start.
//
// Pure (times are passed in); not thread-safe (one listen loop owns it).
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_CLIENTS_CLI_LISTEN_DEADLINE_H_
#define PARLEY_CLIENTS_CLI_LISTEN_DEADLINE_H_

#include <algorithm>

#include "absl/time/time.h"

namespace parley {

class ListenDeadline {
 public:
  // How long catching up may take before idle time counts anyway.
  static constexpr absl::Duration kDefaultCatchUp = absl::Seconds(30);

  // `idle`: the --timeout (absl::InfiniteDuration(): never stop).
  ListenDeadline(absl::Duration idle, absl::Time start,
                 absl::Duration catch_up = kDefaultCatchUp)
      : idle_(idle), catch_up_end_(start + catch_up), last_(start) {}

  // A message or event arrived.
  void Activity(absl::Time now) { last_ = now; }
  // The backlog queued at (re)connect was delivered: idle time counts from
  // here.
  void CaughtUp(absl::Time now) {
    caught_up_ = true;
    last_ = now;
  }

  // Time left before the listen stops (zero or less: stop now);
  // absl::InfiniteDuration() without an idle limit.
  absl::Duration Left(absl::Time now) const {
    if (idle_ == absl::InfiniteDuration()) return absl::InfiniteDuration();
    absl::Time end = last_ + idle_;
    if (!caught_up_) end = std::max(end, catch_up_end_);
    return end - now;
  }

 private:
  const absl::Duration idle_;
  const absl::Time catch_up_end_;
  absl::Time last_;
  bool caught_up_ = false;
};

}  // namespace parley

#endif  // PARLEY_CLIENTS_CLI_LISTEN_DEADLINE_H_
