// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/find_max.h"

#include <algorithm>
#include <cstdlib>

namespace parley::bench {

size_t BestStep(const std::vector<SearchStep>& done) {
  if (done.empty()) std::abort();  // contract: at least one run
  size_t best = 0;
  for (size_t i = 1; i < done.size(); ++i) {
    if (done[i].delivered_per_s > done[best].delivered_per_s) best = i;
  }
  return best;
}

int NextWindow(const FindMaxOptions& o, const std::vector<SearchStep>& done) {
  if (done.empty()) return std::min(o.first_window, o.max_window);
  if (static_cast<int>(done.size()) >= o.max_steps) return 0;
  const SearchStep& last = done.back();
  if (last.window >= o.max_window) return 0;
  if (static_cast<int>(done.size()) >= o.min_steps) {
    // Runs at the end that did not gain on the best before them: one pass
    // with the best so far; a run that gains starts the count again.
    int without_gain = 0;
    double best_before = done[0].delivered_per_s;
    for (size_t i = 1; i < done.size(); ++i) {
      const double rate = done[i].delivered_per_s;
      without_gain =
          rate > best_before * (1.0 + o.min_gain) ? 0 : without_gain + 1;
      best_before = std::max(best_before, rate);
    }
    if (without_gain >= std::max(1, o.patience)) return 0;
  }
  return last.window > o.max_window / 2 ? o.max_window : last.window * 2;
}

int BestRate(const std::vector<RateStep>& done) {
  int best = -1;
  for (size_t i = 0; i < done.size(); ++i) {
    if (done[i].passed && (best < 0 || done[i].rate > done[best].rate)) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

double NextRate(const FindRateOptions& o, const std::vector<RateStep>& done) {
  if (done.empty()) {
    return std::clamp(o.first_rate, o.min_rate, o.max_rate);
  }
  if (static_cast<int>(done.size()) >= o.max_steps) return 0;
  const int best = BestRate(done);
  if (best < 0) {
    // Nothing passed yet: half the lowest rate tried.
    double lowest = done[0].rate;
    for (const RateStep& s : done) lowest = std::min(lowest, s.rate);
    if (lowest <= o.min_rate) return 0;
    return std::max(o.min_rate, lowest / 2);
  }
  const double lo = done[best].rate;
  double hi = 0;  // the lowest failing rate above lo; 0: none
  for (const RateStep& s : done) {
    if (!s.passed && s.rate > lo && (hi == 0 || s.rate < hi)) hi = s.rate;
  }
  if (hi == 0) {
    if (lo >= o.max_rate) return 0;
    return std::min(o.max_rate, lo * 2);
  }
  if (hi <= lo * (1 + o.resolution)) return 0;
  return (lo + hi) / 2;
}

}  // namespace parley::bench
