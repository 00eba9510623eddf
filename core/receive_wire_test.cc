// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/receive_wire.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "parley/v1/parley.pb.h"

namespace parley::core::wire {
namespace {

v1::Message Sample(int i, size_t body_bytes) {
  v1::Message m;
  m.set_conversation_id("conv-" + std::to_string(i));
  m.set_seq(1000 + i);
  m.set_sender_account_id("acct");
  m.set_sender_device_id(2);
  m.set_server_time_ms(1'800'000'000'000 + i);
  m.mutable_plain()->set_content(std::string(body_bytes, 'x'));
  return m;
}

Entry E(uint64_t id, const v1::Message& m) {
  return Entry{id, std::make_shared<const std::string>(m.SerializeAsString())};
}

// The composed bytes equal protobuf's own serialization of the same
// response, and parse back to it; sizes cover 1- to 3-byte length varints
// and delivery ids from 1 to the 64-bit maximum.
TEST(ReceiveWire, EnvelopeBytesAreProtobufs) {
  for (size_t body : {0, 1, 100, 127, 128, 300, 20000, 70000}) {
    for (uint64_t id : {uint64_t{1}, uint64_t{127}, uint64_t{128},
                        uint64_t{1} << 40, ~uint64_t{0}}) {
      const v1::Message m = Sample(static_cast<int>(body % 7), body);
      const Entry e = E(id, m);
      v1::ReceiveResponse want;
      want.mutable_envelope()->set_delivery_id(id);
      *want.mutable_envelope()->mutable_message() = m;
      EXPECT_EQ(ResponseWithEnvelope(e), want.SerializeAsString())
          << body << " " << id;
      EXPECT_EQ(EnvelopeSize(e), want.envelope().ByteSizeLong());
      v1::ReceiveResponse got;
      ASSERT_TRUE(got.ParseFromString(ResponseWithEnvelope(e)));
      EXPECT_EQ(got.envelope().delivery_id(), id);
      EXPECT_EQ(got.envelope().message().SerializeAsString(),
                m.SerializeAsString());
    }
  }
}

TEST(ReceiveWire, BatchBytesAreProtobufs) {
  std::vector<Entry> es;
  v1::ReceiveResponse want;
  for (int i = 0; i < 64; ++i) {
    const v1::Message m = Sample(i, static_cast<size_t>(i) * 37);
    es.push_back(E(500 + static_cast<uint64_t>(i), m));
    v1::Envelope* env = want.mutable_batch()->add_envelopes();
    env->set_delivery_id(500 + static_cast<uint64_t>(i));
    *env->mutable_message() = m;
  }
  EXPECT_EQ(ResponseWithBatch(es), want.SerializeAsString());
  v1::ReceiveResponse got;
  ASSERT_TRUE(got.ParseFromString(ResponseWithBatch(es)));
  ASSERT_EQ(got.batch().envelopes_size(), 64);
  EXPECT_EQ(got.batch().envelopes(63).delivery_id(), 563u);
}

// An empty payload is an empty Message that is present, as protobuf writes
// a set sub-message.
TEST(ReceiveWire, EmptyMessageIsPresent) {
  const Entry e{7, std::make_shared<const std::string>()};
  v1::ReceiveResponse got;
  ASSERT_TRUE(got.ParseFromString(ResponseWithEnvelope(e)));
  EXPECT_TRUE(got.envelope().has_message());
  EXPECT_EQ(got.envelope().delivery_id(), 7u);
}

}  // namespace
}  // namespace parley::core::wire
