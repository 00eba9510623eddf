// Unit tests of the SDK and the shared client helpers. No real server: the
// RPC behaviour is checked against an in-process fake on 127.0.0.1.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "clients/sdk/client.h"
#include "clients/sdk/display.h"
#include "clients/sdk/parse.h"
#include "clients/sdk/profile.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "parley/v1/parley.grpc.pb.h"

namespace parley {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::string TempDir() {
  std::string tmpl = absl::StrCat(
      ::testing::TempDir().empty() ? "/tmp" : ::testing::TempDir(),
      "/sdk_test.XXXXXX");
  char* d = ::mkdtemp(tmpl.data());
  EXPECT_NE(d, nullptr);
  return tmpl;
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// ------------------------------------------------------------- profile

TEST(ProfileTest, SaveLoadRoundTripWithPrivateModes) {
  const std::string home = TempDir();
  const std::string dir = home + "/profiles/alice";
  ::umask(022);
  Profile p;
  p.dir = dir;
  p.server = "127.0.0.1:7443";
  p.ca_file = "/var/parley/tls/ca.pem";
  p.account_id = "a_123";
  p.username = "alice";
  p.device_id = 7;
  p.device_token = std::string(64, 'f');
  ASSERT_TRUE(p.Save().ok());

  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(home + "/profiles"), 0700u);
  EXPECT_EQ(ModeOf(dir + "/credentials.json"), 0600u);

  auto loaded = Profile::Load(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->dir, dir);
  EXPECT_EQ(loaded->server, p.server);
  EXPECT_EQ(loaded->ca_file, p.ca_file);
  EXPECT_FALSE(loaded->insecure);
  EXPECT_EQ(loaded->account_id, "a_123");
  EXPECT_EQ(loaded->username, "alice");
  EXPECT_EQ(loaded->device_id, 7u);
  EXPECT_EQ(loaded->device_token, p.device_token);
  EXPECT_TRUE(loaded->registered());

  // Saving again keeps the modes, even after someone loosened the dir.
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  loaded->insecure = true;
  ASSERT_TRUE(loaded->Save().ok());
  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(dir + "/credentials.json"), 0600u);
  EXPECT_TRUE(Profile::Load(dir)->insecure);
}

TEST(ProfileTest, MissingIsNotFound) {
  auto loaded = Profile::Load(TempDir() + "/nope");
  EXPECT_TRUE(absl::IsNotFound(loaded.status())) << loaded.status();
}

TEST(ProfileTest, RefusesCredentialsReadableByOthers) {
  Profile p;
  p.dir = TempDir() + "/p";
  p.device_token = "secret";
  ASSERT_TRUE(p.Save().ok());
  ASSERT_EQ(::chmod(p.credentials_path().c_str(), 0644), 0);
  auto loaded = Profile::Load(p.dir);
  EXPECT_TRUE(absl::IsPermissionDenied(loaded.status())) << loaded.status();
  EXPECT_THAT(loaded.status().message(), HasSubstr("chmod 600"));
}

TEST(ProfileTest, MalformedIsInvalidArgument) {
  const std::string dir = TempDir();
  {
    std::ofstream out(dir + "/credentials.json");
    out << "{\"device_id\": \"seven\"}";
  }
  ::chmod((dir + "/credentials.json").c_str(), 0600);
  EXPECT_TRUE(absl::IsInvalidArgument(Profile::Load(dir).status()));
  {
    std::ofstream out(dir + "/credentials.json");
    out << "not json";
  }
  EXPECT_TRUE(absl::IsInvalidArgument(Profile::Load(dir).status()));
}

TEST(ProfileTest, DebugStringRedactsToken) {
  Profile p;
  p.username = "alice";
  p.device_token = "0123456789abcdef0123456789abcdef";
  const std::string s = p.DebugString();
  EXPECT_THAT(s, HasSubstr("alice"));
  EXPECT_THAT(s, HasSubstr("<redacted>"));
  EXPECT_THAT(s, ::testing::Not(HasSubstr("0123456789abcdef")));
}

TEST(ProfileTest, PinnedKeyAndRefuseDowngradeRoundTrip) {
  Profile p;
  p.dir = TempDir() + "/pinned";
  p.device_token = "t";
  ASSERT_TRUE(p.Save().ok());
  auto old = Profile::Load(p.dir);  // no key: no pinning
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_TRUE(old->server_signing_key.empty());
  EXPECT_FALSE(old->refuse_downgrade);
  p.server_signing_key = std::string(32, '\x07');
  p.server_key_id = "0123456789abcdef";
  p.refuse_downgrade = true;
  ASSERT_TRUE(p.Save().ok());
  auto loaded = Profile::Load(p.dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->server_signing_key, p.server_signing_key);
  EXPECT_EQ(loaded->server_key_id, "0123456789abcdef");
  EXPECT_TRUE(loaded->refuse_downgrade);
  {
    std::ofstream out(p.credentials_path());
    out << "{\"server_signing_key\": \"c2hvcnQ=\"}";
  }
  EXPECT_TRUE(absl::IsInvalidArgument(Profile::Load(p.dir).status()));
}

// ------------------------------------------------------ connect options

TEST(ConnectOptionsTest, InsecureOnlyForLoopback) {
  ConnectOptions o;
  o.insecure = true;
  for (const char* ok : {"127.0.0.1:7443", "localhost:1", "[::1]:7443",
                         "127.8.9.10:5", "dns:///localhost:7443",
                         "unix:/tmp/parley.sock"}) {
    o.server = ok;
    EXPECT_TRUE(ValidateConnectOptions(o).ok()) << ok;
  }
  for (const char* bad : {"example.com:7443", "10.0.0.1:7443", "[2001:db8::1]:1",
                          "0.0.0.0:7443", "localhost.evil.com:1",
                          "128.0.0.1:7443"}) {
    o.server = bad;
    absl::Status s = ValidateConnectOptions(o);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(s.message(), HasSubstr("non-loopback")) << bad;
  }
  o.server = "example.com:7443";
  auto client = Client::Create(Profile(), o);
  EXPECT_TRUE(absl::IsInvalidArgument(client.status()));
}

TEST(ConnectOptionsTest, TlsNeedsCaFile) {
  ConnectOptions o;
  o.server = "example.com:7443";
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateConnectOptions(o)));
  o.ca_file = "/nonexistent/ca.pem";
  EXPECT_TRUE(ValidateConnectOptions(o).ok());
  EXPECT_TRUE(absl::IsNotFound(Client::Create(Profile(), o).status()));
}

