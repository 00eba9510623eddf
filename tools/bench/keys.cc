// SPDX-License-Identifier: GPL-3.0-or-later
#include "tools/bench/keys.h"

#include <stdlib.h>

#include <filesystem>

#include "clients/crypto/crypto.h"
#include "clients/sdk/key_wire.h"

namespace parley::bench {

absl::StatusOr<v1::UploadKeysRequest> MakeKeyUploadTemplate() {
  char tmpl[] = "/tmp/parley_bench_keys_XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  const std::string dir = tmpl;
  v1::UploadKeysRequest req;
  absl::Status status;
  {
    auto c = crypto::DeviceCrypto::Open(dir + "/profile");
    if (!c.ok()) {
      status = c.status();
    } else {
      auto up = (*c)->CurrentPreKeys();
      if (!up.ok()) {
        status = up.status();
      } else {
        req = UploadRequests(*up, 1).front();
      }
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!status.ok()) return status;
  return req;
}

uint32_t RegistrationIdFor(uint64_t n) {
  return static_cast<uint32_t>(1 + n % 16380);
}

}  // namespace parley::bench
