// SPDX-License-Identifier: GPL-3.0-or-later
#include "clients/sdk/parse.h"

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace parley {
namespace {

bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

absl::StatusOr<v1::AccountKind> ParseAccountKind(absl::string_view text) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t == "personal") return v1::ACCOUNT_KIND_PERSONAL;
  if (t == "business") return v1::ACCOUNT_KIND_BUSINESS;
  if (t == "creator") return v1::ACCOUNT_KIND_CREATOR;
  if (t == "bot") return v1::ACCOUNT_KIND_BOT;
  return absl::InvalidArgumentError(
      absl::StrCat("invalid account kind \"", text,
                   "\" (expected personal, business, creator or bot)"));
}

absl::StatusOr<v1::AgeBand> ParseAgeBand(absl::string_view text) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t == "minor") return v1::AGE_BAND_MINOR;
  if (t == "adult") return v1::AGE_BAND_ADULT;
  if (t == "unknown") return v1::AGE_BAND_UNKNOWN;
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid age band \"", text, "\" (expected minor, adult or unknown)"));
}

namespace {
struct ReasonName {
  v1::ReportReason reason;
  const char* name;
};
constexpr ReasonName kReasons[] = {
    {v1::REPORT_REASON_SPAM, "spam"},
    {v1::REPORT_REASON_HARASSMENT, "harassment"},
    {v1::REPORT_REASON_HATE, "hate"},
    {v1::REPORT_REASON_VIOLENCE, "violence"},
    {v1::REPORT_REASON_SEXUAL_CONTENT, "sexual_content"},
    {v1::REPORT_REASON_CHILD_SAFETY, "child_safety"},
    {v1::REPORT_REASON_SELF_HARM, "self_harm"},
    {v1::REPORT_REASON_FRAUD, "fraud"},
    {v1::REPORT_REASON_OTHER, "other"},
};
}  // namespace

absl::StatusOr<v1::ReportReason> ParseReportReason(absl::string_view text) {
  std::string t = absl::AsciiStrToLower(text);
  for (char& c : t) {
    if (c == '-') c = '_';
  }
  for (const ReasonName& r : kReasons) {
    if (t == r.name) return r.reason;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid report reason \"", text,
      "\" (expected spam, harassment, hate, violence, sexual_content, "
      "child_safety, self_harm, fraud or other)"));
}

const char* ReportReasonName(v1::ReportReason reason) {
  for (const ReasonName& r : kReasons) {
    if (r.reason == reason) return r.name;
  }
  return "unspecified";
}

absl::StatusOr<std::string> ParseRegionCode(absl::string_view text) {
  if (text.empty()) return std::string();
  if (text.size() != 2 || !absl::ascii_isalpha(text[0]) ||
      !absl::ascii_isalpha(text[1])) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid region \"", text,
        "\" (expected an ISO 3166-1 alpha-2 code such as DE or US)"));
  }
  return absl::AsciiStrToUpper(text);
}

absl::Status ValidateUsername(absl::string_view username) {
  if (username.size() < 3 || username.size() > 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid username \"", username,
                     "\": must be 3 to 32 characters long"));
  }
  if (!IsLower(username[0])) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid username \"", username,
                     "\": must start with a lower-case letter a-z"));
  }
  for (char c : username) {
    if (!IsLower(c) && !IsDigit(c) && c != '_' && c != '.' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid username \"", username,
          "\": only a-z, 0-9, '_', '.' and '-' are allowed"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateProfileName(absl::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 && name[0] != '.';
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '-') ok = false;
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid profile name \"", name,
        "\": use 1-64 characters of A-Z a-z 0-9 _ . - (not starting with .)"));
  }
  return absl::OkStatus();
}

const char* AccountKindName(v1::AccountKind kind) {
  switch (kind) {
    case v1::ACCOUNT_KIND_PERSONAL:
      return "personal";
    case v1::ACCOUNT_KIND_BUSINESS:
      return "business";
    case v1::ACCOUNT_KIND_CREATOR:
      return "creator";
    case v1::ACCOUNT_KIND_BOT:
      return "bot";
    default:
      return "unspecified";
  }
}

const char* AgeBandName(v1::AgeBand band) {
  switch (band) {
    case v1::AGE_BAND_UNKNOWN:
      return "unknown";
    case v1::AGE_BAND_MINOR:
      return "minor";
    case v1::AGE_BAND_ADULT:
      return "adult";
    default:
      return "unspecified";
  }
}

const char* ConversationKindName(v1::ConversationKind kind) {
  switch (kind) {
    case v1::CONVERSATION_KIND_DIRECT:
      return "direct";
    case v1::CONVERSATION_KIND_GROUP:
      return "group";
    case v1::CONVERSATION_KIND_BROADCAST:
      return "broadcast";
    case v1::CONVERSATION_KIND_BUSINESS_SUPPORT:
      return "business-support";
    default:
      return "unspecified";
  }
}

const char* SecurityModeName(v1::SecurityMode mode) {
  switch (mode) {
    case v1::SECURITY_MODE_E2EE:
      return "e2ee";
    case v1::SECURITY_MODE_OPT_IN:
      return "opt-in";
    case v1::SECURITY_MODE_TRANSPORT:
      return "transport";
    default:
      return "unspecified";
  }
}

std::string TargetHost(absl::string_view target) {
  for (absl::string_view scheme : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(target, scheme)) {
      target.remove_prefix(scheme.size());
      break;
    }
  }
  if (!target.empty() && target[0] == '[') {
    const size_t end = target.find(']');
    if (end == absl::string_view::npos) return std::string(target);
    return std::string(target.substr(1, end - 1));
  }
  const size_t colon = target.rfind(':');
  // Exactly one colon: host:port. Several (bare IPv6) or none: all host.
  if (colon != absl::string_view::npos && target.find(':') == colon) {
    return std::string(target.substr(0, colon));
  }
  return std::string(target);
}

bool IsLoopbackTarget(absl::string_view target) {
  if (absl::StartsWith(target, "unix:") ||
      absl::StartsWith(target, "unix-abstract:")) {
    return true;
  }
  const std::string host = TargetHost(target);
  const std::string lower = absl::AsciiStrToLower(host);
  if (lower == "localhost" || lower == "localhost.") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) return v6.s6_addr[12] == 127;
  }
  return false;
}

std::string HexEncode(absl::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

std::string SanitizeForTerminal(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c < 0x20 || c == 0x7f) {
        out += absl::StrFormat("\\x%02x", c);
      } else {
        out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    // Decode one UTF-8 sequence; escape anything malformed byte by byte.
    size_t len = 0;
    uint32_t cp = 0;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    }
    bool valid = len != 0 && i + len <= text.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) valid = false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (valid) {
      static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        valid = false;
      }
    }
    if (!valid) {
      out += absl::StrFormat("\\x%02x", c);
      ++i;
      continue;
    }
    if (cp >= 0x80 && cp <= 0x9f) {  // C1 controls (e.g. CSI)
      out += absl::StrFormat("\\u%04x", cp);
    } else {
      out.append(text.data() + i, len);
    }
    i += len;
  }
  return out;
}

}  // namespace parley