TEST(ConnectOptionsTest, KeepaliveInRange) {
  ConnectOptions o;
  o.ca_file = "/nonexistent/ca.pem";
  EXPECT_TRUE(ValidateConnectOptions(o).ok());  // the defaults: 30 s, 10 s
  o.keepalive_time = absl::ZeroDuration();      // off: the timeout is unused
  o.keepalive_timeout = absl::ZeroDuration();
  EXPECT_TRUE(ValidateConnectOptions(o).ok());
  o.keepalive_time = -absl::Seconds(1);
  absl::Status s = ValidateConnectOptions(o);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_THAT(s.message(), HasSubstr("keepalive_time -1s"));
  o.keepalive_time = absl::Hours(24 * 30);  // above gRPC's int milliseconds
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateConnectOptions(o)));
  o.keepalive_time = absl::Seconds(30);
  s = ValidateConnectOptions(o);  // timeout still 0
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_THAT(s.message(), HasSubstr("keepalive_timeout 0"));
  o.keepalive_timeout = absl::Milliseconds(1);
  EXPECT_TRUE(ValidateConnectOptions(o).ok());
}

TEST(ParseTest, TargetHostAndLoopback) {
  EXPECT_EQ(TargetHost("example.com:7443"), "example.com");
  EXPECT_EQ(TargetHost("[::1]:7443"), "::1");
  EXPECT_EQ(TargetHost("::1"), "::1");
  EXPECT_EQ(TargetHost("dns:///h:1"), "h");
  EXPECT_TRUE(IsLoopbackTarget("[::ffff:127.0.0.1]:1"));
  EXPECT_FALSE(IsLoopbackTarget("[::ffff:10.0.0.1]:1"));
}

// ---------------------------------------------------------- parsing

TEST(ParseTest, AccountKindAndAgeBand) {
  EXPECT_EQ(*ParseAccountKind("personal"), v1::ACCOUNT_KIND_PERSONAL);
  EXPECT_EQ(*ParseAccountKind("Business"), v1::ACCOUNT_KIND_BUSINESS);
  EXPECT_EQ(*ParseAccountKind("creator"), v1::ACCOUNT_KIND_CREATOR);
  EXPECT_EQ(*ParseAccountKind("bot"), v1::ACCOUNT_KIND_BOT);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseAccountKind("robot").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseAccountKind("").status()));
  EXPECT_EQ(*ParseAgeBand("minor"), v1::AGE_BAND_MINOR);
  EXPECT_EQ(*ParseAgeBand("ADULT"), v1::AGE_BAND_ADULT);
  EXPECT_EQ(*ParseAgeBand("unknown"), v1::AGE_BAND_UNKNOWN);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseAgeBand("teen").status()));
  EXPECT_STREQ(AccountKindName(v1::ACCOUNT_KIND_BOT), "bot");
  EXPECT_STREQ(AgeBandName(v1::AGE_BAND_MINOR), "minor");
  EXPECT_STREQ(SecurityModeName(v1::SECURITY_MODE_E2EE), "e2ee");
  EXPECT_STREQ(SecurityModeName(v1::SECURITY_MODE_OPT_IN), "opt-in");
  EXPECT_STREQ(ConversationKindName(v1::CONVERSATION_KIND_DIRECT), "direct");
}

TEST(ParseTest, Region) {
  EXPECT_EQ(*ParseRegionCode("de"), "DE");
  EXPECT_EQ(*ParseRegionCode(""), "");
  EXPECT_FALSE(ParseRegionCode("DEU").ok());
  EXPECT_FALSE(ParseRegionCode("1A").ok());
}

TEST(ParseTest, Usernames) {
  for (const char* ok : {"alice", "bob_2", "c.d-e", "abc",
                         "a234567890123456789012345678901"}) {
    EXPECT_TRUE(ValidateUsername(ok).ok()) << ok;
  }
  for (const char* bad : {"", "ab", "Alice", "1abc", "_abc", "al ice",
                          "al@ce", "a2345678901234567890123456789012x"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ValidateUsername(bad))) << bad;
  }
}

TEST(ParseTest, ProfileNames) {
  EXPECT_TRUE(ValidateProfileName("default").ok());
  EXPECT_TRUE(ValidateProfileName("Work-2.b_c").ok());
  for (const char* bad : {"", ".", "..", "../x", "a/b", ".hidden"}) {
    EXPECT_FALSE(ValidateProfileName(bad).ok()) << bad;
  }
}

TEST(ParseTest, SanitizeForTerminal) {
  EXPECT_EQ(SanitizeForTerminal("hello, w\xc3\xb6rld \xe2\x9c\x93"),
            "hello, w\xc3\xb6rld \xe2\x9c\x93");
  EXPECT_EQ(SanitizeForTerminal("a\x1b[31mred"), "a\\x1b[31mred");
  EXPECT_EQ(SanitizeForTerminal("two\nlines"), "two\\nlines");
  EXPECT_EQ(SanitizeForTerminal("\xc2\x9b" "2J"), "\\u009b2J");  // C1 CSI
  EXPECT_EQ(SanitizeForTerminal("bad\xff"), "bad\\xff");
}

