// libFuzzer target: what a client does with what a server sends.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Input: one selector byte, then a serialized message.
//   0  v1::ReceiveResponse (what the Receive stream yields)
//   1  v1::Envelope
//   2  v1::Message
//   3  v1::Conversation (GetConversation / ListConversations answers)
//   4  the inner envelope of an E2EE ciphertext (what a Signal ciphertext
//      decrypts to: DecodeInnerEnvelope), shown as the decrypted text
//   5  gRPC error details carrying a DeviceMismatch (ParseDeviceMismatch)
//   6  v1::SecurityStatement bytes, signed with the pinned key by the harness
//      (a server that signs what it should not: the verifier's checks after
//      the signature)
// Bits 3..7 of the selector choose variations: the "decrypted" text passed
// to FormatMessageLine / MessageJson, and whether security states are
// re-signed with the pinned key (so the verifier gets past the signature and
// compares the statement with the visible fields) and then altered.
//
// Every message goes through the SDK's display functions (FormatMessageLine,
// FormatSecurityChange, MessageJson, ProtectionOf, PlainText, ...), every
// security state through DescribeSecurity / SecurityJson /
// statement::Verify and an in-memory StatementVerifier (Observe,
// NoteE2eeEvidence, CheckPlaintextAllowed), as the SDK does for received
// messages and conversation answers.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "clients/sdk/display.h"
#include "clients/sdk/e2ee_format.h"
#include "clients/sdk/parse.h"
#include "clients/sdk/statement_verifier.h"
#include "core/statement.h"
#include "parley/v1/parley.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using parley::fuzz::Check;
namespace v1 = parley::v1;

// The server key the client pinned (generated once per process).
const parley::core::StatementSigner& Signer() {
  static const parley::core::StatementSigner* const signer = [] {
    auto s = parley::core::StatementSigner::LoadOrCreate(parley::fuzz::ProcessTempDir() +
                                                         "/keys/statement.key");
    Check(s.ok(), "statement key created");
    return s->release();
  }();
  return *signer;
}

std::string Name(absl::string_view account_id) {
  if (account_id == "a_alice") return "alice";
  return std::string(account_id);
}

struct Variation {
  std::optional<std::string> decrypted;
  bool resign = false;  // re-sign security states with the pinned key
  uint8_t alter = 0;    // then change one visible field (0: none)
};

Variation VariationOf(uint8_t selector) {
  Variation v;
  const uint8_t bits = selector >> 3;
  switch (bits & 3) {
    case 1: v.decrypted = "hello"; break;
    case 2: v.decrypted = std::string("\x1b[2J\xc2\x9b\xff\0x", 9); break;
    case 3: v.decrypted = std::string(); break;
    default: break;
  }
  v.resign = (bits & 4) != 0;
  v.alter = bits >> 3;  // 0..3
  return v;
}

// The state as the pinned server would have signed it, then possibly altered.
v1::SecurityState Resigned(const std::string& conversation_id, const v1::SecurityState& in,
                           const Variation& v) {
  v1::SecurityState s = in;
  if (!v.resign || conversation_id.empty()) return s;
  if (!Signer().Sign(conversation_id, &s).ok()) return s;
  switch (v.alter) {
    case 1: s.set_epoch(s.epoch() + 1); break;
    case 2: s.set_mode(s.mode() == v1::SECURITY_MODE_E2EE ? v1::SECURITY_MODE_TRANSPORT
                                                           : v1::SECURITY_MODE_E2EE); break;
    case 3:
      if (s.pending().new_mode() != v1::SECURITY_MODE_UNSPECIFIED) {
        s.mutable_pending()->set_effective_at_ms(s.pending().effective_at_ms() - 1);
      } else {
        s.set_locked(!s.locked());
      }
      break;
    default: break;
  }
  return s;
}

