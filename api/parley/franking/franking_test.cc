// SPDX-License-Identifier: GPL-3.0-or-later
#include "api/parley/franking/franking.h"

#include <gtest/gtest.h>

namespace parley::franking {
namespace {

CommitInput Input(const std::string& content) {
  static std::string* keep = new std::string;
  *keep = content;
  CommitInput in;
  in.conversation_id = "c_1";
  in.sender_account_id = "a_sender";
  in.sender_device_id = 2;
  in.client_message_id = "m-1";
  in.sent_at_ms = 1700000000000;
  in.content_type = "text/plain";
  in.content = *keep;
  return in;
}

TEST(Franking, CommitIsDeterministicAndBindsEveryField) {
  const std::string key(kKeyBytes, 'k');
  auto c = Commit(key, Input("hello"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->size(), kCommitmentBytes);
  EXPECT_EQ(*c, *Commit(key, Input("hello")));
  EXPECT_NE(*c, *Commit(key, Input("hellO")));
  EXPECT_NE(*c, *Commit(std::string(kKeyBytes, 'K'), Input("hello")));
  CommitInput in = Input("hello");
  in.conversation_id = "c_2";
  EXPECT_NE(*c, *Commit(key, in));
  in = Input("hello");
  in.sender_device_id = 3;
  EXPECT_NE(*c, *Commit(key, in));
  in = Input("hello");
  in.sent_at_ms += 1;
  EXPECT_NE(*c, *Commit(key, in));
  in = Input("hello");
  in.client_message_id = "m-2";
  EXPECT_NE(*c, *Commit(key, in));
  in = Input("hello");
  in.content_type = "text/html";
  EXPECT_NE(*c, *Commit(key, in));
}

TEST(Franking, LengthPrefixesPreventFieldShifting) {
  const std::string key(kKeyBytes, 'k');
  CommitInput a = Input("x");
  a.conversation_id = "ab";
  a.sender_account_id = "c";
  CommitInput b = Input("x");
  b.conversation_id = "a";
  b.sender_account_id = "bc";
  EXPECT_NE(*Commit(key, a), *Commit(key, b));
}

TEST(Franking, RejectsBadKeysAndCommitments) {
  EXPECT_EQ(Commit("short", Input("x")).status().code(), absl::StatusCode::kInvalidArgument);
  StampInput s;
  s.commitment = "short";
  EXPECT_EQ(Stamp(std::string(32, 's'), s).status().code(), absl::StatusCode::kInvalidArgument);
  std::string c(kCommitmentBytes, 'c');
  s.commitment = c;
  EXPECT_EQ(Stamp("short key", s).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Franking, StampBindsMessageMetadata) {
  const std::string sk(32, 's');
  const std::string c(kCommitmentBytes, 'c');
  StampInput in;
  in.commitment = c;
  in.conversation_id = "c_1";
  in.sender_account_id = "a_sender";
  in.sender_device_id = 1;
  in.client_message_id = "m-1";
  in.seq = 7;
  in.server_time_ms = 1700000000001;
  auto s = Stamp(sk, in);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->size(), kStampBytes);
  StampInput other = in;
  other.seq = 8;
  EXPECT_NE(*s, *Stamp(sk, other));
  other = in;
  other.server_time_ms += 1;
  EXPECT_NE(*s, *Stamp(sk, other));
  other = in;
  other.sender_account_id = "a_other";
  EXPECT_NE(*s, *Stamp(sk, other));
  EXPECT_NE(*s, *Stamp(std::string(32, 't'), in));
}

TEST(Franking, KnownAnswer) {
  // Pins the construction: a change here breaks every client in the field.
  const std::string key(kKeyBytes, '\x01');
  auto c = Commit(key, Input("hello"));
  ASSERT_TRUE(c.ok());
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char ch : *c) {
    hex.push_back(kHex[ch >> 4]);
    hex.push_back(kHex[ch & 15]);
  }
  EXPECT_EQ(hex.size(), 64u);
  EXPECT_EQ(hex, "1b9ed9071e99a322e090a7d5b5a531372505c9baa1719cd69ac0ad04fd2f1e9a");
}

TEST(Franking, NewKeysAreFreshAndEqualIsExact) {
  auto a = NewKey();
  auto b = NewKey();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), kKeyBytes);
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(Equal("abc", "abc"));
  EXPECT_FALSE(Equal("abc", "abd"));
  EXPECT_FALSE(Equal("abc", "abcd"));
}

}  // namespace
}  // namespace parley::franking
