// parley-bench --find-max: the closed-loop search for a server's maximum
// delivered rate. A closed loop at one fixed window can leave the server
// short of work (BENCHMARKS.md, tenth round: a group of 100 at window 4 ran
// at less than half of what the same server did at window 64), so "the
// maximum" is searched for: the window doubles from --window until the rate
// stops rising.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Pure logic, no I/O: main.cc runs the steps and asks this header which
// window comes next. Not thread-safe (plain functions over values).
#ifndef PARLEY_TOOLS_BENCH_FIND_MAX_H_
#define PARLEY_TOOLS_BENCH_FIND_MAX_H_

#include <cstddef>
#include <vector>

namespace parley::bench {

struct FindMaxOptions {
  // Window (Sends in flight per sender) of the first run: --window.
  int first_window = 16;
  // Runs at most, the first included: --find-max-steps.
  int max_steps = 6;
  // A run goes on to the next window only if it beat the best rate before
  // it by more than this fraction (0.05: 5%, above the run-to-run noise of
  // an 8 s run on a quiet host).
  double min_gain = 0.05;
  // Never a window above this (the --window bound).
  int max_window = 4096;
  // The search ends after this many runs in a row that did not gain (2:
  // one run that loses to noise does not end it).
  int patience = 2;
  // Runs that happen whatever the gain (still within max_steps and
  // max_window): the null server's search covers every window parleyd's
  // search ran, so the two can be compared at the same window.
  int min_steps = 1;
};

// One finished run of the search.
struct SearchStep {
  int window = 0;
  double delivered_per_s = 0;
};

// The window of the next run, or 0 when the search is over. The first run
// uses first_window; each next one doubles the last (capped at max_window).
// A run "gains" when it beats the best run before it by more than min_gain.
// The search ends when max_steps runs are done, when the last run was
// already at max_window, or, once min_steps runs are done, when the last
// `patience` runs all did not gain (the rate stopped rising).
int NextWindow(const FindMaxOptions& o, const std::vector<SearchStep>& done);

// Index of the run with the highest delivered rate (the earliest of equal
// ones). `done` must not be empty.
size_t BestStep(const std::vector<SearchStep>& done);

// --find-rate: the open-loop search for the highest rate a server carries
// within a latency bound (p99 Send->deliver at most --find-rate ms, every
// Send issued and accepted, every message delivered). The bound's pass or
// fail of each run is the caller's (main.cc); this only picks the rates.
struct FindRateOptions {
  double first_rate = 1000;  // --rate
  int max_steps = 6;         // --find-max-steps
  // Stop once the highest passing rate and the lowest failing rate above
  // it are within this fraction of each other (0.05: 5%, about an 8 s
  // run's noise on a quiet host).
  double resolution = 0.05;
  // Never a rate outside these (the --rate bounds).
  double min_rate = 1;
  double max_rate = 10000000;
};

// One finished run of the rate search.
struct RateStep {
  double rate = 0;
  bool passed = false;
};

// The rate of the next run, or 0 when the search is over. The first run
// uses first_rate. While every run passed, the next doubles the highest
// (capped at max_rate); while every run failed, it halves the lowest (not
// below min_rate). Then it is the midpoint between the highest passing rate
// and the lowest failing rate above it (a failure below the highest pass,
// the host's noise, is passed over), until the two are within `resolution`.
// At most max_steps runs.
double NextRate(const FindRateOptions& o, const std::vector<RateStep>& done);

// Index of the highest rate that passed, or -1 when none did.
int BestRate(const std::vector<RateStep>& done);

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_FIND_MAX_H_