void SecurityState(const std::string& conversation_id, const v1::SecurityState& raw,
                   const Variation& v, parley::StatementVerifier* verifier, int participants) {
  const v1::SecurityState state = Resigned(conversation_id, raw, v);
  (void)parley::DescribeSecurity(state, participants);
  (void)parley::DescribeConsentRequests(state, participants);
  (void)parley::SecurityDecidedBy(state);
  (void)parley::JsonLine(parley::SecurityJson(state));
  (void)parley::JsonLine(parley::PendingSecurityJson(state));
  absl::StatusOr<v1::SecurityStatement> st =
      parley::statement::Verify(Signer().public_key(), state, conversation_id);
  if (st.ok()) {
    Check(st->conversation_id() == conversation_id, "a verified statement names the conversation");
    Check(st->epoch() == state.epoch() && st->mode() == state.mode(),
          "a verified statement agrees with the state");
    Check(v.alter == 0 || !v.resign, "an altered state does not verify");
  }
  (void)verifier->Observe(conversation_id, state);
  (void)verifier->CheckPlaintextAllowed(conversation_id, state);
  (void)verifier->VerifyDowngrade(conversation_id, state);
}

void Message(const v1::Message& m, const Variation& v, parley::StatementVerifier* verifier) {
  const parley::Protection p = parley::ProtectionOf(m);
  (void)parley::ProtectionLabel(p);
  (void)parley::ProtectionNotice(p);
  (void)parley::ProtectionJsonName(p);
  (void)parley::PlainText(m);
  const std::string line = parley::FormatMessageLine(m, Name, v.decrypted);
  const std::string block = parley::FormatSecurityChange(m, Name);
  // Server-provided text never reaches the terminal unescaped.
  for (const std::string* s : {&line, &block}) {
    Check(s->find('\x1b') == std::string::npos, "no ESC reaches the terminal");
  }
  const nlohmann::json j = parley::MessageJson(m, Name, v.decrypted);
  Check(j.is_object() && j.contains("type"), "MessageJson has a type");
  (void)parley::JsonLine(j);
  if (m.has_ciphertext()) (void)verifier->NoteE2eeEvidence(m.conversation_id(), m.security_epoch());
  if (m.has_security_change()) {
    const v1::SecurityChange& sc = m.security_change();
    (void)parley::IsSecurityDowngrade(sc);
    (void)parley::IsSecurityUpgrade(sc);
    SecurityState(m.conversation_id(), sc.old_state(), v, verifier, 0);
    SecurityState(m.conversation_id(), sc.new_state(), v, verifier, 2);
  }
}

void Conversation(const v1::Conversation& c, const Variation& v,
                  parley::StatementVerifier* verifier) {
  (void)parley::FormatConversationLine(c, "a_alice");
  (void)parley::JsonLine(parley::ConversationJson(c));
  SecurityState(c.conversation_id(), c.security(), v, verifier, c.members_size());
}

void Statement(absl::string_view bytes, const Variation& v, parley::StatementVerifier* verifier) {
  // A state whose signed_statement is arbitrary bytes with a valid signature.
  v1::SecurityStatement parsed;
  const bool parses = parsed.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
  v1::SecurityState s;
  if (parses) {
    s.set_mode(parsed.mode());
    s.set_epoch(parsed.epoch());
    s.set_policy_revision(parsed.policy_revision());
    s.set_rule_id(parsed.rule_id());
    s.set_effective_at_ms(parsed.effective_at_ms());
    s.set_locked(parsed.locked());
    s.set_e2ee_ever_enabled(parsed.e2ee_ever_enabled());
    if (parsed.pending_mode() != v1::SECURITY_MODE_UNSPECIFIED) {
      s.mutable_pending()->set_new_mode(parsed.pending_mode());
      s.mutable_pending()->set_effective_at_ms(parsed.pending_effective_at_ms());
    }
  }
  s.set_signed_statement(std::string(bytes));
  absl::StatusOr<std::string> sig =
      Signer().SignBytes(parley::statement::SigningInput(bytes));
  Check(sig.ok(), "SignBytes");
  s.set_signature(*sig);
  const std::string id = parses && !parsed.conversation_id().empty() ? parsed.conversation_id() : "c_1";
  Variation plain = v;
  plain.resign = false;
  SecurityState(id, s, plain, verifier, 2);
}

