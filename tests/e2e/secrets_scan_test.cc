// Secrets scan: after a session of end-to-end encrypted chat (direct and
// group), device linking and removal, admin calls and refused attempts, no
// file parleyd wrote — its stdout and stderr (at --log-level trace) and every
// file of its data directory (RocksDB tables, WAL, LOG, options, TLS and key
// files) — contains any device token, admin token secret, presented-but-wrong
// token, or the plaintext of any E2EE message (nor of a plaintext Send the
// server refused). Tokens are searched as text and as raw bytes.
//
// A positive control (a display name the server must store) shows the scan
// does see stored records. Also checks file modes: the operator token, the
// statement key and the TLS private keys are 0600 in 0700 directories.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <sys/random.h>
#include <sys/stat.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "clients/sdk/client.h"
#include "clients/sdk/signal_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parley/v1/admin.grpc.pb.h"
#include "tests/support/api_client.h"
#include "tests/support/data_scan.h"
#include "tests/support/subprocess.h"

namespace parley {
namespace {

using ::testing::IsEmpty;
using ::testing::Not;
using testing::ApiClient;
using testing::Parleyd;

std::string RandomHex(size_t bytes) {
  std::string b(bytes, '\0');
  if (::getrandom(b.data(), b.size(), 0) != static_cast<ssize_t>(b.size())) {
    for (char& c : b) c = static_cast<char>(rand());
  }
  return absl::BytesToHexString(b);
}

class SecretsScanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/parley_secrets_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    data_ = dir_ + "/data";
  }
  void TearDown() override {
    users_.clear();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  struct User {
    std::shared_ptr<SignalEngine> engine;
    std::unique_ptr<Client> client;
  };
  User NewUser(const std::string& profile) {
    User u;
    auto engine = SignalEngine::Create(dir_ + "/sdk/" + profile + "/e2ee");
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return u;
    u.engine = *engine;
    Profile p;
    p.dir = dir_ + "/sdk/" + profile;
    ConnectOptions o;
    o.server = server_->target();
    o.ca_file = server_->ca_file();
    o.e2ee = u.engine;
    auto client = Client::Create(p, o);
    EXPECT_TRUE(client.ok()) << client.status();
    if (client.ok()) u.client = *std::move(client);
    return u;
  }
  // Decrypted texts of content events until `n` arrived or 10 s passed.
  static std::vector<std::string> ReceiveTexts(Client& c, size_t n) {
    std::vector<std::string> out;
    auto stream = c.Receive();
    EXPECT_TRUE(stream.ok()) << stream.status();
    if (!stream.ok()) return out;
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (out.size() < n && absl::Now() < deadline) {
      auto ev = (*stream)->Next(absl::Milliseconds(200));
      if (!ev.ok()) break;
      if (ev->has_value() && (*ev)->kind == Event::Kind::kMessage) {
        EXPECT_TRUE((*ev)->e2ee());
        out.push_back((*ev)->text.value_or("<undecryptable: " + (*ev)->decrypt_error + ">"));
      }
    }
    return out;
  }

  // Files parleyd wrote: the data directory (recursively) and its logs.
  // The data directory and parleyd's logs.
  std::vector<std::string> ServerFiles() {
    std::vector<std::string> files = {data_};
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && name.rfind("parleyd", 0) == 0) files.push_back(e.path().string());
    }
    return files;
  }

  std::string dir_, data_;
  std::unique_ptr<Parleyd> server_;
  std::map<std::string, User> users_;
};

