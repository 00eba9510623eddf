// End to end: end-to-end encryption with the real parleyd and parley
// binaries (subprocesses), plus the SDK (parley::Client + SignalEngine)
// against a real parleyd for what the CLI cannot drive.
//
// The key property: after users chatted end-to-end encrypted, no file of the
// server (data directory, logs) contains any message text.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <sys/random.h>

#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/client.h"
#include "clients/sdk/parse.h"
#include "clients/sdk/signal_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/data_scan.h"
#include "tests/support/subprocess.h"

namespace parley {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using testing::Parleyd;
using testing::RunResult;

// A marker no file contains by chance.
std::string Marker(const std::string& what) {
  unsigned char b[12];
  if (::getrandom(b, sizeof b, 0) != static_cast<ssize_t>(sizeof b)) {
    for (unsigned char& c : b) c = static_cast<unsigned char>(rand());
  }
  return absl::StrCat(
      what, "-",
      HexEncode(absl::string_view(reinterpret_cast<char*>(b), sizeof b)));
}

std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    if (!j.is_discarded()) v.push_back(j);
  }
  return v;
}

// Texts of content messages, with a check that each is marked E2EE when
// `e2ee` (and not otherwise).
struct Received {
  std::vector<std::string> e2ee;       // decrypted, end-to-end encrypted
  std::vector<std::string> transport;  // server-readable
  int undecryptable = 0;
};

Received Messages(const std::vector<nlohmann::json>& lines) {
  Received r;
  for (const auto& j : lines) {
    if (j.value("type", "") != "message") continue;
    const bool e2ee = j.value("e2ee", false);
    if (e2ee) {
      EXPECT_EQ(j["protection"], "e2ee") << j.dump();
    }
    if (!j.contains("text") || !j["text"].is_string()) {
      ++r.undecryptable;
      continue;
    }
    (e2ee ? r.e2ee : r.transport).push_back(j["text"].get<std::string>());
  }
  return r;
}

class E2eeCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_e2ee_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    StopServer();
    std::filesystem::remove_all(dir_);
  }
  void StartServer(std::vector<std::string> args = {}) {
    server_ = std::make_unique<Parleyd>(PARLEYD_BIN, dir_ + "/data", dir_,
                                        std::move(args));
    ASSERT_GT(server_->port(), 0) << server_->log();
    ca_ = dir_ + "/data/tls/ca.pem";
  }
  void StopServer() {
    if (!server_) return;
    server_->process().Kill(SIGTERM);
    EXPECT_EQ(server_->process().Wait(std::chrono::seconds(20)), 0)
        << "parleyd did not stop cleanly";
    server_.reset();
  }
  RunResult Parley(const std::string& profile, std::vector<std::string> args,
                   bool with_server = false) {
    std::vector<std::string> argv = {PARLEY_BIN, "--profile", profile};
    if (with_server) {
      argv.insert(argv.end(), {"--server", server_->target(), "--ca", ca_});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::Run(argv, dir_, {"PARLEY_HOME=" + dir_ + "/home"});
  }
  void Register(const std::string& user) {
    RunResult r = Parley(user, {"register", user}, true);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("could not be published")));
  }
  std::string ConversationId(const RunResult& r) {
    auto lines = JsonLines(r.out);
    if (lines.empty() || !lines[0].contains("conversation_id")) {
      ADD_FAILURE() << r.out << r.err;
      return "";
    }
    return lines[0]["conversation_id"].get<std::string>();
  }
  // Sends and checks that it went out end-to-end encrypted.
  void SendE2ee(const std::string& profile, const std::string& conv,
                const std::string& text) {
    RunResult r = Parley(profile, {"--json", "send", conv, text});
    ASSERT_EQ(r.code, 0) << r.err;
    auto lines = JsonLines(r.out);
    ASSERT_EQ(lines.size(), 1u) << r.out;
    EXPECT_EQ(lines[0]["type"], "sent");
    EXPECT_EQ(lines[0]["e2ee"], true) << r.out;
    EXPECT_EQ(lines[0]["protection"], "e2ee");
  }
  // Everything that arrives until 3 s pass without anything new.
  Received Listen(const std::string& profile) {
    RunResult r = Parley(profile, {"--json", "listen", "--timeout", "3"});
    EXPECT_EQ(r.code, 0) << r.err;
    last_listen_ = r.out;
    return Messages(JsonLines(r.out));
  }
  // Where the stopped server holds `needle`: files of its data directory
  // and its logs (raw bytes), and its database's records read back decoded
  // (block compression can hide a stored string from a byte search). Also
  // counts the bytes searched.
  std::vector<std::string> ServerFilesContaining(const std::string& needle,
                                                 uintmax_t* bytes = nullptr) {
    std::vector<std::string> paths = {dir_ + "/data"};
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && name.rfind("parleyd", 0) == 0) {
        paths.push_back(e.path().string());  // parleyd's stdout / log
      }
    }
    testing::DataScan scan = testing::DataScan::Read(paths);
    EXPECT_GT(scan.databases(), 0u) << "no database under " << dir_ << "/data";
    if (bytes != nullptr) *bytes += scan.file_bytes();
    return scan.WhereIs(needle);
  }

  std::string dir_, ca_, last_listen_;
  std::unique_ptr<Parleyd> server_;
};