TEST(ParseTest, ClientMessageIdsAreTimeOrderedRandomHex) {
  std::set<std::string> ids;
  const int64_t before_ms = absl::ToUnixMillis(absl::Now());
  for (int i = 0; i < 100; ++i) {
    const std::string id = NewClientMessageId();
    EXPECT_EQ(id.size(), 32u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
    ids.insert(id);
  }
  const int64_t after_ms = absl::ToUnixMillis(absl::Now());
  EXPECT_EQ(ids.size(), 100u);  // unique within one millisecond too
  for (const std::string& id : ids) {
    // The first 12 characters are the creation time in milliseconds.
    uint64_t ms = 0;
    ASSERT_TRUE(absl::SimpleHexAtoi(id.substr(0, 12), &ms)) << id;
    EXPECT_GE(static_cast<int64_t>(ms), before_ms) << id;
    EXPECT_LE(static_cast<int64_t>(ms), after_ms) << id;
  }
  // Ids made in later milliseconds sort after earlier ones.
  const std::string first = NewClientMessageId();
  absl::SleepFor(absl::Milliseconds(2));
  const std::string second = NewClientMessageId();
  EXPECT_LT(first, second);
  // The rest is random: two ids of one millisecond differ after the time.
  EXPECT_NE(ids.begin()->substr(12), std::next(ids.begin())->substr(12));
}

// ------------------------------------------------------------- display

std::string NameOf(absl::string_view id) {
  if (id == "a_alice") return "alice";
  if (id == "a_bob") return "bob";
  return std::string(id);
}

v1::Message PlainMessage(const std::string& text) {
  v1::Message m;
  m.set_conversation_id("c_ab12");
  m.set_seq(5);
  m.set_sender_account_id("a_alice");
  m.mutable_plain()->set_content(text);
  return m;
}

TEST(DisplayTest, PlainMessageIsMarkedServerReadable) {
  const v1::Message m = PlainMessage("hello");
  EXPECT_EQ(ProtectionOf(m), Protection::kTransport);
  EXPECT_EQ(FormatMessageLine(m, NameOf),
            "[c_ab12 #5] alice: hello   (not end-to-end encrypted \xe2\x80\x94 "
            "server can read)");
  const nlohmann::json j = MessageJson(m, NameOf);
  EXPECT_EQ(j["type"], "message");
  EXPECT_EQ(j["e2ee"], false);
  EXPECT_EQ(j["protection"], "transport");
  EXPECT_EQ(j["text"], "hello");
  EXPECT_EQ(j["sender"], "alice");
  EXPECT_EQ(j["seq"], 5);
  EXPECT_STREQ(ProtectionLabel(Protection::kTransport),
               "transport (server can read)");
}

TEST(DisplayTest, CiphertextIsMarkedEndToEnd) {
  v1::Message m = PlainMessage("");
  m.mutable_ciphertext()->set_ciphertext("\x01\x02");
  EXPECT_EQ(ProtectionOf(m), Protection::kEndToEnd);
  const std::string line = FormatMessageLine(m, NameOf);
  EXPECT_THAT(line, HasSubstr("(end-to-end encrypted)"));
  EXPECT_THAT(line, HasSubstr("cannot decrypt"));
  EXPECT_THAT(FormatMessageLine(m, NameOf, std::string("hi")),
              HasSubstr("alice: hi   (end-to-end encrypted)"));
  const nlohmann::json j = MessageJson(m, NameOf);
  EXPECT_EQ(j["e2ee"], true);
  EXPECT_EQ(j["protection"], "e2ee");
  EXPECT_TRUE(j["text"].is_null());
  EXPECT_STREQ(ProtectionLabel(Protection::kEndToEnd), "end-to-end encrypted");
}

// 2023-11-14T22:13:20Z
constexpr int64_t kT0 = 1700000000000;

v1::Message SecurityChangeMessage(v1::SecurityMode from, v1::SecurityMode to) {
  v1::Message m;
  m.set_conversation_id("c_ab12");
  m.set_seq(9);
  v1::SecurityChange* sc = m.mutable_security_change();
  sc->mutable_old_state()->set_mode(from);
  sc->mutable_old_state()->set_epoch(3);
  sc->mutable_new_state()->set_mode(to);
  sc->mutable_new_state()->set_epoch(4);
  return m;
}

TEST(DisplayTest, SameModeUpdateSaysWhatChangedNotAnUpgrade) {
  v1::Message m = SecurityChangeMessage(v1::SECURITY_MODE_E2EE,
                                        v1::SECURITY_MODE_E2EE);
  auto* p = m.mutable_security_change()->mutable_old_state()->mutable_pending();
  p->set_new_mode(v1::SECURITY_MODE_TRANSPORT);
  p->set_effective_at_ms(1767225600000);  // 2026-01-01T00:00:00Z
  m.mutable_security_change()->mutable_new_state()->set_locked(true);
  std::string block = FormatSecurityChange(m, NameOf);
  EXPECT_THAT(block, HasSubstr("*** SECURITY UPDATE in c_ab12"));
  EXPECT_THAT(block, HasSubstr("still END-TO-END ENCRYPTED"));
  EXPECT_THAT(block, Not(HasSubstr("SECURITY CHANGE")));
  EXPECT_THAT(block, HasSubstr("cancelled: the scheduled change to transport on 2026-01-01"));
  EXPECT_THAT(block, HasSubstr("locked: participants can no longer change"));
  EXPECT_THAT(block, Not(HasSubstr("WARNING")));
}

TEST(DisplayTest, SecurityChangeIsProminent) {
  v1::Message m = SecurityChangeMessage(v1::SECURITY_MODE_E2EE,
                                        v1::SECURITY_MODE_TRANSPORT);
  m.mutable_security_change()->set_reason("operator policy r7");
  EXPECT_EQ(ProtectionOf(m), Protection::kNone);
  const std::string line = FormatMessageLine(m, NameOf);
  EXPECT_THAT(line,
              HasSubstr("*** SECURITY CHANGE in c_ab12 (epoch 3 \xe2\x86\x92 "
                        "4): e2ee \xe2\x86\x92 TRANSPORT ONLY (server can "
                        "read)"));
  EXPECT_THAT(line, HasSubstr("reason: operator policy r7"));
  EXPECT_EQ(line, FormatSecurityChange(m, NameOf));
  const nlohmann::json j = MessageJson(m, NameOf);
  EXPECT_EQ(j["type"], "security_change");
  EXPECT_EQ(j["old_mode"], "e2ee");
  EXPECT_EQ(j["new_mode"], "transport");
  EXPECT_EQ(j["e2ee"], false);
}

TEST(DisplayTest, SecurityChangeUpgradeBlock) {
  v1::Message m = SecurityChangeMessage(v1::SECURITY_MODE_TRANSPORT,
                                        v1::SECURITY_MODE_E2EE);
  v1::SecurityChange* sc = m.mutable_security_change();
  sc->set_effective_at_ms(kT0);
  v1::SecurityState* ns = sc->mutable_new_state();
  ns->set_reason("both participants turned on end-to-end encryption");
  ns->set_rule_id("opt-in-direct");
  ns->set_policy_revision("rev-12");
  ns->set_set_by_participants(true);
  ns->set_notice("Messages here are now end-to-end encrypted.");
  EXPECT_TRUE(IsSecurityUpgrade(*sc));
  EXPECT_FALSE(IsSecurityDowngrade(*sc));
  EXPECT_EQ(FormatMessageLine(m, NameOf),
            "*** SECURITY CHANGE in c_ab12 (epoch 3 \xe2\x86\x92 4): transport "
            "\xe2\x86\x92 END-TO-END ENCRYPTED\n"
            "    reason: both participants turned on end-to-end encryption\n"
            "    decided by: rule opt-in-direct, policy revision rev-12 "
            "(participants' consent)\n"
            "    effective: 2023-11-14T22:13:20Z (message #9)\n"
            "    notice: Messages here are now end-to-end encrypted.");

  const nlohmann::json j = MessageJson(m, NameOf);
  EXPECT_EQ(j["new_mode"], "e2ee");
  EXPECT_EQ(j["e2ee"], true);
  EXPECT_EQ(j["upgrade"], true);
  EXPECT_EQ(j["downgrade"], false);
  EXPECT_TRUE(j["warning"].is_null());
  EXPECT_EQ(j["old_epoch"], 3);
  EXPECT_EQ(j["epoch"], 4);
  EXPECT_EQ(j["effective_at_ms"], kT0);
  EXPECT_EQ(j["rule_id"], "opt-in-direct");
  EXPECT_EQ(j["policy_revision"], "rev-12");
  EXPECT_EQ(j["notice"], "Messages here are now end-to-end encrypted.");
  EXPECT_EQ(j["set_by_participants"], true);
  EXPECT_TRUE(j["enable_requested_by"].is_array());
  EXPECT_TRUE(j["enable_requested_by"].empty());
  EXPECT_TRUE(j["pending"].is_null());
  EXPECT_EQ(j["new_state"]["notice"],
            "Messages here are now end-to-end encrypted.");
  EXPECT_EQ(j["new_state"]["set_by_participants"], true);
  EXPECT_EQ(j["old_state"]["mode"], "transport");
}

TEST(DisplayTest, SecurityDowngradeCarriesLoudWarning) {
  v1::Message m = SecurityChangeMessage(v1::SECURITY_MODE_E2EE,
                                        v1::SECURITY_MODE_OPT_IN);
  v1::SecurityState* ns = m.mutable_security_change()->mutable_new_state();
  ns->set_reason("operator switched the region to server-readable");
  ns->set_rule_id("region-xx");
  ns->set_effective_at_ms(kT0);
  EXPECT_TRUE(IsSecurityDowngrade(m.security_change()));
  const std::string block = FormatMessageLine(m, NameOf);
  const std::vector<std::string> lines = absl::StrSplit(block, '\n');
  ASSERT_GE(lines.size(), 4u);
  EXPECT_EQ(lines[0],
            "*** SECURITY CHANGE in c_ab12 (epoch 3 \xe2\x86\x92 4): e2ee "
            "\xe2\x86\x92 OPT-IN, NOT END-TO-END ENCRYPTED (server can read)");
  // The warning comes right after the headline.
  EXPECT_EQ(lines[1],
            "!!! WARNING: messages in this conversation will no longer be "
            "end-to-end encrypted; the server can read them");
  EXPECT_THAT(block, HasSubstr("    decided by: rule region-xx\n"));
  EXPECT_THAT(block, HasSubstr("    effective: 2023-11-14T22:13:20Z"));
  EXPECT_THAT(block, ::testing::Not(HasSubstr("notice:")));

  const nlohmann::json j = MessageJson(m, NameOf);
  EXPECT_EQ(j["downgrade"], true);
  EXPECT_EQ(j["upgrade"], false);
  EXPECT_EQ(j["warning"], std::string(kDowngradeWarning));
  EXPECT_EQ(j["effective_at_ms"], kT0);  // from the new state

  // Not a downgrade: transport -> opt-in has no warning.
  v1::Message side = SecurityChangeMessage(v1::SECURITY_MODE_TRANSPORT,
                                           v1::SECURITY_MODE_OPT_IN);
  EXPECT_THAT(FormatMessageLine(side, NameOf),
              ::testing::Not(HasSubstr("WARNING")));
  EXPECT_EQ(MessageJson(side, NameOf)["downgrade"], false);
}

TEST(DisplayTest, SecurityChangeShowsScheduleAndRequests) {
  v1::Message m = SecurityChangeMessage(v1::SECURITY_MODE_OPT_IN,
                                        v1::SECURITY_MODE_E2EE);
  v1::SecurityState* ns = m.mutable_security_change()->mutable_new_state();
  v1::PendingSecurityChange* p = ns->mutable_pending();
  p->set_new_mode(v1::SECURITY_MODE_TRANSPORT);
  p->set_effective_at_ms(kT0 + 86400000);
  p->set_reason("new regulation");
  p->set_rule_id("reg-1");
  p->set_policy_revision("rev-13");
  ns->add_disable_requested_by("a_bob");
  const std::string block = FormatMessageLine(m, NameOf);
  EXPECT_THAT(block, HasSubstr("\n    scheduled: will become transport on "
                               "2023-11-15T22:13:20Z (new regulation)"));
  EXPECT_THAT(block, HasSubstr("\n!!! WARNING: end-to-end encryption is "
                               "scheduled to end on 2023-11-15T22:13:20Z"));
  EXPECT_THAT(block, HasSubstr("\n    E2EE off requested by: bob (waiting "
                               "for the others)"));
  // No effective time: the message number still shows.
  EXPECT_THAT(block, HasSubstr("\n    message: #9"));
  // The change itself is an upgrade: no downgrade warning.
  EXPECT_THAT(block, ::testing::Not(HasSubstr("will no longer be")));

  const nlohmann::json j = MessageJson(m, NameOf);
  ASSERT_TRUE(j["pending"].is_object());
  EXPECT_EQ(j["pending"]["new_mode"], "transport");
  EXPECT_EQ(j["pending"]["effective_at_ms"], kT0 + 86400000);
  EXPECT_EQ(j["pending"]["reason"], "new regulation");
  EXPECT_EQ(j["pending"]["rule_id"], "reg-1");
  EXPECT_EQ(j["pending"]["policy_revision"], "rev-13");
  EXPECT_EQ(j["disable_requested_by"], nlohmann::json::array({"a_bob"}));
  EXPECT_EQ(j["new_state"]["pending"]["new_mode"], "transport");
}

TEST(DisplayTest, SecurityChangeTextIsSanitised) {
  v1::Message m = SecurityChangeMessage(v1::SECURITY_MODE_TRANSPORT,
                                        v1::SECURITY_MODE_E2EE);
  m.set_conversation_id("c_\x1b[2J");
  v1::SecurityState* ns = m.mutable_security_change()->mutable_new_state();
  ns->set_notice("line one\nfake *** SECURITY CHANGE");
  ns->set_rule_id("r\x07");
  const std::string block = FormatMessageLine(m, NameOf);
  EXPECT_THAT(block, HasSubstr("in c_\\x1b[2J (epoch"));
  EXPECT_THAT(block, HasSubstr("notice: line one\\nfake *** SECURITY CHANGE"));
  EXPECT_THAT(block, HasSubstr("rule r\\x07"));
  // Old state without an epoch: only the new one is shown.
  m.mutable_security_change()->mutable_old_state()->set_epoch(0);
  EXPECT_THAT(FormatMessageLine(m, NameOf), HasSubstr("(epoch 4): transport"));
}

TEST(DisplayTest, SecurityJsonHasAllFields) {
  v1::SecurityState s;
  s.set_mode(v1::SECURITY_MODE_OPT_IN);
  s.set_epoch(2);
  s.set_notice("You can turn on end-to-end encryption.");
  s.add_enable_requested_by("a_alice");
  const nlohmann::json j = SecurityJson(s);
  EXPECT_EQ(j["mode"], "opt-in");
  EXPECT_EQ(j["e2ee"], false);
  EXPECT_EQ(j["notice"], "You can turn on end-to-end encryption.");
  EXPECT_EQ(j["set_by_participants"], false);
  EXPECT_EQ(j["enable_requested_by"], nlohmann::json::array({"a_alice"}));
  EXPECT_EQ(j["disable_requested_by"], nlohmann::json::array());
  ASSERT_TRUE(j.contains("pending"));
  EXPECT_TRUE(j["pending"].is_null());
  EXPECT_TRUE(PendingSecurityJson(s).is_null());
}

TEST(DisplayTest, DescribeSecurityShowsRuleReasonAndRequests) {
  v1::SecurityState s;
  s.set_mode(v1::SECURITY_MODE_OPT_IN);
  s.set_epoch(1);
  s.set_reason("direct chats are opt-in");
  s.set_rule_id("opt-in-direct");
  s.set_policy_revision("rev-12");
  EXPECT_EQ(DescribeSecurity(s),
            "opt-in (not end-to-end encrypted yet \xe2\x80\x94 server can "
            "read; E2EE can be turned on) \xe2\x80\x94 reason: direct chats "
            "are opt-in [rule opt-in-direct, policy revision rev-12, epoch "
            "1]");
  EXPECT_EQ(DescribeConsentRequests(s, 2), "");

  s.add_enable_requested_by("a_alice");
  EXPECT_THAT(DescribeSecurity(s, 2),
              HasSubstr("epoch 1]; E2EE requested by 1 of 2"));
  EXPECT_EQ(DescribeConsentRequests(s, 3), "E2EE requested by 1 of 3");
  EXPECT_EQ(DescribeConsentRequests(s), "E2EE requested by 1");
  s.add_disable_requested_by("a_bob");
  EXPECT_EQ(DescribeConsentRequests(s, 2),
            "E2EE requested by 1 of 2; E2EE off requested by 1 of 2");

  v1::SecurityState e;
  e.set_mode(v1::SECURITY_MODE_E2EE);
  e.set_epoch(2);
  e.set_set_by_participants(true);
  e.mutable_pending()->set_new_mode(v1::SECURITY_MODE_TRANSPORT);
  e.mutable_pending()->set_effective_at_ms(kT0);
  EXPECT_EQ(DescribeSecurity(e),
            "e2ee (end-to-end encrypted) [epoch 2, set by participants]; "
            "PENDING change to transport at 2023-11-14T22:13:20Z");
  EXPECT_EQ(SecurityDecidedBy(e), "participants' consent");
  EXPECT_EQ(SecurityDecidedBy(v1::SecurityState()), "");

  // The conversation list passes the member count.
  v1::Conversation c;
  c.set_conversation_id("c_9");
  c.set_kind(v1::CONVERSATION_KIND_DIRECT);
  c.add_members()->set_account_id("a_alice");
  c.add_members()->set_account_id("a_bob");
  *c.mutable_security() = s;
  EXPECT_THAT(FormatConversationLine(c, "a_alice"),
              HasSubstr("E2EE requested by 1 of 2"));
  EXPECT_THAT(FormatConversationLine(c, "a_alice"),
              HasSubstr("reason: direct chats are opt-in"));
}

TEST(DisplayTest, MembershipChangeAndEscaping) {
  v1::Message m;
  m.set_conversation_id("c_1");
  m.set_seq(2);
  v1::MembershipChange* mc = m.mutable_membership_change();
  mc->set_action(v1::MembershipChange::ACTION_ADDED);
  mc->add_account_ids("a_bob");
  mc->set_by_account_id("a_alice");
  EXPECT_EQ(FormatMessageLine(m, NameOf), "--- [c_1 #2] alice added bob");
  EXPECT_EQ(MessageJson(m, NameOf)["accounts"][0], "bob");
  mc->set_action(v1::MembershipChange::ACTION_CREATED);
  mc->add_account_ids("a_alice");
  EXPECT_EQ(FormatMessageLine(m, NameOf),
            "--- [c_1 #2] alice created the conversation with bob");

  const v1::Message evil = PlainMessage("\x1b]0;pwned\x07");
  EXPECT_THAT(FormatMessageLine(evil, NameOf), HasSubstr("\\x1b]0;pwned\\x07"));
  // JSON keeps the text as is (escaped by JSON) and never throws.
  const v1::Message bad = PlainMessage("\xff\xfe");
  EXPECT_FALSE(JsonLine(MessageJson(bad, NameOf)).empty());
}

TEST(DisplayTest, ConversationLine) {
  v1::Conversation c;
  c.set_conversation_id("c_9");
  c.set_kind(v1::CONVERSATION_KIND_DIRECT);
  auto* a = c.add_members();
  a->set_account_id("a_alice");
  a->set_username("alice");
  auto* b = c.add_members();
  b->set_account_id("a_bob");
  b->set_username("bob");
  c.mutable_security()->set_mode(v1::SECURITY_MODE_TRANSPORT);
  c.mutable_security()->set_reason("default policy");
  const std::string line = FormatConversationLine(c, "a_alice");
  EXPECT_THAT(line, HasSubstr("c_9  direct  @bob  members: alice, bob"));
  EXPECT_THAT(line, HasSubstr("mode: transport (not end-to-end encrypted \xe2\x80\x94 "
                              "server can read)"));
  EXPECT_THAT(line, HasSubstr("reason: default policy"));
  EXPECT_EQ(ConversationJson(c)["mode"], "transport");
}

// ------------------------------------------------- fake server tests

constexpr char kToken[] =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

bool Authorized(grpc::ServerContext* ctx) {
  auto it = ctx->client_metadata().find("authorization");
  return it != ctx->client_metadata().end() &&
         std::string(it->second.data(), it->second.size()) ==
             absl::StrCat("Bearer ", kToken);
}

struct FakeState {
  absl::Mutex mu;
  std::map<std::string, v1::SecurityMode> modes;
  std::vector<v1::SendRequest> sends;
  int send_failures_left = 0;  // UNAVAILABLE before success
  grpc::StatusCode send_error = grpc::StatusCode::OK;
  std::set<uint64_t> acked;
  int receive_calls = 0;
  uint32_t receive_max_batch = 0;  // of the last Receive
  std::atomic<bool> unauthorized{false};
  std::vector<v1::RequestSecurityChangeRequest> security_requests;
};

v1::Envelope MakeEnvelope(uint64_t id) {
  v1::Envelope e;
  e.set_delivery_id(id);
  v1::Message* m = e.mutable_message();
  m->set_conversation_id("c_t");
  m->set_seq(id);
  m->set_sender_account_id("a_bob");
  m->mutable_plain()->set_content(absl::StrCat("m", id));
  return e;
}

class FakeAccounts final : public v1::AccountService::Service {
 public:
  grpc::Status CreateAccount(grpc::ServerContext*,
                             const v1::CreateAccountRequest* req,
                             v1::CreateAccountResponse* resp) override {
    resp->mutable_account()->set_account_id("a_" + req->username());
    resp->mutable_account()->set_username(req->username());
    resp->mutable_device()->set_device_id(1);
    resp->set_device_token(kToken);
    return grpc::Status::OK;
  }
};

class FakeConversations final : public v1::ConversationService::Service {
 public:
  explicit FakeConversations(FakeState* s) : s_(s) {}
  grpc::Status GetConversation(grpc::ServerContext* ctx,
                               const v1::GetConversationRequest* req,
                               v1::GetConversationResponse* resp) override {
    if (!Authorized(ctx)) {
      s_->unauthorized = true;
      return {grpc::StatusCode::UNAUTHENTICATED, "bad token"};
    }
    absl::MutexLock l(&s_->mu);
    auto it = s_->modes.find(req->conversation_id());
    if (it == s_->modes.end()) {
      return {grpc::StatusCode::NOT_FOUND,
              absl::StrCat("conversation ", req->conversation_id(),
                           " not found")};
    }
    v1::Conversation* c = resp->mutable_conversation();
    c->set_conversation_id(req->conversation_id());
    c->set_kind(v1::CONVERSATION_KIND_DIRECT);
    c->mutable_security()->set_mode(it->second);
    c->mutable_security()->set_epoch(1);
    return grpc::Status::OK;
  }

  // c_locked: the policy refuses. c_consent: recorded, 1 of 2 asked. Any
  // other known conversation switches (epoch 2).
  grpc::Status RequestSecurityChange(
      grpc::ServerContext* ctx, const v1::RequestSecurityChangeRequest* req,
      v1::RequestSecurityChangeResponse* resp) override {
    if (!Authorized(ctx)) {
      s_->unauthorized = true;
      return {grpc::StatusCode::UNAUTHENTICATED, "bad token"};
    }
    absl::MutexLock l(&s_->mu);
    s_->security_requests.push_back(*req);
    const std::string& id = req->conversation_id();
    if (id == "c_locked") {
      return {grpc::StatusCode::FAILED_PRECONDITION,
              "rule business-transport of policy revision rev-3 does not let "
              "participants change the mode"};
    }
    auto it = s_->modes.find(id);
    if (it == s_->modes.end()) {
      return {grpc::StatusCode::NOT_FOUND,
              absl::StrCat("conversation ", id, " not found")};
    }
    v1::SecurityState* st = resp->mutable_state();
    if (id == "c_consent") {
      st->set_mode(it->second);
      st->set_epoch(1);
      st->add_enable_requested_by("a_alice");
      resp->set_pending_consent(true);
      resp->set_consents(1);
      resp->set_consents_required(2);
      return grpc::Status::OK;
    }
    it->second = req->requested_mode() == v1::SECURITY_MODE_E2EE
                     ? v1::SECURITY_MODE_E2EE
                     : v1::SECURITY_MODE_TRANSPORT;
    st->set_mode(it->second);
    st->set_epoch(2);
    st->set_set_by_participants(true);
    st->set_notice("mode changed by the participants");
    resp->set_consents(2);
    resp->set_consents_required(2);
    return grpc::Status::OK;
  }

 private:
  FakeState* s_;
};

// Receive: the first stream delivers 1..3 then breaks with UNAVAILABLE; later
// streams redeliver everything unacked from 1..4, then stay open.
class FakeMessaging final : public v1::MessagingService::Service {
 public:
  explicit FakeMessaging(FakeState* s) : s_(s) {}
  grpc::Status Send(grpc::ServerContext* ctx, const v1::SendRequest* req,
                    v1::SendResponse* resp) override {
    if (!Authorized(ctx)) {
      s_->unauthorized = true;
      return {grpc::StatusCode::UNAUTHENTICATED, "bad token"};
    }
    absl::MutexLock l(&s_->mu);
    s_->sends.push_back(*req);
    if (s_->send_error != grpc::StatusCode::OK) {
      return {s_->send_error, "conversation c_t is closed"};
    }
    if (s_->send_failures_left > 0) {
      --s_->send_failures_left;
      return {grpc::StatusCode::UNAVAILABLE, "try again"};
    }
    resp->set_seq(s_->sends.size());
    return grpc::Status::OK;
  }
  grpc::Status Ack(grpc::ServerContext*, const v1::AckRequest* req,
                   v1::AckResponse* resp) override {
    absl::MutexLock l(&s_->mu);
    for (uint64_t id : req->delivery_ids()) s_->acked.insert(id);
    resp->set_removed(req->delivery_ids_size());
    return grpc::Status::OK;
  }
  grpc::Status Receive(grpc::ServerContext* ctx, const v1::ReceiveRequest* req,
                       grpc::ServerWriter<v1::ReceiveResponse>* w) override {
    int call;
    std::set<uint64_t> acked;
    {
      absl::MutexLock l(&s_->mu);
      call = ++s_->receive_calls;
      acked = s_->acked;
      s_->receive_max_batch = req->max_batch();
    }
    v1::ReceiveResponse r;
    if (call == 1) {
      for (uint64_t id = 1; id <= 3; ++id) {
        *r.mutable_envelope() = MakeEnvelope(id);
        w->Write(r);
      }
      absl::SleepFor(absl::Milliseconds(50));
      return {grpc::StatusCode::UNAVAILABLE, "server restarting"};
    }
    // After the reconnect the backlog comes as one batch when the client
    // allows batches (ReceiveRequest.max_batch), as parleyd sends it.
    for (uint64_t id = 1; id <= 4; ++id) {
      if (acked.contains(id)) continue;
      if (req->max_batch() > 1) {
        *r.mutable_batch()->add_envelopes() = MakeEnvelope(id);
      } else {
        *r.mutable_envelope() = MakeEnvelope(id);
        w->Write(r);
      }
    }
    if (r.has_batch()) w->Write(r);
    r.mutable_backlog_drained()->set_last_delivery_id(4);
    w->Write(r);
    while (!ctx->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
    return grpc::Status::CANCELLED;
  }

 private:
  FakeState* s_;
};

class FakeServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port_);
    b.RegisterService(&accounts_);
    b.RegisterService(&conversations_);
    b.RegisterService(&messaging_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    dir_ = TempDir() + "/profile";
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(1));
  }

  ConnectOptions Options() {
    ConnectOptions o;
    o.server = absl::StrCat("127.0.0.1:", port_);
    o.insecure = true;
    o.deadline = absl::Seconds(5);
    o.send_initial_backoff = absl::Milliseconds(5);
    return o;
  }
  Profile RegisteredProfile() {
    Profile p;
    p.dir = dir_;
    p.account_id = "a_alice";
    p.username = "alice";
    p.device_id = 1;
    p.device_token = kToken;
    return p;
  }
  std::unique_ptr<Client> NewClient(Profile p) {
    auto c = Client::Create(std::move(p), Options());
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  FakeState state_;
  FakeAccounts accounts_;
  FakeConversations conversations_{&state_};
  FakeMessaging messaging_{&state_};
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string dir_;
};

