// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/sdk/e2ee_format.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "parley/v1/common.pb.h"

namespace parley {
namespace {

using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;
using google::protobuf::io::StringOutputStream;

constexpr int kWireVarint = 0;
constexpr int kWireLengthDelimited = 2;

constexpr uint32_t Tag(int field, int wire) {
  return static_cast<uint32_t>(field << 3 | wire);
}

void PutBytes(CodedOutputStream& out, int field, absl::string_view value) {
  if (value.empty()) return;
  out.WriteTag(Tag(field, kWireLengthDelimited));
  out.WriteVarint32(static_cast<uint32_t>(value.size()));
  out.WriteRaw(value.data(), static_cast<int>(value.size()));
}

bool ReadBytes(CodedInputStream& in, std::string* out) {
  uint32_t size = 0;
  if (!in.ReadVarint32(&size)) return false;
  return in.ReadString(out, static_cast<int>(size));
}

absl::Status Malformed(absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed end-to-end encrypted content: ", why));
}

}  // namespace

std::string EncodeInnerEnvelope(const InnerEnvelope& e) {
  std::string bytes;
  {
    StringOutputStream stream(&bytes);
    CodedOutputStream out(&stream);
    out.WriteTag(Tag(1, kWireVarint));
    out.WriteVarint32(e.version);
    PutBytes(out, 2, e.conversation_id);
    PutBytes(out, 3, e.content_type);
    PutBytes(out, 4, e.content);
    PutBytes(out, 5, e.sender_key_distribution);
    PutBytes(out, 6, e.franking_key);
    if (e.sent_at_ms != 0) {
      out.WriteTag(Tag(7, kWireVarint));
      out.WriteVarint64(static_cast<uint64_t>(e.sent_at_ms));
    }
  }
  // Field 15 costs a one-byte tag and a one-byte length (< 128).
  const size_t used = bytes.size() + 2;
  const size_t pad =
      (InnerEnvelope::kPadBlock - used % InnerEnvelope::kPadBlock) %
      InnerEnvelope::kPadBlock;
  bytes.push_back(static_cast<char>(Tag(15, kWireLengthDelimited)));
  bytes.push_back(static_cast<char>(pad));
  bytes.append(pad, '\0');
  return bytes;
}

absl::StatusOr<InnerEnvelope> DecodeInnerEnvelope(absl::string_view bytes) {
  InnerEnvelope e;
  e.version = 0;
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                      static_cast<int>(bytes.size()));
  for (;;) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {
      if (!in.ConsumedEntireMessage()) return Malformed("bad field tag");
      break;
    }
    const int field = static_cast<int>(tag >> 3);
    const int wire = static_cast<int>(tag & 7);
    std::string* target = nullptr;
    switch (field) {
      case 1:
        if (wire != kWireVarint || !in.ReadVarint32(&e.version)) {
          return Malformed("bad version");
        }
        continue;
      case 7: {
        uint64_t v = 0;
        if (wire != kWireVarint || !in.ReadVarint64(&v)) {
          return Malformed("bad sent_at_ms");
        }
        e.sent_at_ms = static_cast<int64_t>(v);
        continue;
      }
      case 2: target = &e.conversation_id; break;
      case 3: target = &e.content_type; break;
      case 4: target = &e.content; break;
      case 5: target = &e.sender_key_distribution; break;
      case 6: target = &e.franking_key; break;
      default: break;
    }
    if (target != nullptr) {
      if (wire != kWireLengthDelimited || !ReadBytes(in, target)) {
        return Malformed("bad field");
      }
      continue;
    }
    // Unknown (or padding) field: skip.
    switch (wire) {
      case kWireVarint: {
        uint64_t ignored = 0;
        if (!in.ReadVarint64(&ignored)) return Malformed("bad field");
        break;
      }
      case 1:
        if (!in.Skip(8)) return Malformed("bad field");
        break;
      case kWireLengthDelimited: {
        uint32_t size = 0;
        if (!in.ReadVarint32(&size) || !in.Skip(static_cast<int>(size))) {
          return Malformed("bad field");
        }
        break;
      }
      case 5:
        if (!in.Skip(4)) return Malformed("bad field");
        break;
      default:
        return Malformed("unsupported wire type");
    }
  }
  if (e.version == 0) return Malformed("no version");
  if (e.conversation_id.empty()) return Malformed("no conversation id");
  return e;
}

std::optional<v1::DeviceMismatch> ParseDeviceMismatch(
    absl::string_view error_details) {
  if (error_details.empty()) return std::nullopt;
  v1::RpcStatus status;
  if (!status.ParseFromArray(error_details.data(),
                             static_cast<int>(error_details.size()))) {
    return std::nullopt;
  }
  for (const auto& any : status.details()) {
    if (any.type_url() != kDeviceMismatchTypeUrl) continue;
    v1::DeviceMismatch mismatch;
    if (!mismatch.ParseFromString(any.value())) return std::nullopt;
    return mismatch;
  }
  return std::nullopt;
}

}  // namespace parley
