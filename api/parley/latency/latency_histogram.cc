// SPDX-License-Identifier: GPL-3.0-or-later
#include "api/parley/latency/latency_histogram.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace parley::latency {
namespace {

std::array<uint64_t, LatencyHistogram::kBounds> MakeBounds() {
  std::array<uint64_t, LatencyHistogram::kBounds> b{};
  for (size_t k = 0; k < b.size(); ++k) {
    b[k] = static_cast<uint64_t>(
        std::llround(std::exp2(4.0 + static_cast<double>(k) / 8.0)));
  }
  return b;
}

}  // namespace

const std::array<uint64_t, LatencyHistogram::kBounds>&
LatencyHistogram::Bounds() {
  static const std::array<uint64_t, kBounds> bounds = MakeBounds();
  return bounds;
}

LatencyHistogram::LatencyHistogram() {
  for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
}

void LatencyHistogram::Record(absl::Duration d) {
  const int64_t us = std::max<int64_t>(0, absl::ToInt64Microseconds(d));
  const auto& b = Bounds();
  // The first bucket whose bound is at least `us`; past the end: above.
  const size_t i =
      std::lower_bound(b.begin(), b.end(), static_cast<uint64_t>(us)) -
      b.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
}

void LatencyHistogram::ToProto(v1::LatencyHistogram* out) const {
  out->Clear();
  for (uint64_t b : Bounds()) out->add_upper_bounds_us(b);
  for (const auto& c : counts_) {
    out->add_counts(c.load(std::memory_order_relaxed));
  }
}

absl::StatusOr<LatencySummary> Summarize(const v1::LatencyHistogram& end,
                                         const v1::LatencyHistogram* start) {
  auto check = [](const v1::LatencyHistogram& h,
                  const char* which) -> absl::Status {
    if (h.counts_size() != h.upper_bounds_us_size() + 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("latency histogram (", which, "): ", h.counts_size(),
                       " counts for ", h.upper_bounds_us_size(),
                       " bounds; there must be one more count than bounds"));
    }
    for (int i = 1; i < h.upper_bounds_us_size(); ++i) {
      if (h.upper_bounds_us(i) <= h.upper_bounds_us(i - 1)) {
        return absl::InvalidArgumentError(
            absl::StrCat("latency histogram (", which, "): upper_bounds_us[", i,
                         "] is not above the one before it"));
      }
    }
    return absl::OkStatus();
  };
  if (absl::Status s = check(end, "end"); !s.ok()) return s;
  std::vector<uint64_t> counts(end.counts().begin(), end.counts().end());
  if (start != nullptr) {
    if (absl::Status s = check(*start, "start"); !s.ok()) return s;
    if (start->upper_bounds_us_size() != end.upper_bounds_us_size() ||
        !std::equal(start->upper_bounds_us().begin(),
                    start->upper_bounds_us().end(),
                    end.upper_bounds_us().begin())) {
      return absl::InvalidArgumentError(
          "latency histograms: the two reads have different bucket bounds");
    }
    for (size_t i = 0; i < counts.size(); ++i) {
      if (start->counts(static_cast<int>(i)) > counts[i]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "latency histograms: counts[", i,
            "] fell between the reads (not two reads of one server)"));
      }
      counts[i] -= start->counts(static_cast<int>(i));
    }
  }
  LatencySummary s;
  for (uint64_t c : counts) s.count += c;
  if (s.count == 0) return s;
  // The bound of the bucket holding the event of rank ceil(q * count).
  auto at = [&](double q) {
    const uint64_t rank = std::max<uint64_t>(
        1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(s.count))));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      seen += counts[i];
      if (seen >= rank) {
        return i < static_cast<size_t>(end.upper_bounds_us_size())
                   ? static_cast<double>(
                         end.upper_bounds_us(static_cast<int>(i))) /
                         1000.0
                   : -1.0;
      }
    }
    return -1.0;
  };
  s.p50_ms = at(0.50);
  s.p99_ms = at(0.99);
  s.p999_ms = at(0.999);
  return s;
}

}  // namespace parley::latency