TEST_F(FakeServerTest, RegisterSavesCredentials) {
  Profile p;
  p.dir = dir_;
  auto client = NewClient(p);
  v1::AccountAttributes attrs;
  attrs.set_kind(v1::ACCOUNT_KIND_BOT);
  auto reg = client->Register("alice", "Alice", attrs, "laptop");
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_EQ(reg->account.username(), "alice");
  auto loaded = Profile::Load(dir_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->device_token, kToken);
  EXPECT_EQ(loaded->account_id, "a_alice");
  EXPECT_EQ(loaded->server, Options().server);
  EXPECT_TRUE(loaded->insecure);
  EXPECT_EQ(ModeOf(dir_ + "/credentials.json"), 0600u);
  // A registered profile is not registered twice.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      client->Register("alice2", "", attrs, "").status()));
}

TEST_F(FakeServerTest, UnregisteredProfileCannotCallAuthenticatedRpcs) {
  Profile p;
  p.dir = dir_;
  auto client = NewClient(p);
  auto sent = client->Send("c_t", "hi");
  EXPECT_TRUE(absl::IsFailedPrecondition(sent.status())) << sent.status();
  EXPECT_TRUE(absl::IsFailedPrecondition(client->Receive().status()));
}

TEST_F(FakeServerTest, SendRetriesTheSameIdOnUnavailable) {
  {
    absl::MutexLock l(&state_.mu);
    state_.modes["c_t"] = v1::SECURITY_MODE_TRANSPORT;
    state_.send_failures_left = 2;
  }
  auto client = NewClient(RegisteredProfile());
  auto sent = client->Send("c_t", "hello");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->attempts, 3);
  EXPECT_EQ(sent->protection, Protection::kTransport);
  EXPECT_EQ(sent->client_message_id.size(), 32u);
  absl::MutexLock l(&state_.mu);
  ASSERT_EQ(state_.sends.size(), 3u);
  for (const v1::SendRequest& r : state_.sends) {
    EXPECT_EQ(r.client_message_id(), sent->client_message_id);
    EXPECT_EQ(r.body().plain().content(), "hello");
  }
  EXPECT_FALSE(state_.unauthorized);
}

