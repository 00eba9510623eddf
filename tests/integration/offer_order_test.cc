// A Receive stream puts entries offered out of order back in order, and
// reads its queue when a gap does not fill (core/delivery.h OfferOrder; the
// stream's gap timer in core/grpc_services.cc).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// A real ParleyService on RocksDB in a temp directory and the real
// MessagingGrpc on an in-process gRPC server (loopback, port 0, insecure:
// TLS is not what is tested here). The test writes queue entries straight
// to storage and offers them to the DeliveryHub itself, in the order it
// chooses: the order concurrent Sends can produce, and an entry written
// without an offer, which only the gap timer's fallback read can deliver.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/delivery.h"
#include "core/franker.h"
#include "core/grpc_services.h"
#include "core/presets.h"
#include "core/service.h"
#include "gtest/gtest.h"
#include "parley/v1/parley.grpc.pb.h"
#include "storage/rocksdb_storage.h"
#include "tests/support/service_parts.h"

namespace parley {
namespace {

class OfferOrderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto now = [] { return int64_t{1'800'000'000'000}; };
    auto parts = testing::MakeServiceParts(core::kDefaultPreset, now);
    ASSERT_TRUE(parts.ok()) << parts.status();
    parts_ = *std::move(parts);
    storage_ = parts_->storage.get();
    franker_ = core::Franker::ForKey(std::string(32, 'k'));
    core::ParleyService::Deps deps = parts_->Deps(now);
    deps.hub = &hub_;
    deps.franker = franker_.get();
    service_ = std::make_unique<core::ParleyService>(deps);
    messaging_ = std::make_unique<core::MessagingGrpc>(service_.get(), &hub_, &finisher_);

    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(messaging_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port, 0);
    channel_target_ = "127.0.0.1:" + std::to_string(port);
    stub_ = v1::MessagingService::NewStub(grpc::CreateChannel(channel_target_, grpc::InsecureChannelCredentials()));

    alice_ = Account("alice");
    bob_ = Account("bob", &bob_token_);
    v1::CreateDirectRequest d;
    d.set_peer_username("bob");
    auto direct = service_->CreateDirect(alice_, d);
    ASSERT_TRUE(direct.ok()) << direct.status();
    conversation_ = direct->conversation().conversation_id();
  }

  void TearDown() override {
    if (server_) {
      hub_.CloseAll(absl::UnavailableError("test ends"));
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    }
    server_.reset();
    messaging_.reset();
    service_.reset();
    parts_.reset();
  }

  core::Caller Account(const std::string& name, std::string* token = nullptr) {
    return testing::CreateTestAccount(*service_, name, token);
  }

  // Writes one entry to bob's queue without offering it; returns what the
  // append queued (its delivery id and payload).
  std::vector<storage::QueuedEntry> Write(uint64_t tag) {
    storage::AppendRequest a;
    a.conversation_id = conversation_;
    a.server_time_ms = 1'800'000'000'000;
    a.targets = Targets();
    a.return_queued = true;
    a.make_payload = [this, tag](uint64_t seq) {
      v1::Message m;
      m.set_conversation_id(conversation_);
      m.set_seq(seq);
      m.set_server_time_ms(static_cast<int64_t>(tag));
      return m.SerializeAsString();
    };
    auto r = storage_->messages().Append(a);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    EXPECT_EQ(r->queued.size(), 1u);
    return r->queued;
  }

  std::vector<storage::QueueTarget> Targets() const { return {{bob_.account_id, bob_.device_id}}; }

  // Opens bob's Receive stream and reads up to its BacklogDrained marker.
  void OpenStream() {
    ctx_.AddMetadata("authorization", "Bearer " + bob_token_);
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ReceiveRequest req;
    req.set_max_batch(64);
    reader_ = stub_->Receive(&ctx_, req);
    v1::ReceiveResponse r;
    ASSERT_TRUE(reader_->Read(&r));
    ASSERT_TRUE(r.has_backlog_drained());
  }

  // Reads `n` envelopes (each response an envelope or a batch); fewer if
  // the stream ends (its deadline) first.
  std::vector<v1::Envelope> ReadEnvelopes(size_t n) {
    std::vector<v1::Envelope> out;
    v1::ReceiveResponse r;
    while (out.size() < n && reader_->Read(&r)) {
      if (r.has_envelope()) out.push_back(r.envelope());
      for (const v1::Envelope& e : r.batch().envelopes()) out.push_back(e);
    }
    return out;
  }

