// Local TLS material for parleyd: a CA and a server certificate.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// On first start parleyd creates <dir>/ca.pem + ca.key (a local CA, valid 10
// years) and <dir>/server.pem + server.key (P-256, signed by that CA, valid
// 825 days, subjectAltName localhost, 127.0.0.1, ::1 and the listen host).
// Later starts reuse them. Private keys are written 0600, the directory 0700.
// Clients trust <dir>/ca.pem.
//
// Thread-compatible: call from one thread at start-up.
#ifndef PARLEY_CORE_TLS_H_
#define PARLEY_CORE_TLS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace parley::core {

struct TlsMaterial {
  std::string ca_cert_path;  // empty for operator-provided certificates
  std::string cert_chain_pem;
  std::string private_key_pem;
};

// A CA and a server certificate made in memory (PEM): a P-256 CA valid
// `ca_days` and a P-256 server certificate signed by it, valid `server_days`,
// subjectAltName localhost, 127.0.0.1, ::1 and `hosts` (IP addresses or DNS
// names; the wildcard addresses 0.0.0.0 and :: are left out).
struct GeneratedTls {
  std::string ca_cert_pem;  // what clients trust
  std::string ca_key_pem;   // secret: signs further certificates
  std::string cert_pem;     // the server certificate
  std::string key_pem;      // secret: the server's private key
};
absl::StatusOr<GeneratedTls> GenerateTls(const std::string& ca_name,
                                         const std::string& server_name,
                                         const std::vector<std::string>& hosts,
                                         int ca_days, int server_days);

// Loads <dir>/server.pem and server.key, creating the CA and server
// certificate first if they do not exist. `hosts` are added to the server
// certificate's subjectAltName (IP addresses or DNS names).
absl::StatusOr<TlsMaterial> EnsureLocalTls(const std::string& dir,
                                           const std::vector<std::string>& hosts);

// Loads operator-provided PEM files.
absl::StatusOr<TlsMaterial> LoadTls(const std::string& cert_file,
                                    const std::string& key_file);

// Reads a whole file (used for PEM files); errors name the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);
// Writes a file atomically (temp file + rename) with the given mode.
absl::Status WriteFileAtomic(const std::string& path, const std::string& data, int mode);

}  // namespace parley::core

#endif  // PARLEY_CORE_TLS_H_
