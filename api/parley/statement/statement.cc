// SPDX-License-Identifier: GPL-3.0-or-later
#include "api/parley/statement/statement.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace parley::statement {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

std::string ModeName(int mode) {
  return v1::SecurityMode_IsValid(mode)
             ? v1::SecurityMode_Name(static_cast<v1::SecurityMode>(mode))
             : absl::StrCat("mode ", mode);
}

absl::Status OpenSslError(absl::string_view what) {
  const unsigned long e = ERR_get_error();
  char buf[256] = {0};
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return absl::InternalError(
      absl::StrCat("statement verification: ", what, " failed: ", buf));
}

std::string StateLabel(const std::string& conversation_id,
                       const v1::SecurityState& state) {
  return absl::StrCat("security state of ", conversation_id, " (epoch ",
                      state.epoch(), ", ", ModeName(state.mode()), ")");
}

}  // namespace

std::string SigningInput(absl::string_view signed_statement) {
  return absl::StrCat(kSigningContext, signed_statement);
}

std::string KeyId(absl::string_view public_key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(public_key.data(), public_key.size(), md, &len, EVP_sha256(),
                 nullptr) != 1 ||
      len < 8) {
    ERR_clear_error();
    return "";
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), 8));
}

v1::SecurityStatement FromState(const std::string& conversation_id,
                                const v1::SecurityState& state,
                                absl::string_view server_key_id) {
  v1::SecurityStatement st;
  st.set_version(kVersion);
  st.set_conversation_id(conversation_id);
  st.set_epoch(state.epoch());
  st.set_mode(state.mode());
  st.set_policy_revision(state.policy_revision());
  st.set_rule_id(state.rule_id());
  st.set_effective_at_ms(state.effective_at_ms());
  st.set_pending_mode(state.pending().new_mode());
  st.set_pending_effective_at_ms(state.pending().effective_at_ms());
  st.set_locked(state.locked());
  st.set_server_key_id(std::string(server_key_id));
  st.set_e2ee_ever_enabled(state.e2ee_ever_enabled());
  return st;
}

absl::StatusOr<std::string> Serialize(const v1::SecurityStatement& statement) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    if (!statement.SerializeToCodedStream(&cos) || cos.HadError()) {
      return absl::InternalError("cannot serialize the security statement");
    }
  }
  return out;
}

absl::StatusOr<v1::SecurityStatement> Verify(
    absl::string_view public_key, const v1::SecurityState& state,
    const std::string& conversation_id) {
  const std::string where = StateLabel(conversation_id, state);
  if (public_key.size() != kPublicKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("the pinned server key has ", public_key.size(),
                     " bytes; an Ed25519 public key has 32"));
  }
  if (state.signature().empty() || state.signed_statement().empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat(where, " is not signed by the server"));
  }
  if (state.signature().size() != kSignatureSize) {
    return absl::PermissionDeniedError(
        absl::StrCat(where, ": bad signature (", state.signature().size(),
                     " bytes, an Ed25519 signature has 64)"));
  }
  Pkey key(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr,
      reinterpret_cast<const unsigned char*>(public_key.data()),
      public_key.size()));
  if (!key) return OpenSslError("EVP_PKEY_new_raw_public_key");
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return OpenSslError("EVP_MD_CTX_new");
  // Ed25519: no digest (NULL md), one-shot EVP_DigestVerify.
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) !=
      1) {
    return OpenSslError("EVP_DigestVerifyInit");
  }
  const std::string tbs = SigningInput(state.signed_statement());
  const int verified = EVP_DigestVerify(
      ctx.get(),
      reinterpret_cast<const unsigned char*>(state.signature().data()),
      state.signature().size(),
      reinterpret_cast<const unsigned char*>(tbs.data()), tbs.size());
  ERR_clear_error();

  v1::SecurityStatement st;
  const bool parsed = st.ParseFromString(state.signed_statement());
  const std::string pinned_id = KeyId(public_key);
  if (verified != 1) {
    std::string hint;
    if (parsed && !st.server_key_id().empty() &&
        st.server_key_id() != pinned_id) {
      hint = absl::StrCat(" (the statement names server key \"",
                          absl::CHexEscape(st.server_key_id()),
                          "\"; the pinned key is ", pinned_id, ")");
    }
    return absl::PermissionDeniedError(absl::StrCat(
        where, ": bad signature: not signed by the pinned server key", hint));
  }
  if (!parsed) {
    return absl::PermissionDeniedError(
        absl::StrCat(where, ": the signed statement does not parse"));
  }
  if (st.version() != kVersion) {
    return absl::PermissionDeniedError(
        absl::StrCat(where, ": unsupported statement version ", st.version()));
  }
  if (st.conversation_id() != conversation_id) {
    return absl::PermissionDeniedError(absl::StrCat(
        where, ": wrong conversation: the statement is about conversation \"",
        absl::CHexEscape(st.conversation_id()), "\""));
  }
  if (st.server_key_id() != pinned_id) {
    return absl::PermissionDeniedError(
        absl::StrCat(where, ": the statement names server key \"",
                     absl::CHexEscape(st.server_key_id()),
                     "\" but is signed by the pinned key ", pinned_id));
  }
  auto mismatch = [&](absl::string_view field, absl::string_view signed_value,
                      absl::string_view shown) {
    return absl::PermissionDeniedError(absl::StrCat(
        where, ": the signed statement disagrees with the state's ", field,
        " (signed: ", absl::CHexEscape(signed_value),
        ", shown: ", absl::CHexEscape(shown), ")"));
  };
  auto b = [](bool v) { return v ? "true" : "false"; };
  if (st.mode() != state.mode()) {
    return mismatch("mode", ModeName(st.mode()), ModeName(state.mode()));
  }
  if (st.epoch() != state.epoch()) {
    return mismatch("epoch", absl::StrCat(st.epoch()),
                    absl::StrCat(state.epoch()));
  }
  if (st.policy_revision() != state.policy_revision()) {
    return mismatch("policy_revision", st.policy_revision(),
                    state.policy_revision());
  }
  if (st.rule_id() != state.rule_id()) {
    return mismatch("rule_id", st.rule_id(), state.rule_id());
  }
  if (st.effective_at_ms() != state.effective_at_ms()) {
    return mismatch("effective_at_ms", absl::StrCat(st.effective_at_ms()),
                    absl::StrCat(state.effective_at_ms()));
  }
  if (st.pending_mode() != state.pending().new_mode()) {
    return mismatch("pending mode", ModeName(st.pending_mode()),
                    ModeName(state.pending().new_mode()));
  }
  if (st.pending_effective_at_ms() != state.pending().effective_at_ms()) {
    return mismatch("pending effective_at_ms",
                    absl::StrCat(st.pending_effective_at_ms()),
                    absl::StrCat(state.pending().effective_at_ms()));
  }
  if (st.locked() != state.locked()) {
    return mismatch("locked", b(st.locked()), b(state.locked()));
  }
  if (st.e2ee_ever_enabled() != state.e2ee_ever_enabled()) {
    return mismatch("e2ee_ever_enabled", b(st.e2ee_ever_enabled()),
                    b(state.e2ee_ever_enabled()));
  }
  return st;
}

}  // namespace parley::statement