  std::unique_ptr<testing::ServiceParts> parts_;
  storage::Storage* storage_ = nullptr;  // parts_'s
  core::DeliveryHub hub_;
  std::unique_ptr<core::Franker> franker_;
  std::unique_ptr<core::ParleyService> service_;
  core::Finisher finisher_;  // outlives server_ (declared before it)
  std::unique_ptr<core::MessagingGrpc> messaging_;
  std::unique_ptr<grpc::Server> server_;
  std::string channel_target_;
  std::unique_ptr<v1::MessagingService::Stub> stub_;
  core::Caller alice_, bob_;
  std::string bob_token_;
  std::string conversation_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::ReceiveResponse>> reader_;
};

std::vector<uint64_t> Tags(const std::vector<v1::Envelope>& es) {
  std::vector<uint64_t> tags;
  for (const auto& e : es) tags.push_back(static_cast<uint64_t>(e.message().server_time_ms()));
  return tags;
}

TEST_F(OfferOrderTest, OffersOutOfOrderAreDeliveredInOrder) {
  ASSERT_NO_FATAL_FAILURE(OpenStream());
  auto a = Write(1), b = Write(2), c = Write(3);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(c.size(), 1u);
  // The order three racing Sends can offer in: the last first.
  hub_.Offer(Targets(), c);
  hub_.Offer(Targets(), a);
  hub_.Offer(Targets(), b);
  std::vector<v1::Envelope> got = ReadEnvelopes(3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(Tags(got), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(got[0].delivery_id(), a[0].delivery_id);
  EXPECT_LT(got[0].delivery_id(), got[1].delivery_id());
  EXPECT_LT(got[1].delivery_id(), got[2].delivery_id());
  // Nothing is delivered twice: the next entry is the next envelope.
  hub_.Offer(Targets(), Write(4));
  EXPECT_EQ(Tags(ReadEnvelopes(1)), (std::vector<uint64_t>{4}));
}

// An entry written without an offer leaves a gap no offer fills: the stream
// holds the later entry, then its gap timer reads the queue and delivers
// both in order (without the fallback the read would wait for the deadline).
TEST_F(OfferOrderTest, AGapThatDoesNotFillIsReadFromStorage) {
  ASSERT_NO_FATAL_FAILURE(OpenStream());
  Write(1);  // never offered
  hub_.Offer(Targets(), Write(2));
  std::vector<v1::Envelope> got = ReadEnvelopes(2);
  ASSERT_EQ(got.size(), 2u) << "the held entry was never delivered";
  EXPECT_EQ(Tags(got), (std::vector<uint64_t>{1, 2}));
  // The stream goes on taking offers after the read.
  hub_.Offer(Targets(), Write(3));
  EXPECT_EQ(Tags(ReadEnvelopes(1)), (std::vector<uint64_t>{3}));
}

// Receive is served as a raw-bytes method: request bytes that are not a
// ReceiveRequest get INVALID_ARGUMENT naming the message (and an
// unauthenticated call UNAUTHENTICATED, before anything is parsed).
TEST_F(OfferOrderTest, ReceiveWithBytesThatAreNotARequestIsInvalidArgument) {
  auto call = [&](bool with_token) {
    grpc::ClientContext ctx;
    if (with_token) ctx.AddMetadata("authorization", "Bearer " + bob_token_);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::GenericStub generic(grpc::CreateChannel(channel_target_, grpc::InsecureChannelCredentials()));
    grpc::CompletionQueue cq;
    auto rw = generic.PrepareCall(&ctx, "/parley.v1.MessagingService/Receive", &cq);
    void* tag = nullptr;
    bool ok = false;
    auto step = [&](intptr_t want) {
      EXPECT_TRUE(cq.Next(&tag, &ok));
      EXPECT_EQ(reinterpret_cast<intptr_t>(tag), want);
    };
    rw->StartCall(reinterpret_cast<void*>(1));
    step(1);
    const std::string junk("\x0a\x05" "ab", 4);  // a field longer than the bytes left
    grpc::Slice slice(junk);
    grpc::ByteBuffer bb(&slice, 1);
    rw->WriteLast(bb, grpc::WriteOptions(), reinterpret_cast<void*>(2));
    step(2);
    grpc::ByteBuffer response;
    rw->Read(&response, reinterpret_cast<void*>(3));
    step(3);
    EXPECT_FALSE(ok);  // no response before the status
    grpc::Status status;
    rw->Finish(&status, reinterpret_cast<void*>(4));
    step(4);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  };
  grpc::Status s = call(true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("ReceiveRequest"), std::string::npos) << s.error_message();
  EXPECT_EQ(call(false).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace parley