TEST_F(SecretsScanTest, NoTokenOrE2eePlaintextInLogsOrDataDirectory) {
  server_ = std::make_unique<Parleyd>(PARLEYD_BIN, data_, dir_,
                                      std::vector<std::string>{"--policy", "preset:signal", "--log-level", "trace"});
  ASSERT_GT(server_->port(), 0) << server_->log();

  // name -> secret; `raw` ones are also searched hex-decoded.
  std::map<std::string, std::string> tokens;     // 64-hex device tokens
  std::map<std::string, std::string> markers;    // E2EE plaintexts and refused plaintext
  std::map<std::string, std::string> admin;      // "padm_<64 hex>" admin secrets

  const std::string control = "positive-control-" + RandomHex(8);
  for (const std::string name : {"alice", "bob", "carol"}) {
    users_[name] = NewUser(name);
    ASSERT_NE(users_[name].client, nullptr);
    auto r = users_[name].client->Register(name, name == "alice" ? control : "", {}, "phone");
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->keys_status.ok()) << r->keys_status;
    tokens[name] = users_[name].client->profile().device_token;
  }
  Client& alice = *users_["alice"].client;
  Client& bob = *users_["bob"].client;
  Client& carol = *users_["carol"].client;

  // alice links a second device, uses it, and removes it (a revoked token).
  {
    auto link = alice.CreateDeviceLink();
    ASSERT_TRUE(link.ok()) << link.status();
    users_["alice2"] = NewUser("alice2");
    auto r = users_["alice2"].client->LinkDevice(link->code, "tablet");
    ASSERT_TRUE(r.ok()) << r.status();
    tokens["alice2 (removed)"] = users_["alice2"].client->profile().device_token;
    ASSERT_TRUE(alice.RemoveDevice(r->device.device_id()).ok());
  }

  // E2EE direct chat and group, both ways.
  auto direct = alice.CreateDirect("bob");
  ASSERT_TRUE(direct.ok()) << direct.status();
  const std::string conv = direct->conversation.conversation_id();
  ASSERT_EQ(direct->conversation.security().mode(), v1::SECURITY_MODE_E2EE);
  auto group = alice.CreateGroup("secret group", {"bob", "carol"});
  ASSERT_TRUE(group.ok()) << group.status();
  ASSERT_EQ(group->security().mode(), v1::SECURITY_MODE_E2EE);
  const std::string gid = group->conversation_id();

  std::vector<std::string> to_bob, to_alice, to_group;
  for (int i = 0; i < 3; ++i) {
    std::string m = absl::StrCat("e2ee-direct-a", i, "-", RandomHex(10));
    markers[m] = m;
    ASSERT_TRUE(alice.Send(conv, m).ok());
    to_bob.push_back(m);
  }
  EXPECT_THAT(ReceiveTexts(bob, to_bob.size()), ::testing::ElementsAreArray(to_bob));
  for (int i = 0; i < 2; ++i) {
    std::string m = absl::StrCat("e2ee-direct-b", i, "-", RandomHex(10));
    markers[m] = m;
    ASSERT_TRUE(bob.Send(conv, m).ok());
    to_alice.push_back(m);
  }
  EXPECT_THAT(ReceiveTexts(alice, to_alice.size()), ::testing::ElementsAreArray(to_alice));
  for (int i = 0; i < 2; ++i) {
    std::string m = absl::StrCat("e2ee-group-", i, "-", RandomHex(10));
    markers[m] = m;
    auto sent = (i == 0 ? alice : carol).Send(gid, m);
    ASSERT_TRUE(sent.ok()) << sent.status();
    EXPECT_TRUE(sent->protection == Protection::kEndToEnd);
    to_group.push_back(m);
  }
  EXPECT_THAT(ReceiveTexts(bob, to_group.size()), ::testing::ElementsAreArray(to_group));

  // Refused attempts: a plaintext body into the E2EE chat (the server must
  // refuse it without storing or logging it), wrong tokens on both APIs.
  const std::string ca = testing::Slurp(server_->ca_file());
  ApiClient raw(testing::MakeChannel(server_->target(), ca));
  {
    testing::Device a;
    a.token = tokens["alice"];
    const std::string refused = "refused-plaintext-" + RandomHex(10);
    markers[refused] = refused;
    grpc::Status s = raw.SendText(a, conv, "plain-1", refused);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    testing::Device fake;
    fake.token = RandomHex(32);
    tokens["presented unknown device token"] = fake.token;
    v1::ListConversationsResponse lr;
    auto ctx = raw.Ctx(fake);
    EXPECT_EQ(raw.conversations->ListConversations(ctx.get(), {}, &lr).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    testing::Device revoked;
    revoked.token = tokens["alice2 (removed)"];
    auto ctx2 = raw.Ctx(revoked);
    EXPECT_EQ(raw.conversations->ListConversations(ctx2.get(), {}, &lr).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    std::string op = testing::Slurp(server_->operator_token_file());
    while (!op.empty() && (op.back() == '\n' || op.back() == ' ')) op.pop_back();
    ASSERT_EQ(op.rfind("padm_", 0), 0u) << "operator token format changed";
    admin["operator token"] = op;
    auto stub = v1::AdminService::NewStub(testing::MakeChannel(server_->admin_target(), ca));
    auto call_ctx = [](const std::string& token) {
      auto ctx = std::make_unique<grpc::ClientContext>();
      ctx->AddMetadata("authorization", "Bearer " + token);
      ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      return ctx;
    };
    v1::WhoAmIResponse who;
    auto c1 = call_ctx(op);
    ASSERT_TRUE(stub->WhoAmI(c1.get(), {}, &who).ok());
    v1::CreateTokenRequest creq;
    creq.set_role(v1::ADMIN_ROLE_AUDITOR);
    creq.set_name("scan-auditor");
    v1::CreateTokenResponse cresp;
    auto c2 = call_ctx(op);
    grpc::Status s = stub->CreateToken(c2.get(), creq, &cresp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    admin["auditor token"] = cresp.secret();
    v1::TailAuditResponse tail;
    auto c3 = call_ctx(cresp.secret());
    EXPECT_TRUE(stub->TailAudit(c3.get(), {}, &tail).ok());
    v1::RevokeTokenRequest rreq;
    rreq.set_token_id(cresp.token().token_id());
    v1::RevokeTokenResponse rresp;
    auto c4 = call_ctx(op);
    EXPECT_TRUE(stub->RevokeToken(c4.get(), rreq, &rresp).ok());
    auto c5 = call_ctx(cresp.secret());  // revoked now
    EXPECT_EQ(stub->WhoAmI(c5.get(), {}, &who).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    const std::string wrong = "padm_" + RandomHex(32);
    admin["presented unknown admin token"] = wrong;
    auto c6 = call_ctx(wrong);
    EXPECT_EQ(stub->WhoAmI(c6.get(), {}, &who).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    auto c7 = call_ctx(tokens["bob"]);  // a device token on the admin API
    EXPECT_EQ(stub->WhoAmI(c7.get(), {}, &who).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }

  // Stop parleyd (flushes everything to the data directory), then scan.
  users_.clear();
  server_->process().Kill(SIGTERM);
  ASSERT_EQ(server_->process().Wait(std::chrono::seconds(20)), 0) << server_->log();

  struct Needle {
    std::string what, bytes;
  };
  std::vector<Needle> needles;
  for (const auto& [name, t] : tokens) {
    needles.push_back({"device token of " + name, t});
    needles.push_back({"device token of " + name + " (raw bytes)", absl::HexStringToBytes(t)});
  }
  for (const auto& [name, t] : admin) {
    needles.push_back({name, t});
    needles.push_back({name + " (hex part)", t.substr(5)});
    needles.push_back({name + " (raw bytes)", absl::HexStringToBytes(t.substr(5))});
  }
  for (const auto& [name, m] : markers) needles.push_back({"plaintext \"" + name + "\"", m});

  // The files as bytes, and every record read back through RocksDB (the
  // files may hold records compressed): the positive control must be visible
  // in the records, and no needle anywhere.
  const std::string operator_file = std::filesystem::canonical(server_->operator_token_file()).string();
  const testing::DataScan scan = testing::DataScan::Read(ServerFiles());
  ASSERT_GT(scan.databases(), 0u);
  for (const std::string& f : scan.FilesHolding(control)) {
    std::cout << "secrets scan: positive control found in " << f << "\n";
  }
  for (const Needle& n : needles) {
    for (const std::string& where : scan.WhereIs(n.bytes)) {
      // The operator token file holds the operator token by design.
      const bool is_operator_file = std::filesystem::exists(where) &&
                                    std::filesystem::canonical(where).string() == operator_file;
      if (is_operator_file && n.what.rfind("operator token", 0) == 0) continue;
      ADD_FAILURE() << n.what << " found in " << where;
    }
  }
  EXPECT_THAT(scan.RecordsHolding(control), Not(IsEmpty()))
      << "the scan did not find the display name stored by the server: it cannot see records and proves nothing";
  if (scan.FilesHolding(control).empty()) {
    std::cout << "secrets scan: the positive control is compressed in the files; checked decompressed ("
              << scan.records() << " records)\n";
  }
  const size_t files = scan.files();
  const uintmax_t bytes = scan.file_bytes();
  std::cout << "secrets scan: " << needles.size() << " needles (" << tokens.size() << " device tokens, "
            << admin.size() << " admin secrets, " << markers.size() << " plaintexts) in " << files << " files, "
            << bytes << " bytes\n";

  // File modes of secrets and their directories.
  auto mode = [](const std::string& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return -1;
    return static_cast<int>(st.st_mode & 07777);
  };
  std::vector<std::string> secret_files = {data_ + "/admin/operator.token"};
  for (const std::string sub : {"keys", "tls"}) {
    for (const auto& e : std::filesystem::directory_iterator(data_ + "/" + sub)) {
      const std::string name = e.path().filename().string();
      if (sub == "keys" || name.find("key") != std::string::npos) secret_files.push_back(e.path().string());
    }
  }
  EXPECT_GE(secret_files.size(), 4u);  // operator.token, statement.key, ca.key, server.key
  for (const std::string& f : secret_files) {
    EXPECT_EQ(mode(f), 0600) << f << " has mode " << std::oct << mode(f);
  }
  for (const std::string d : {"admin", "keys", "tls"}) {
    EXPECT_EQ(mode(data_ + "/" + d), 0700) << data_ << "/" << d << " has mode " << std::oct << mode(data_ + "/" + d);
  }
}

// The database holds every transport-mode message, account records and
// token hashes: parleyd runs with umask 077, so the data directory is 0700
// and nothing in it is accessible to other users, except the public TLS
// certificates (ca.pem, server.pem: 0644 on purpose, clients need the CA),
// which sit inside the 0700 data directory anyway.
TEST_F(SecretsScanTest, DatabaseIsNotReadableByOtherUsers) {
  server_ = std::make_unique<Parleyd>(PARLEYD_BIN, data_, dir_);
  ASSERT_GT(server_->port(), 0) << server_->log();
  ApiClient raw(testing::MakeChannel(server_->target(), testing::Slurp(server_->ca_file())));
  testing::Device alice, bob;
  ASSERT_TRUE(raw.Register("alice", &alice).ok());
  ASSERT_TRUE(raw.Register("bob", &bob).ok());
  v1::Conversation conv;
  ASSERT_TRUE(raw.Direct(alice, "bob", &conv).ok());
  ASSERT_TRUE(raw.SendText(alice, conv.conversation_id(), "c1", "transport text").ok());
  server_->process().Kill(SIGTERM);
  ASSERT_EQ(server_->process().Wait(std::chrono::seconds(20)), 0) << server_->log();
  for (const auto& e : std::filesystem::recursive_directory_iterator(data_)) {
    struct stat st {};
    ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
    const std::string name = e.path().filename().string();
    if (e.path().parent_path().filename() == "tls" && (name == "ca.pem" || name == "server.pem")) continue;
    EXPECT_EQ(st.st_mode & 0007, 0u) << e.path() << " is accessible to other users (mode " << std::oct
                                     << (st.st_mode & 07777) << ")";
  }
  struct stat st {};
  ASSERT_EQ(::stat(data_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u) << data_ << " has mode " << std::oct << (st.st_mode & 07777);
}

}  // namespace
}  // namespace parley
