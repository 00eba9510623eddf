// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/ids.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace parley::core {
namespace {

TEST(Ids, FormatsAndUniqueness) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string a = NewAccountId(), c = NewConversationId(), t = NewToken();
    EXPECT_TRUE(ValidateAccountId(a, "x").ok()) << a;
    EXPECT_TRUE(ValidateConversationId(c, "x").ok()) << c;
    EXPECT_EQ(t.size(), 64u);
    EXPECT_TRUE(seen.insert(t).second);
  }
}

TEST(Ids, RejectsMalformedIds) {
  EXPECT_EQ(ValidateAccountId("", "account_id").code(), absl::StatusCode::kInvalidArgument);
  auto s = ValidateConversationId("c_XYZ", "conversation_id");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("conversation_id"), std::string::npos);
  EXPECT_FALSE(ValidateConversationId("a_0123456789abcdef01234567", "c").ok());
  EXPECT_FALSE(ValidateAccountId("a_0123456789ABCDEF01234567", "a").ok());
}

TEST(Ids, Usernames) {
  EXPECT_EQ(*CanonicalUsername("Alice_1", "u"), "alice_1");
  for (const char* bad : {"", "ab", "1abc", "a b c", "alice!", "ä-user",
                          "abcdefghijklmnopqrstuvwxyz0123456"}) {
    auto r = CanonicalUsername(bad, "username");
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("username"), std::string::npos);
  }
}

TEST(Ids, Utf8AndText) {
  EXPECT_TRUE(ValidateUtf8("héllo ✓ 😀", "t").ok());
  EXPECT_FALSE(ValidateUtf8("\xc3", "t").ok());          // truncated
  EXPECT_FALSE(ValidateUtf8("\xc0\xaf", "t").ok());      // overlong
  EXPECT_FALSE(ValidateUtf8("\xed\xa0\x80", "t").ok());  // surrogate
  EXPECT_FALSE(ValidateUtf8("\xff", "t").ok());
  EXPECT_FALSE(ValidateText("a\nb", 10, false, "t").ok());
  EXPECT_FALSE(ValidateText("", 10, false, "t").ok());
  EXPECT_TRUE(ValidateText("", 10, true, "t").ok());
  EXPECT_FALSE(ValidateText("0123456789a", 10, false, "t").ok());
}

TEST(Ids, ClientMessageIdRegionBearer) {
  EXPECT_TRUE(ValidateClientMessageId("m-1", "c").ok());
  EXPECT_FALSE(ValidateClientMessageId("", "c").ok());
  EXPECT_FALSE(ValidateClientMessageId("has space", "c").ok());
  EXPECT_FALSE(ValidateClientMessageId(std::string(65, 'x'), "c").ok());
  EXPECT_TRUE(ValidateRegionCode("DE", "r").ok());
  EXPECT_TRUE(ValidateRegionCode("", "r").ok());
  EXPECT_FALSE(ValidateRegionCode("de", "r").ok());
  EXPECT_FALSE(ValidateRegionCode("DEU", "r").ok());
  std::string t = NewToken();
  EXPECT_EQ(*ParseBearer("Bearer " + t), t);
  EXPECT_EQ(ParseBearer(t).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ParseBearer("Bearer abc").status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(Ids, Sha256KnownVector) {
  // FIPS 180-2: SHA-256("abc") and of the empty string.
  EXPECT_EQ(absl::BytesToHexString(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(absl::BytesToHexString(Sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Ids, Sha256FromManyThreadsAtOnce) {
  // The algorithm handle is fetched once, by whichever thread comes first.
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (absl::BytesToHexString(Sha256("abc")) !=
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") {
          ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace parley::core
