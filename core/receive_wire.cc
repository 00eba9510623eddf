// SPDX-License-Identifier: GPL-3.0-or-later
#include "core/receive_wire.h"

namespace parley::core::wire {
namespace {

// Tags: (field number << 3) | wire type; wire types 0 (varint), 2 (bytes).
constexpr char kEnvelopeDeliveryIdTag = (1 << 3) | 0;  // Envelope.delivery_id
constexpr char kEnvelopeMessageTag = (2 << 3) | 2;     // Envelope.message
constexpr char kResponseEnvelopeTag = (1 << 3) | 2;  // ReceiveResponse.envelope
constexpr char kResponseBatchTag = (3 << 3) | 2;     // ReceiveResponse.batch
constexpr char kBatchEnvelopesTag = (1 << 3) | 2;    // EnvelopeBatch.envelopes

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// proto3: a delivery id of 0 (never assigned) is not written.
size_t DeliveryIdSize(uint64_t id) { return id == 0 ? 0 : 1 + VarintSize(id); }

void PutEnvelopeBody(const Entry& e, std::string* out) {
  if (e.delivery_id != 0) {
    out->push_back(kEnvelopeDeliveryIdTag);
    PutVarint(e.delivery_id, out);
  }
  out->push_back(kEnvelopeMessageTag);
  PutVarint(e.message->size(), out);
  out->append(*e.message);
}

}  // namespace

size_t EnvelopeSize(const Entry& e) {
  const size_t m = e.message->size();
  return DeliveryIdSize(e.delivery_id) + 1 + VarintSize(m) + m;
}

std::string ResponseWithEnvelope(const Entry& e) {
  const size_t body = EnvelopeSize(e);
  std::string out;
  out.reserve(1 + VarintSize(body) + body);
  out.push_back(kResponseEnvelopeTag);
  PutVarint(body, &out);
  PutEnvelopeBody(e, &out);
  return out;
}

std::string ResponseWithBatch(const std::vector<Entry>& es) {
  size_t batch = 0;
  for (const Entry& e : es) {
    const size_t body = EnvelopeSize(e);
    batch += 1 + VarintSize(body) + body;
  }
  std::string out;
  out.reserve(1 + VarintSize(batch) + batch);
  out.push_back(kResponseBatchTag);
  PutVarint(batch, &out);
  for (const Entry& e : es) {
    out.push_back(kBatchEnvelopesTag);
    PutVarint(EnvelopeSize(e), &out);
    PutEnvelopeBody(e, &out);
  }
  return out;
}

}  // namespace parley::core::wire
