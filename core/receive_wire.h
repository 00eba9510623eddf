// Wire bytes of Receive responses, built around stored payloads.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// A queue entry's payload is already a serialized v1::Message. A Receive
// stream writes it inside an Envelope (delivery_id = 1, message = 2) inside a
// ReceiveResponse (envelope = 1, or batch = 3 holding envelopes = 1) by
// writing those few tags and lengths around the payload's bytes, instead of
// parsing the payload into a v1::Message for every recipient and serializing
// it again. The bytes are exactly what protobuf's serializer produces for
// the same message (receive_wire_test.cc).
//
// Pure functions; thread-safe.
#ifndef PARLEY_CORE_RECEIVE_WIRE_H_
#define PARLEY_CORE_RECEIVE_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace parley::core::wire {

// One queue entry as a stream holds it.
struct Entry {
  uint64_t delivery_id = 0;
  // A serialized v1::Message.
  std::shared_ptr<const std::string> message;
};

// Serialized size of Envelope{delivery_id, message} for this entry.
size_t EnvelopeSize(const Entry& e);
// A serialized ReceiveResponse{envelope: Envelope{e}}.
std::string ResponseWithEnvelope(const Entry& e);
// A serialized ReceiveResponse{batch: EnvelopeBatch{envelopes: es}}.
std::string ResponseWithBatch(const std::vector<Entry>& es);

}  // namespace parley::core::wire

#endif  // PARLEY_CORE_RECEIVE_WIRE_H_