// (a) The key test: under the signal preset a direct chat is
// end-to-end encrypted both ways (with a DH ratchet step each way), and the
// server never stored or logged any of the texts.
TEST_F(E2eeCliTest, SignalPresetDirectChatServerNeverSeesPlaintext) {
  StartServer({"--policy", "preset:signal"});
  Register("alice");
  Register("bob");
  RunResult r = Parley("alice", {"--json", "chat", "create", "bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string conv = ConversationId(r);
  EXPECT_EQ(JsonLines(r.out).at(0)["mode"], "e2ee");

  const std::string m1 = Marker("alice-to-bob");
  const std::string m2 = Marker("bob-to-alice");
  const std::string m3 = Marker("alice-again");
  const std::string m4 = Marker("bob-again");
  SendE2ee("alice", conv, m1);
  Received got = Listen("bob");
  EXPECT_THAT(got.e2ee, ElementsAre(m1)) << last_listen_;
  EXPECT_THAT(got.transport, IsEmpty());
  EXPECT_EQ(got.undecryptable, 0) << last_listen_;

  SendE2ee("bob", "@alice", m2);
  got = Listen("alice");
  EXPECT_THAT(got.e2ee, ElementsAre(m2)) << last_listen_;
  SendE2ee("alice", conv, m3);
  SendE2ee("bob", conv, m4);
  got = Listen("bob");
  EXPECT_THAT(got.e2ee, ElementsAre(m3)) << last_listen_;
  got = Listen("alice");
  EXPECT_THAT(got.e2ee, ElementsAre(m4)) << last_listen_;

  // The human-readable line says so.
  const std::string m5 = Marker("human");
  SendE2ee("alice", conv, m5);
  r = Parley("bob", {"listen", "--count", "1", "--timeout", "10"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(m5));
  EXPECT_THAT(r.out, HasSubstr("(end-to-end encrypted)"));

  // The server keeps no history of E2EE content.
  r = Parley("bob", {"--json", "history", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const std::string& m : {m1, m2, m3, m4, m5}) {
    EXPECT_THAT(r.out, Not(HasSubstr(m)));
  }

  // Safety numbers: both sides see the same 60 digits.
  r = Parley("alice", {"--json", "verify", "bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto lines = JsonLines(r.out);
  ASSERT_GE(lines.size(), 2u) << r.out;
  const std::string digits = lines[0]["safety_number"].get<std::string>();
  EXPECT_EQ(digits.size(), 60u);
  EXPECT_EQ(lines[0]["verified"], false);
  r = Parley("bob", {"--json", "verify", "@alice"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(JsonLines(r.out).at(0)["safety_number"], digits);
  r = Parley("alice", {"verify", "bob", "--mark"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("bob is VERIFIED"));
  EXPECT_THAT(r.out, HasSubstr(digits.substr(0, 5) + " " + digits.substr(5, 5)));
  r = Parley("alice", {"--json", "verify", "bob"});
  EXPECT_EQ(JsonLines(r.out).at(0)["verified"], true) << r.out;

  StopServer();
  uintmax_t searched = 0;
  for (const std::string& m : {m1, m2, m3, m4, m5}) {
    EXPECT_THAT(ServerFilesContaining(m, &searched), IsEmpty())
        << "the server stored or logged E2EE plaintext " << m;
  }
  EXPECT_GT(searched, 0u);
  // The search does see what the server stores: the usernames.
  EXPECT_THAT(ServerFilesContaining("alice"), Not(IsEmpty()));
}

// (b) Multi-device: bob's messages reach both of alice's devices, and each
// of alice's devices gets what the other sent.
TEST_F(E2eeCliTest, LinkedDevicesGetEveryMessage) {
  StartServer({"--policy", "preset:signal"});
  Register("alice");
  Register("bob");
  RunResult r = Parley("alice", {"--json", "devices", "link-code"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string code = JsonLines(r.out).at(0)["code"].get<std::string>();
  r = Parley("alice2", {"link", code, "--device-name", "laptop"}, true);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("could not be published")));
  r = Parley("bob", {"--json", "chat", "create", "alice"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string conv = ConversationId(r);

  const std::string from_bob = Marker("from-bob");
  SendE2ee("bob", conv, from_bob);
  EXPECT_THAT(Listen("alice").e2ee, ElementsAre(from_bob)) << last_listen_;
  EXPECT_THAT(Listen("alice2").e2ee, ElementsAre(from_bob)) << last_listen_;

  const std::string from_alice1 = Marker("from-alice-phone");
  SendE2ee("alice", conv, from_alice1);
  EXPECT_THAT(Listen("bob").e2ee, ElementsAre(from_alice1)) << last_listen_;
  EXPECT_THAT(Listen("alice2").e2ee, ElementsAre(from_alice1))
      << last_listen_;

  const std::string from_alice2 = Marker("from-alice-laptop");
  SendE2ee("alice2", conv, from_alice2);
  EXPECT_THAT(Listen("bob").e2ee, ElementsAre(from_alice2)) << last_listen_;
  EXPECT_THAT(Listen("alice").e2ee, ElementsAre(from_alice2)) << last_listen_;

  StopServer();
  for (const std::string& m : {from_bob, from_alice1, from_alice2}) {
    EXPECT_THAT(ServerFilesContaining(m), IsEmpty()) << m;
  }
}

// (c) Default policy: a 1:1 chat is opt-in; after `parley secure` sends are
// encrypted. The earlier plaintext message is on the server (proving the
// file search sees stored text); the encrypted one is not.
TEST_F(E2eeCliTest, OptInSecureThenSendIsEncrypted) {
  StartServer();
  Register("alice");
  Register("bob");
  RunResult r = Parley("alice", {"--json", "chat", "create", "bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string conv = ConversationId(r);
  EXPECT_EQ(JsonLines(r.out).at(0)["mode"], "opt-in");

  const std::string plain = Marker("readable-by-server");
  r = Parley("alice", {"--json", "send", conv, plain});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(JsonLines(r.out).at(0)["e2ee"], false);

  r = Parley("alice", {"secure", "@bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("end-to-end encryption is now ON"));
  const std::string secret = Marker("secret");
  SendE2ee("alice", "@bob", secret);
  Received got = Listen("bob");
  EXPECT_THAT(got.transport, ElementsAre(plain)) << last_listen_;
  EXPECT_THAT(got.e2ee, ElementsAre(secret)) << last_listen_;
  // bob answers end-to-end encrypted too.
  const std::string answer = Marker("answer");
  SendE2ee("bob", conv, answer);
  EXPECT_THAT(Listen("alice").e2ee, ElementsAre(answer)) << last_listen_;

  // History: the plaintext message only, and a note why.
  r = Parley("bob", {"history", conv});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(plain));
  EXPECT_THAT(r.out, Not(HasSubstr(secret)));
  EXPECT_THAT(r.err, HasSubstr("not kept by the server"));

  StopServer();
  EXPECT_THAT(ServerFilesContaining(plain), Not(IsEmpty()))
      << "control: the server stores transport messages";
  EXPECT_THAT(ServerFilesContaining(secret), IsEmpty());
  EXPECT_THAT(ServerFilesContaining(answer), IsEmpty());
}

// (d) A group of three under the signal preset: everybody decrypts
// (pairwise first, then sender keys); after carol is removed she gets
// nothing readable, and the others go on.
TEST_F(E2eeCliTest, GroupOfThreeAndRemovedMember) {
  StartServer({"--policy", "preset:signal"});
  Register("alice");
  Register("bob");
  Register("carol");
  RunResult r = Parley(
      "alice", {"--json", "group", "create", "friends", "--members", "bob,carol"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string group = ConversationId(r);
  EXPECT_EQ(JsonLines(r.out).at(0)["mode"], "e2ee");

  const std::string g1 = Marker("g1-alice");
  const std::string g2 = Marker("g2-bob");
  const std::string g3 = Marker("g3-alice-sender-key");
  SendE2ee("alice", group, g1);
  SendE2ee("bob", group, g2);
  SendE2ee("alice", group, g3);
  EXPECT_THAT(Listen("bob").e2ee, ElementsAre(g1, g3)) << last_listen_;
  Received carol = Listen("carol");
  EXPECT_THAT(carol.e2ee, ElementsAre(g1, g2, g3)) << last_listen_;
  EXPECT_EQ(carol.undecryptable, 0);
  EXPECT_THAT(Listen("alice").e2ee, ElementsAre(g2)) << last_listen_;

  r = Parley("alice", {"group", "remove", group, "carol"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string g4 = Marker("g4-after-removal");
  const std::string g5 = Marker("g5-bob-after-removal");
  SendE2ee("alice", group, g4);
  SendE2ee("bob", group, g5);
  EXPECT_THAT(Listen("bob").e2ee, ElementsAre(g4)) << last_listen_;
  EXPECT_THAT(Listen("alice").e2ee, ElementsAre(g5)) << last_listen_;
  carol = Listen("carol");
  EXPECT_THAT(carol.e2ee, IsEmpty()) << last_listen_;
  EXPECT_EQ(carol.undecryptable, 0) << last_listen_;
  EXPECT_THAT(last_listen_, Not(HasSubstr(g4)));
  EXPECT_THAT(last_listen_, Not(HasSubstr(g5)));

  StopServer();
  for (const std::string& m : {g1, g2, g3, g4, g5}) {
    EXPECT_THAT(ServerFilesContaining(m), IsEmpty()) << m;
  }
}

// A contact's identity key changes (bob reinstalls): the listener is told,
// the next send warns; once bob is verified, a new key is refused until
// alice accepts it.
TEST_F(E2eeCliTest, IdentityChangesWarnAndVerifiedContactsAreRefused) {
  StartServer({"--policy", "preset:signal"});
  Register("alice");
  Register("bob");
  RunResult r = Parley("alice", {"--json", "chat", "create", "bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string conv = ConversationId(r);
  SendE2ee("alice", conv, "before");
  EXPECT_THAT(Listen("bob").e2ee, ElementsAre("before"));
  const std::string bob_keys = dir_ + "/home/profiles/bob/e2ee";

  // bob reinstalls and writes first: alice's listen reports the change.
  std::filesystem::remove_all(bob_keys);
  SendE2ee("bob", conv, "new phone");
  r = Parley("alice", {"--json", "listen", "--timeout", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto lines = JsonLines(r.out);
  ASSERT_GE(lines.size(), 2u) << r.out;
  EXPECT_EQ(lines[0]["type"], "identity_change") << r.out;
  EXPECT_EQ(lines[0]["username"], "bob");
  EXPECT_EQ(lines[0]["device_id"], 1);
  EXPECT_EQ(lines[0]["blocked"], false);
  EXPECT_THAT(Messages(lines).e2ee, ElementsAre("new phone"));
  // alice's next send warns (once), and goes through.
  r = Parley("alice", {"send", conv, "noted"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("WARNING: the safety number with bob changed"));
  r = Parley("alice", {"send", conv, "again"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("WARNING")));
  EXPECT_THAT(Listen("bob").e2ee, ElementsAre("noted", "again"));

  // alice verifies bob; bob reinstalls again: alice's send is refused.
  r = Parley("alice", {"verify", "bob", "--mark"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::filesystem::remove_all(bob_keys);
  Listen("bob");  // publishes bob's new keys
  r = Parley("alice", {"send", conv, "to the verified bob"});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr("You had verified bob"));
  EXPECT_THAT(r.err, HasSubstr("identity key"));
  r = Parley("alice", {"--json", "verify", "bob"});
  ASSERT_EQ(r.code, 0) << r.err;
  lines = JsonLines(r.out);
  ASSERT_GE(lines.size(), 1u) << r.out;
  EXPECT_EQ(lines[0]["refused"], true) << r.out;
  const std::string new_number = lines[0]["safety_number"].get<std::string>();
  r = Parley("bob", {"--json", "verify", "alice"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(JsonLines(r.out).at(0)["safety_number"], new_number);
  // Accepting the new key.
  r = Parley("alice", {"verify", "bob", "--unmark"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("bob is not verified (unmarked now)"));
  SendE2ee("alice", conv, "accepted");
  EXPECT_THAT(Listen("bob").e2ee, ElementsAre("accepted"));
}

// ------------------------------------------------------------ SDK direct

class E2eeSdkTest : public E2eeCliTest {
 protected:
  struct User {
    std::shared_ptr<SignalEngine> engine;
    std::unique_ptr<Client> client;
  };
  User NewUser(const std::string& profile) {
    User u;
    auto engine = SignalEngine::Create(dir_ + "/sdk/" + profile + "/e2ee");
    EXPECT_TRUE(engine.ok()) << engine.status();
    u.engine = *engine;
    Profile p;
    p.dir = dir_ + "/sdk/" + profile;
    ConnectOptions o;
    o.server = server_->target();
    o.ca_file = ca_;
    o.e2ee = u.engine;
    auto client = Client::Create(p, o);
    EXPECT_TRUE(client.ok()) << client.status();
    u.client = *std::move(client);
    return u;
  }
  // Content events until `n` arrived or 10 s passed.
  static std::vector<Event> Receive(Client& c, size_t n) {
    std::vector<Event> out;
    auto stream = c.Receive();
    EXPECT_TRUE(stream.ok()) << stream.status();
    if (!stream.ok()) return out;
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (out.size() < n && absl::Now() < deadline) {
      auto ev = (*stream)->Next(absl::Milliseconds(200));
      if (!ev.ok()) break;
      if (ev->has_value() && (*ev)->kind == Event::Kind::kMessage) {
        out.push_back(**ev);
      }
    }
    return out;
  }
};

// (e) Pre-key exhaustion: once bob's one-time pre-keys are all taken, a
// session is still set up with the signed pre-key alone; decrypting the
// pre-key message makes bob replenish. Then a device linked behind alice's
// back is found through the server's DeviceMismatch and repaired invisibly.
TEST_F(E2eeSdkTest, ExhaustedPreKeysAndMismatchRepair) {
  StartServer({"--policy", "preset:signal"});
  User alice = NewUser("alice");
  User bob = NewUser("bob");
  auto ra = alice.client->Register("alice", "", {}, "phone");
  ASSERT_TRUE(ra.ok()) << ra.status();
  EXPECT_TRUE(ra->keys_status.ok()) << ra->keys_status;
  auto rb = bob.client->Register("bob", "", {}, "phone");
  ASSERT_TRUE(rb.ok()) << rb.status();
  EXPECT_TRUE(rb->keys_status.ok()) << rb->keys_status;
  EXPECT_EQ(*bob.client->e2ee_host().PreKeyCount(), 100u);

  // Take every one-time pre-key of bob.
  int fetched = 0;
  for (;; ++fetched) {
    auto bundles =
        alice.client->e2ee_host().FetchBundles(rb->account.account_id());
    ASSERT_TRUE(bundles.ok()) << bundles.status();
    ASSERT_EQ(bundles->size(), 1u);
    if (!(*bundles)[0].has_one_time_pre_key()) break;
    ASSERT_LT(fetched, 200);
  }
  EXPECT_EQ(fetched, 100);
  EXPECT_EQ(*bob.client->e2ee_host().PreKeyCount(), 0u);

  auto direct = alice.client->CreateDirect("bob");
  ASSERT_TRUE(direct.ok()) << direct.status();
  const std::string conv = direct->conversation.conversation_id();
  auto sent = alice.client->Send(conv, "signed pre-key only");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->protection, Protection::kEndToEnd);
  auto got = Receive(*bob.client, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].e2ee());
  ASSERT_TRUE(got[0].text.has_value()) << got[0].decrypt_error;
  EXPECT_EQ(*got[0].text, "signed pre-key only");
  // bob noticed the pre-key message and uploaded new one-time pre-keys.
  EXPECT_GE(*bob.client->e2ee_host().PreKeyCount(), 20u);

  sent = bob.client->Send(conv, "got it");
  ASSERT_TRUE(sent.ok()) << sent.status();
  got = Receive(*alice.client, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].text.value_or(""), "got it");

  // bob links a laptop; alice's next send learns of it from the server.
  auto link = bob.client->CreateDeviceLink();
  ASSERT_TRUE(link.ok()) << link.status();
  User bob2 = NewUser("bob2");
  auto rl = bob2.client->LinkDevice(link->code, "laptop");
  ASSERT_TRUE(rl.ok()) << rl.status();
  EXPECT_TRUE(rl->keys_status.ok()) << rl->keys_status;
  sent = alice.client->Send(conv, "hello both bobs", "fixed-id-1");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->session_repairs, 1);
  EXPECT_EQ(sent->client_message_id, "fixed-id-1");
  EXPECT_FALSE(sent->duplicate);
  got = Receive(*bob2.client, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].text.value_or(""), "hello both bobs");
  EXPECT_EQ(got[0].message.client_message_id(), "fixed-id-1");
  got = Receive(*bob.client, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].text.value_or(""), "hello both bobs");

  // Without an engine, a client shows ciphertexts as undecryptable and
  // refuses to send into the conversation.
  Profile p = bob.client->profile();
  ConnectOptions o = bob.client->options();
  o.e2ee = nullptr;
  sent = alice.client->Send(conv, "for the engine-less client");
  ASSERT_TRUE(sent.ok()) << sent.status();
  auto plain_client = Client::Create(p, o);
  ASSERT_TRUE(plain_client.ok());
  got = Receive(**plain_client, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].e2ee());
  EXPECT_FALSE(got[0].text.has_value());
  EXPECT_THAT(got[0].decrypt_error, HasSubstr("no end-to-end encryption"));
  EXPECT_TRUE(absl::IsUnimplemented(
      (*plain_client)->Send(conv, "plaintext?").status()));
}

}  // namespace
}  // namespace parley
