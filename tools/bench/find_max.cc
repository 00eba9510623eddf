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

}  // namespace parley::bench
