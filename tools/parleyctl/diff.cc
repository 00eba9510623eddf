// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/parleyctl/diff.h"

#include <algorithm>
#include <cstdint>

namespace parley::ctl {
namespace {

using Lines = std::vector<std::string_view>;

// Myers' forward search over a[a0, a0+n) and b[b0, b0+m), then a backtrack
// through the saved frontiers. Appends the edits in order to `out`.
void MyersMiddle(const Lines& a, const Lines& b, size_t a0, size_t b0,
                 int64_t n, int64_t m, std::vector<Edit>* out) {
  const int64_t max = n + m;
  std::vector<int64_t> v(static_cast<size_t>(2 * max + 3), 0);
  auto at = [&](int64_t k) -> int64_t& {
    return v[static_cast<size_t>(k + max + 1)];
  };
  // trace[d][k + d]: furthest x on diagonal k after d non-diagonal moves.
  std::vector<std::vector<int64_t>> trace;
  int64_t found = -1;
  for (int64_t d = 0; d <= max && found < 0; ++d) {
    for (int64_t k = -d; k <= d; k += 2) {
      int64_t x = (k == -d || (k != d && at(k - 1) < at(k + 1)))
                      ? at(k + 1)
                      : at(k - 1) + 1;
      int64_t y = x - k;
      while (x < n && y < m && a[a0 + x] == b[b0 + y]) ++x, ++y;
      at(k) = x;
      if (x >= n && y >= m) found = d;
    }
    std::vector<int64_t> frontier(static_cast<size_t>(2 * d + 1));
    for (int64_t k = -d; k <= d; ++k)
      frontier[static_cast<size_t>(k + d)] = at(k);
    trace.push_back(std::move(frontier));
  }

  std::vector<Edit> rev;
  int64_t x = n, y = m;
  auto prev_at = [&](int64_t d, int64_t k) {
    return trace[static_cast<size_t>(d)][static_cast<size_t>(k + d)];
  };
  for (int64_t d = found; d > 0; --d) {
    const int64_t k = x - y;
    const bool down =
        k == -d || (k != d && prev_at(d - 1, k - 1) < prev_at(d - 1, k + 1));
    const int64_t prev_k = down ? k + 1 : k - 1;
    const int64_t prev_x = prev_at(d - 1, prev_k);
    const int64_t prev_y = prev_x - prev_k;
    const int64_t mid_x = down ? prev_x : prev_x + 1;  // after the move
    while (x > mid_x) {
      --x, --y;
      rev.push_back({EditKind::kEqual, a0 + static_cast<size_t>(x),
                     b0 + static_cast<size_t>(y)});
    }
    if (down) {
      rev.push_back({EditKind::kInsert, a0 + static_cast<size_t>(prev_x),
                     b0 + static_cast<size_t>(prev_y)});
    } else {
      rev.push_back({EditKind::kDelete, a0 + static_cast<size_t>(prev_x),
                     b0 + static_cast<size_t>(prev_y)});
    }
    x = prev_x;
    y = prev_y;
  }
  while (x > 0 && y > 0) {
    --x, --y;
    rev.push_back({EditKind::kEqual, a0 + static_cast<size_t>(x),
                   b0 + static_cast<size_t>(y)});
  }
  out->insert(out->end(), rev.rbegin(), rev.rend());
}

std::string Range(size_t before, size_t len) {
  // GNU style: "start,len", "start" when len is 1, the preceding line for 0.
  if (len == 1) return std::to_string(before + 1);
  return std::to_string(len == 0 ? before : before + 1) + "," +
         std::to_string(len);
}

void AppendLine(char prefix, std::string_view line, std::string* out) {
  out->push_back(prefix);
  out->append(line);
  if (line.empty() || line.back() != '\n') {
    out->append("\n\\ No newline at end of file\n");
  }
}

}  // namespace

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const size_t len = nl == std::string_view::npos ? text.size() : nl + 1;
    lines.push_back(text.substr(0, len));
    text.remove_prefix(len);
  }
  return lines;
}

std::vector<Edit> DiffLines(const Lines& a, const Lines& b) {
  const size_t n = a.size();
  const size_t m = b.size();
  size_t pre = 0;
  while (pre < n && pre < m && a[pre] == b[pre]) ++pre;
  size_t suf = 0;
  while (suf < n - pre && suf < m - pre && a[n - 1 - suf] == b[m - 1 - suf]) {
    ++suf;
  }
  std::vector<Edit> edits;
  edits.reserve(std::max(n, m));
  for (size_t i = 0; i < pre; ++i) edits.push_back({EditKind::kEqual, i, i});
  MyersMiddle(a, b, pre, pre, static_cast<int64_t>(n - pre - suf),
              static_cast<int64_t>(m - pre - suf), &edits);
  for (size_t i = suf; i > 0; --i) {
    edits.push_back({EditKind::kEqual, n - i, m - i});
  }
  return edits;
}

std::string UnifiedDiff(std::string_view a_text, std::string_view b_text,
                        std::string_view a_label, std::string_view b_label,
                        size_t context) {
  const Lines a = SplitLines(a_text);
  const Lines b = SplitLines(b_text);
  const std::vector<Edit> edits = DiffLines(a, b);
  const size_t n = edits.size();
  // Lines of a and b before edit i.
  std::vector<size_t> a_before(n + 1, 0), b_before(n + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    a_before[i + 1] = a_before[i] + (edits[i].kind != EditKind::kInsert);
    b_before[i + 1] = b_before[i] + (edits[i].kind != EditKind::kDelete);
  }

  std::string out;
  size_t i = 0;
  while (true) {
    while (i < n && edits[i].kind == EditKind::kEqual) ++i;
    if (i == n) break;
    const size_t start = i >= context ? i - context : 0;
    size_t j = i;
    size_t end = i;  // one past the hunk's last change
    while (true) {
      while (j < n && edits[j].kind != EditKind::kEqual) ++j;
      end = j;
      size_t k = j;
      while (k < n && edits[k].kind == EditKind::kEqual) ++k;
      if (k == n || k - j > 2 * context) break;
      j = k;
    }
    const size_t stop = std::min(n, end + context);
    if (out.empty()) {
      out.append("--- ").append(a_label).append("\n+++ ");
      out.append(b_label).append("\n");
    }
    out += "@@ -" + Range(a_before[start], a_before[stop] - a_before[start]) +
           " +" + Range(b_before[start], b_before[stop] - b_before[start]) +
           " @@\n";
    for (size_t e = start; e < stop; ++e) {
      switch (edits[e].kind) {
        case EditKind::kEqual:
          AppendLine(' ', a[edits[e].a_index], &out);
          break;
        case EditKind::kDelete:
          AppendLine('-', a[edits[e].a_index], &out);
          break;
        case EditKind::kInsert:
          AppendLine('+', b[edits[e].b_index], &out);
          break;
      }
    }
    i = stop;
  }
  return out;
}

}  // namespace parley::ctl