TEST_F(FakeServerTest, SendGivesUpAfterBoundedAttempts) {
  {
    absl::MutexLock l(&state_.mu);
    state_.modes["c_t"] = v1::SECURITY_MODE_TRANSPORT;
    state_.send_failures_left = 100;
  }
  auto client = NewClient(RegisteredProfile());
  auto sent = client->Send("c_t", "hello", "my-id-1");
  EXPECT_TRUE(absl::IsUnavailable(sent.status())) << sent.status();
  EXPECT_THAT(sent.status().message(), HasSubstr("try again"));
  absl::MutexLock l(&state_.mu);
  EXPECT_EQ(state_.sends.size(), 5u);
  EXPECT_EQ(state_.sends.back().client_message_id(), "my-id-1");
}

TEST_F(FakeServerTest, ServerErrorsKeepCodeAndMessage) {
  {
    absl::MutexLock l(&state_.mu);
    state_.modes["c_t"] = v1::SECURITY_MODE_TRANSPORT;
    state_.send_error = grpc::StatusCode::PERMISSION_DENIED;
  }
  auto client = NewClient(RegisteredProfile());
  auto sent = client->Send("c_t", "x");
  EXPECT_TRUE(absl::IsPermissionDenied(sent.status()));
  EXPECT_EQ(sent.status().message(), "Send: conversation c_t is closed");
  {
    absl::MutexLock l(&state_.mu);
    EXPECT_EQ(state_.sends.size(), 1u);  // not retried
  }
  auto missing = client->GetConversation("c_none");
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_EQ(missing.status().message(),
            "GetConversation: conversation c_none not found");
  EXPECT_TRUE(absl::IsInvalidArgument(client->Send("c_t", "x", "").status()));
}

