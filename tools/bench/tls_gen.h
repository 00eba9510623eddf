// In-memory TLS material for the null server: a throw-away CA and a server
// certificate for localhost / 127.0.0.1 / ::1 (OpenSSL 3, P-256).
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TOOLS_BENCH_TLS_GEN_H_
#define PARLEY_TOOLS_BENCH_TLS_GEN_H_

#include <string>

#include "absl/status/statusor.h"

namespace parley::bench {

struct GeneratedTls {
  std::string ca_pem;    // what clients trust
  std::string cert_pem;  // server certificate (signed by the CA)
  std::string key_pem;   // server private key
};

absl::StatusOr<GeneratedTls> GenerateLocalTls();

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_TLS_GEN_H_
