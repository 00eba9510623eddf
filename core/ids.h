// Identifiers, bearer tokens and input validation shared by the services.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Thread-safe: every function is pure or uses OpenSSL's thread-safe RNG.
#ifndef PARLEY_CORE_IDS_H_
#define PARLEY_CORE_IDS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace parley::core {

// Lower-case hex of `n` random bytes from OpenSSL's CSPRNG.
std::string RandomHex(size_t n);

// New identifiers: "a_" / "c_" followed by 24 hex characters (96 bits).
std::string NewAccountId();
std::string NewConversationId();

// A fresh bearer token: 64 hex characters (256 random bits).
std::string NewToken();
// SHA-256 of `data` as 32 raw bytes.
std::string Sha256(absl::string_view data);

// Validation. Each error is INVALID_ARGUMENT naming `field`.
absl::Status ValidateAccountId(absl::string_view id, absl::string_view field);
absl::Status ValidateConversationId(absl::string_view id, absl::string_view field);
// Canonicalises (lower-cases) and checks a username: 3-32 characters of
// a-z 0-9 _ . - starting with a letter.
absl::StatusOr<std::string> CanonicalUsername(absl::string_view username,
                                              absl::string_view field);
// Valid UTF-8, no control characters, at most max_bytes; empty allowed iff
// allow_empty.
absl::Status ValidateText(absl::string_view text, size_t max_bytes,
                          bool allow_empty, absl::string_view field);
absl::Status ValidateUtf8(absl::string_view text, absl::string_view field);
// 1-64 printable ASCII characters.
absl::Status ValidateClientMessageId(absl::string_view id, absl::string_view field);
// Empty, or two upper-case ASCII letters (ISO 3166-1 alpha-2).
absl::Status ValidateRegionCode(absl::string_view code, absl::string_view field);
// "Bearer <64 lower-case hex>" -> the token; UNAUTHENTICATED otherwise.
absl::StatusOr<std::string> ParseBearer(absl::string_view header);

}  // namespace parley::core

#endif  // PARLEY_CORE_IDS_H_