TEST_F(FakeServerTest, NeverSendsPlaintextIntoE2ee) {
  {
    absl::MutexLock l(&state_.mu);
    state_.modes["c_e"] = v1::SECURITY_MODE_E2EE;
  }
  {
    auto client = NewClient(RegisteredProfile());
    auto sent = client->Send("c_e", "secret");
    EXPECT_TRUE(absl::IsUnimplemented(sent.status())) << sent.status();
    EXPECT_EQ(sent.status().message(),
              "this conversation is end-to-end encrypted: plaintext is never "
              "sent into it, and this client cannot encrypt (it has no "
              "end-to-end encryption engine)");
    EXPECT_TRUE(client->SeenAsE2ee("c_e"));
  }
  // The server now claims transport mode: this profile saw E2EE, so a new
  // client (another process) still refuses plaintext.
  {
    absl::MutexLock l(&state_.mu);
    state_.modes["c_e"] = v1::SECURITY_MODE_TRANSPORT;
  }
  auto client = NewClient(RegisteredProfile());
  auto sent = client->Send("c_e", "secret");
  EXPECT_TRUE(absl::IsFailedPrecondition(sent.status())) << sent.status();
  EXPECT_THAT(sent.status().message(), HasSubstr("refusing to send plaintext"));
  absl::MutexLock l(&state_.mu);
  EXPECT_TRUE(state_.sends.empty());
}

