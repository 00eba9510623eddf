// The automated content-scanning hook for server-readable (transport/opt-in)
// conversations, and Parley's one built-in scanner.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// parleyd calls the configured scanner on every accepted message of a
// conversation whose policy decision has `automated_scanning: true`; a hit
// files a report into the moderation queue (source SCANNER). Scanners never
// see E2EE conversations: parleyd has no content there to give them.
//
// Threading: Scan is called concurrently from request threads and must be
// thread-safe. Implementations must not log content.
#ifndef PARLEY_CORE_SCANNER_H_
#define PARLEY_CORE_SCANNER_H_

#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::core {

struct ScanHit {
  std::string label;  // what matched, safe to show staff (not the content)
};

class ContentScanner {
 public:
  virtual ~ContentScanner() = default;
  virtual std::string name() const = 0;
  virtual std::optional<ScanHit> Scan(absl::string_view content_type,
                                      absl::string_view content) const = 0;
};

// Patterns from a file, one per line:
//   # comment                 (ignored, as are blank lines)
//   LABEL: words to find      (case-insensitive substring)
//   LABEL: re:REGEX           (ECMAScript regular expression, case-insensitive)
// LABEL is [a-z0-9_.-]{1,64}. Only text/* content (or no content type) is
// scanned. Errors name the file and line.
class PatternScanner final : public ContentScanner {
 public:
  static absl::StatusOr<std::unique_ptr<PatternScanner>> Load(const std::string& path);
  static absl::StatusOr<std::unique_ptr<PatternScanner>> Parse(const std::string& content,
                                                               const std::string& file_name);
  std::string name() const override { return "patterns"; }
  std::optional<ScanHit> Scan(absl::string_view content_type,
                              absl::string_view content) const override;
  size_t size() const { return patterns_.size(); }

 private:
  struct Pattern {
    std::string label;
    std::string needle;             // lower-case substring, or
    std::optional<std::regex> re;   // a regular expression
  };
  PatternScanner() = default;
  std::vector<Pattern> patterns_;
};

}  // namespace parley::core

#endif  // PARLEY_CORE_SCANNER_H_