void WriteSeeds(const std::string& dir) {
  using parley::fuzz::WriteSeed;
  v1::Message text;
  text.set_conversation_id("c_1");
  text.set_seq(5);
  text.set_sender_account_id("a_alice");
  text.set_sender_device_id(1);
  text.set_server_time_ms(1767225600000);
  text.mutable_plain()->set_content("hello \x1b[31mworld");
  WriteSeed(dir, "message-plain", 2, text.SerializeAsString());

  v1::Message ct = text;
  ct.set_security_epoch(2);
  auto* c = ct.mutable_ciphertext();
  c->set_account_id("a_bob");
  c->set_device_id(1);
  c->set_type(3);
  c->set_ciphertext(std::string("\x33\x08\x01\x12\x21\x05", 6));
  WriteSeed(dir, "message-ciphertext", 2 + (1 << 3), ct.SerializeAsString());

  v1::Message sc = text;
  sc.set_seq(9);
  auto* chg = sc.mutable_security_change();
  auto* o = chg->mutable_old_state();
  o->set_mode(v1::SECURITY_MODE_E2EE);
  o->set_epoch(3);
  o->set_rule_id("default");
  o->set_policy_revision("r1-00000000");
  auto* n = chg->mutable_new_state();
  n->set_mode(v1::SECURITY_MODE_TRANSPORT);
  n->set_epoch(4);
  n->set_reason("retention \x1b]0;x\x07");
  n->set_rule_id("business");
  n->set_policy_revision("r2-1a2b3c4d");
  n->set_effective_at_ms(1767225600000);
  n->set_notice("Messages are read by {organization}.");
  n->add_disable_requested_by("a_alice");
  n->mutable_pending()->set_new_mode(v1::SECURITY_MODE_TRANSPORT);
  n->mutable_pending()->set_effective_at_ms(1769904000000);
  chg->set_reason("policy");
  WriteSeed(dir, "message-security-change", 2, sc.SerializeAsString());
  WriteSeed(dir, "message-security-change-signed", 2 + (4 << 3), sc.SerializeAsString());
  WriteSeed(dir, "message-security-change-altered", 2 + ((4 | 8) << 3), sc.SerializeAsString());

  v1::Message mem = text;
  mem.clear_plain();
  mem.mutable_membership_change()->set_action(v1::MembershipChange::ACTION_ADDED);
  mem.mutable_membership_change()->add_account_ids("a_bob");
  mem.mutable_membership_change()->set_by_account_id("a_alice");
  WriteSeed(dir, "message-membership", 2, mem.SerializeAsString());

  v1::ReceiveResponse rr;
  rr.mutable_envelope()->set_delivery_id(7);
  *rr.mutable_envelope()->mutable_message() = sc;
  WriteSeed(dir, "receive-envelope", 0, rr.SerializeAsString());
  v1::ReceiveResponse drained;
  drained.mutable_backlog_drained()->set_last_delivery_id(7);
  WriteSeed(dir, "receive-drained", 0, drained.SerializeAsString());
  WriteSeed(dir, "envelope", 1 + (2 << 3), rr.envelope().SerializeAsString());

  v1::Conversation conv;
  conv.set_conversation_id("c_1");
  conv.set_kind(v1::CONVERSATION_KIND_GROUP);
  conv.set_title("team \xe2\x80\xae");
  auto* m1 = conv.add_members();
  m1->set_account_id("a_alice");
  m1->set_username("alice");
  m1->set_admin(true);
  conv.add_members()->set_account_id("a_bob");
  *conv.mutable_security() = *n;
  WriteSeed(dir, "conversation", 3, conv.SerializeAsString());
  WriteSeed(dir, "conversation-signed", 3 + (4 << 3), conv.SerializeAsString());

  parley::InnerEnvelope inner;
  inner.conversation_id = "c_1";
  inner.content_type = "text/plain";
  inner.content = "secret";
  inner.sender_key_distribution = "skd";
  WriteSeed(dir, "inner-envelope", 4, parley::EncodeInnerEnvelope(inner));

  v1::RpcStatus st;
  st.set_code(9);
  st.set_message("device mismatch");
  v1::DeviceMismatch dm;
  auto* miss = dm.add_missing();
  miss->set_account_id("a_bob");
  miss->set_device_id(2);
  dm.add_stale()->set_account_id("a_carol");
  auto* any = st.add_details();
  any->set_type_url(std::string(parley::kDeviceMismatchTypeUrl));
  any->set_value(dm.SerializeAsString());
  WriteSeed(dir, "device-mismatch", 5, st.SerializeAsString());

  v1::SecurityStatement stmt =
      parley::statement::FromState("c_1", *n, Signer().key_id());
  absl::StatusOr<std::string> bytes = parley::statement::Serialize(stmt);
  Check(bytes.ok(), "SerializeStatement");
  WriteSeed(dir, "statement", 6, *bytes);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  parley::fuzz::WriteSeedsIfAsked(WriteSeeds);
  // Invalid UTF-8 in string fields is logged by protobuf: expected here.
  google::protobuf::SetLogHandler(nullptr);
  (void)Signer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 256 * 1024) return -1;
  const uint8_t selector = data[0];
  const absl::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  const int n = static_cast<int>(payload.size());
  const Variation v = VariationOf(selector);
  // A fresh verifier per input (memory only): no state carries over.
  auto verifier = parley::StatementVerifier::Create(Signer().public_key(), "");
  Check(verifier.ok(), "StatementVerifier::Create");
  switch (selector & 7) {
    case 0: {
      v1::ReceiveResponse r;
      if (!r.ParseFromArray(payload.data(), n)) return 0;
      if (r.has_envelope()) Message(r.envelope().message(), v, verifier->get());
      if (r.has_batch()) {
        for (const v1::Envelope& e : r.batch().envelopes()) Message(e.message(), v, verifier->get());
      }
      break;
    }
    case 1: {
      v1::Envelope e;
      if (!e.ParseFromArray(payload.data(), n)) return 0;
      Message(e.message(), v, verifier->get());
      break;
    }
    case 2: {
      v1::Message m;
      if (!m.ParseFromArray(payload.data(), n)) return 0;
      Message(m, v, verifier->get());
      break;
    }
    case 3: {
      v1::Conversation c;
      if (!c.ParseFromArray(payload.data(), n)) return 0;
      Conversation(c, v, verifier->get());
      break;
    }
    case 4: {
      absl::StatusOr<parley::InnerEnvelope> e = parley::DecodeInnerEnvelope(payload);
      if (!e.ok()) return 0;
      Check(!e->conversation_id.empty() && e->version != 0, "a decoded envelope is valid");
      // Round trip: encoding what was decoded gives the same fields back.
      absl::StatusOr<parley::InnerEnvelope> again =
          parley::DecodeInnerEnvelope(parley::EncodeInnerEnvelope(*e));
      Check(again.ok() && again->conversation_id == e->conversation_id &&
                again->content == e->content && again->content_type == e->content_type,
            "inner envelope round trip");
      // Shown as the decrypted text of a ciphertext message.
      v1::Message m;
      m.set_conversation_id(e->conversation_id);
      m.set_seq(1);
      m.set_sender_account_id("a_alice");
      m.mutable_ciphertext()->set_type(2);
      Message(m, Variation{e->content, false, 0}, verifier->get());
      break;
    }
    case 5: {
      std::optional<v1::DeviceMismatch> dm = parley::ParseDeviceMismatch(payload);
      if (dm) (void)dm->DebugString();
      break;
    }
    case 6:
      Statement(payload, v, verifier->get());
      break;
    default:
      return -1;
  }
  return 0;
}