TEST_F(FakeServerTest, EnableE2eeSwitchesAndIsSticky) {
  {
    absl::MutexLock l(&state_.mu);
    state_.modes["c_o"] = v1::SECURITY_MODE_OPT_IN;
  }
  {
    auto client = NewClient(RegisteredProfile());
    EXPECT_FALSE(client->SeenAsE2ee("c_o"));
    auto r = client->EnableE2ee("c_o");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->conversation_id, "c_o");
    EXPECT_EQ(r->requested_mode, v1::SECURITY_MODE_E2EE);
    EXPECT_TRUE(r->in_effect);
    EXPECT_FALSE(r->pending_consent);
    EXPECT_EQ(r->state.mode(), v1::SECURITY_MODE_E2EE);
    EXPECT_EQ(r->state.epoch(), 2u);
    EXPECT_EQ(r->state.notice(), "mode changed by the participants");
    EXPECT_EQ(r->consents, 2u);
    EXPECT_EQ(r->consents_required, 2u);
    EXPECT_TRUE(client->SeenAsE2ee("c_o"));
    // The cached state is E2EE: no plaintext, even without a fresh fetch.
    auto sent = client->Send("c_o", "secret");
    EXPECT_TRUE(absl::IsUnimplemented(sent.status())) << sent.status();
  }
  // Remembered in the profile directory: another process knows it too, and
  // asking to turn E2EE off does not make plaintext acceptable.
  auto client = NewClient(RegisteredProfile());
  EXPECT_TRUE(client->SeenAsE2ee("c_o"));
  auto off = client->RequestSecurityChange("c_o", v1::SECURITY_MODE_TRANSPORT);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_TRUE(off->in_effect);
  EXPECT_EQ(off->state.mode(), v1::SECURITY_MODE_TRANSPORT);
  auto sent = client->Send("c_o", "secret");
  EXPECT_TRUE(absl::IsFailedPrecondition(sent.status())) << sent.status();
  absl::MutexLock l(&state_.mu);
  ASSERT_EQ(state_.security_requests.size(), 2u);
  EXPECT_EQ(state_.security_requests[0].conversation_id(), "c_o");
  EXPECT_EQ(state_.security_requests[0].requested_mode(),
            v1::SECURITY_MODE_E2EE);
  EXPECT_EQ(state_.security_requests[1].requested_mode(),
            v1::SECURITY_MODE_TRANSPORT);
  EXPECT_TRUE(state_.sends.empty());
  EXPECT_FALSE(state_.unauthorized);
}

