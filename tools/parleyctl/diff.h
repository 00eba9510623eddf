// SPDX-License-Identifier: GPL-3.0-or-later
//
// A small line diff (Myers' O((N+M)D) algorithm) and its unified rendering,
// for `parleyctl policy diff`.
#ifndef PARLEY_TOOLS_PARLEYCTL_DIFF_H_
#define PARLEY_TOOLS_PARLEYCTL_DIFF_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace parley::ctl {

// Lines of `text`, each with its terminating '\n' if it has one (so a last
// line without a newline differs from the same line with one).
std::vector<std::string_view> SplitLines(std::string_view text);

enum class EditKind { kEqual, kDelete, kInsert };

// One step of a shortest edit script turning `a` into `b`. `a_index` is
// meaningful for kEqual and kDelete, `b_index` for kEqual and kInsert.
struct Edit {
  EditKind kind;
  size_t a_index;
  size_t b_index;
};

// A shortest edit script (in order) turning `a` into `b`.
std::vector<Edit> DiffLines(const std::vector<std::string_view>& a,
                            const std::vector<std::string_view>& b);

// Unified diff of two texts with `context` lines of context, headed by
// "--- a_label" / "+++ b_label". Empty when the texts are equal. A last line
// without a newline is followed by "\ No newline at end of file".
std::string UnifiedDiff(std::string_view a, std::string_view b,
                        std::string_view a_label, std::string_view b_label,
                        size_t context = 3);

}  // namespace parley::ctl

#endif  // PARLEY_TOOLS_PARLEYCTL_DIFF_H_
