// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/scanner.h"

#include <gtest/gtest.h>

namespace parley::core {
namespace {

TEST(PatternScanner, SubstringsAndRegexesCaseInsensitive) {
  auto s = PatternScanner::Parse("# c\n\nspam: Cheap Pills\nscam: re:wire \\d+ dollars\n", "p.txt");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->size(), 2u);
  auto hit = (*s)->Scan("text/plain", "BUY cheap pills!!");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->label, "spam");
  hit = (*s)->Scan("", "please Wire 500 dollars");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->label, "scam");
  EXPECT_FALSE((*s)->Scan("text/plain", "hello").has_value());
  EXPECT_FALSE((*s)->Scan("image/png", "cheap pills").has_value());  // only text
}

TEST(PatternScanner, ErrorsNameFileAndLine) {
  auto bad = PatternScanner::Parse("ok: fine\nno colon here\n", "p.txt");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("p.txt:2:"), absl::string_view::npos) << bad.status();
  bad = PatternScanner::Parse("Bad Label: x\n", "p.txt");
  EXPECT_NE(bad.status().message().find("p.txt:1: label"), absl::string_view::npos) << bad.status();
  bad = PatternScanner::Parse("x: re:([a-z\n", "p.txt");
  EXPECT_NE(bad.status().message().find("invalid regular expression"), absl::string_view::npos) << bad.status();
  bad = PatternScanner::Parse("# only comments\n", "p.txt");
  EXPECT_FALSE(bad.ok());
  EXPECT_FALSE(PatternScanner::Load("/nonexistent/patterns").ok());
}

}  // namespace
}  // namespace parley::core