TEST_F(FakeServerTest, RequestSecurityChangePendingConsent) {
  {
    absl::MutexLock l(&state_.mu);
    state_.modes["c_consent"] = v1::SECURITY_MODE_OPT_IN;
  }
  auto client = NewClient(RegisteredProfile());
  auto r = client->EnableE2ee("c_consent");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->in_effect);
  EXPECT_TRUE(r->pending_consent);
  EXPECT_EQ(r->consents, 1u);
  EXPECT_EQ(r->consents_required, 2u);
  EXPECT_EQ(r->state.mode(), v1::SECURITY_MODE_OPT_IN);
  EXPECT_THAT(r->state.enable_requested_by(), ElementsAre("a_alice"));
  EXPECT_FALSE(client->SeenAsE2ee("c_consent"));
}

TEST_F(FakeServerTest, RequestSecurityChangeErrors) {
  auto client = NewClient(RegisteredProfile());
  auto refused = client->EnableE2ee("c_locked");
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_EQ(refused.status().message(),
            "RequestSecurityChange: rule business-transport of policy "
            "revision rev-3 does not let participants change the mode");
  auto missing = client->EnableE2ee("c_none");
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_EQ(missing.status().message(),
            "RequestSecurityChange: conversation c_none not found");
  // Validated locally, never sent.
  EXPECT_TRUE(absl::IsInvalidArgument(client->EnableE2ee("").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      client->RequestSecurityChange("c_o", v1::SECURITY_MODE_UNSPECIFIED)
          .status()));
  {
    absl::MutexLock l(&state_.mu);
    EXPECT_EQ(state_.security_requests.size(), 2u);
  }
  // Unregistered profiles fail before the network.
  Profile p;
  p.dir = dir_ + "-unregistered";
  auto anon = NewClient(p);
  EXPECT_TRUE(absl::IsFailedPrecondition(anon->EnableE2ee("c_o").status()));
}

TEST_F(FakeServerTest, ReceiveReconnectsDedupsAndAutoAcks) {
  auto client = NewClient(RegisteredProfile());
  ReceiveOptions o;
  o.initial_backoff = absl::Milliseconds(10);
  o.ack_flush_interval = absl::Milliseconds(10);
  std::atomic<int> reconnects{0};
  o.on_reconnect = [&](const absl::Status& s, int, absl::Duration) {
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    ++reconnects;
  };
  auto stream = client->Receive(o);
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::vector<uint64_t> seen;
  bool drained = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while ((seen.size() < 4 || !drained) && absl::Now() < deadline) {
    auto ev = (*stream)->Next(absl::Seconds(5));
    ASSERT_TRUE(ev.ok()) << ev.status();
    if (!ev->has_value()) continue;
    if ((*ev)->kind == Event::Kind::kBacklogDrained) {
      drained = true;
      continue;
    }
    EXPECT_EQ((*ev)->kind, Event::Kind::kMessage);
    EXPECT_EQ((*ev)->protection, Protection::kTransport);
    EXPECT_EQ((*ev)->text, absl::StrCat("m", (*ev)->delivery_id));
    seen.push_back((*ev)->delivery_id);
  }
  EXPECT_THAT(seen, ElementsAre(1, 2, 3, 4));
  EXPECT_GE(reconnects.load(), 1);
  // Nothing more: Next times out with nullopt, quickly.
  const absl::Time t0 = absl::Now();
  auto none = (*stream)->Next(absl::Milliseconds(50));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_LT(absl::Now() - t0, absl::Seconds(2));
  // Closing acks the last handed event and does not hang on the live stream.
  (*stream)->Close();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
  absl::MutexLock l(&state_.mu);
  EXPECT_EQ(state_.acked, (std::set<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(state_.receive_max_batch, 64u);  // the default: batches allowed
}

TEST_F(FakeServerTest, ReceiveWithoutBatchesGetsTheSameEvents) {
  auto client = NewClient(RegisteredProfile());
  ReceiveOptions o;
  o.max_batch = 1;
  o.initial_backoff = absl::Milliseconds(10);
  o.ack_flush_interval = absl::Milliseconds(10);
  auto stream = client->Receive(o);
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::vector<uint64_t> seen;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (seen.size() < 4 && absl::Now() < deadline) {
    auto ev = (*stream)->Next(absl::Seconds(5));
    ASSERT_TRUE(ev.ok()) << ev.status();
    if (ev->has_value() && (*ev)->kind == Event::Kind::kMessage) {
      seen.push_back((*ev)->delivery_id);
    }
  }
  EXPECT_THAT(seen, ElementsAre(1, 2, 3, 4));
  (*stream)->Close();
  absl::MutexLock l(&state_.mu);
  EXPECT_EQ(state_.receive_max_batch, 1u);
}

TEST_F(FakeServerTest, ReceiveRefusesABatchAboveTheServersLimit) {
  auto client = NewClient(RegisteredProfile());
  ReceiveOptions o;
  o.max_batch = 257;
  auto stream = client->Receive(o);
  ASSERT_TRUE(absl::IsInvalidArgument(stream.status())) << stream.status();
  EXPECT_THAT(std::string(stream.status().message()), HasSubstr("max_batch"));
  absl::MutexLock l(&state_.mu);
  EXPECT_EQ(state_.receive_calls, 0);
}

TEST_F(FakeServerTest, ListenStopsOnStopTokenAndAcksHandled) {
  auto client = NewClient(RegisteredProfile());
  ReceiveOptions o;
  o.initial_backoff = absl::Milliseconds(10);
  o.ack_flush_interval = absl::Milliseconds(10);
  std::stop_source stop;
  std::vector<uint64_t> handled;
  absl::Status s = client->Listen(
      o,
      [&](const Event& ev) {
        if (ev.kind == Event::Kind::kMessage) handled.push_back(ev.delivery_id);
        if (handled.size() == 4) stop.request_stop();
        return absl::OkStatus();
      },
      stop.get_token());
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_THAT(handled, ElementsAre(1, 2, 3, 4));
  absl::MutexLock l(&state_.mu);
  EXPECT_EQ(state_.acked, (std::set<uint64_t>{1, 2, 3, 4}));
}

TEST_F(FakeServerTest, NoAckLeavesEnvelopesUnacked) {
  auto client = NewClient(RegisteredProfile());
  ReceiveOptions o;
  o.auto_ack = false;
  o.initial_backoff = absl::Milliseconds(10);
  {
    auto stream = client->Receive(o);
    ASSERT_TRUE(stream.ok());
    int messages = 0;
    while (messages < 4) {
      auto ev = (*stream)->Next(absl::Seconds(5));
      ASSERT_TRUE(ev.ok()) << ev.status();
      ASSERT_TRUE(ev->has_value());
      if ((*ev)->kind == Event::Kind::kMessage) ++messages;
    }
  }  // destruction: cancel + join, must not hang
  absl::MutexLock l(&state_.mu);
  EXPECT_TRUE(state_.acked.empty());
}

TEST_F(FakeServerTest, DestroyingAnIdleStreamDoesNotHang) {
  auto client = NewClient(RegisteredProfile());
  const absl::Time t0 = absl::Now();
  {
    auto stream = client->Receive();
    ASSERT_TRUE(stream.ok());
    absl::SleepFor(absl::Milliseconds(20));
  }
  client.reset();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
}

}  // namespace
}  // namespace parley
