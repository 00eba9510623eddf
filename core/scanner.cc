// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/scanner.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/tls.h"

namespace parley::core {
namespace {

bool ValidLabel(absl::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PatternScanner>> PatternScanner::Load(const std::string& path) {
  auto content = ReadFile(path);
  if (!content.ok()) return content.status();
  return Parse(*content, path);
}

absl::StatusOr<std::unique_ptr<PatternScanner>> PatternScanner::Parse(const std::string& content,
                                                                       const std::string& file_name) {
  std::unique_ptr<PatternScanner> s(new PatternScanner());
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const auto where = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(file_name, ":", line_no, ": ", what));
    };
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) return where("expected \"LABEL: pattern\"");
    absl::string_view label = absl::StripAsciiWhitespace(line.substr(0, colon));
    absl::string_view pattern = absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (!ValidLabel(label)) return where("label must be 1-64 of [a-z0-9_.-]");
    if (pattern.empty()) return where("empty pattern");
    Pattern p;
    p.label = std::string(label);
    if (absl::ConsumePrefix(&pattern, "re:")) {
      if (pattern.empty() || pattern.size() > 1000) return where("regular expression must be 1-1000 characters");
      try {
        p.re.emplace(std::string(pattern), std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
      } catch (const std::regex_error& e) {
        return where(absl::StrCat("invalid regular expression: ", e.what()));
      }
    } else {
      p.needle = absl::AsciiStrToLower(pattern);
    }
    s->patterns_.push_back(std::move(p));
  }
  if (s->patterns_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": no patterns"));
  }
  return s;
}

std::optional<ScanHit> PatternScanner::Scan(absl::string_view content_type, absl::string_view content) const {
  if (!content_type.empty() && !absl::StartsWith(content_type, "text/")) return std::nullopt;
  const std::string lower = absl::AsciiStrToLower(content);
  for (const Pattern& p : patterns_) {
    if (p.re.has_value()) {
      try {
        if (std::regex_search(lower.begin(), lower.end(), *p.re)) return ScanHit{p.label};
      } catch (const std::regex_error&) {
        continue;  // e.g. complexity limits: not a hit
      }
    } else if (absl::StrContains(lower, p.needle)) {
      return ScanHit{p.label};
    }
  }
  return std::nullopt;
}

}  // namespace parley::core
