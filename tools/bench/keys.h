// Valid Signal key uploads for the bench's devices (E2EE pre-encrypted mode).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// parleyd checks that the signed pre-key verifies with the identity key; it
// does not require distinct keys per device. One identity (made once with
// clients/crypto in a temporary profile) is uploaded for every device, each
// with its own registration id, and no one-time pre-keys (the bench never
// fetches bundles: its ciphertexts are opaque bytes).
#ifndef PARLEY_TOOLS_BENCH_KEYS_H_
#define PARLEY_TOOLS_BENCH_KEYS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "parley/v1/parley.pb.h"

namespace parley::bench {

// The upload template (registration id to be set per device).
absl::StatusOr<v1::UploadKeysRequest> MakeKeyUploadTemplate();

// A registration id in parleyd's range (1..16380) for the n-th device.
uint32_t RegistrationIdFor(uint64_t n);

}  // namespace parley::bench

#endif  // PARLEY_TOOLS_BENCH_KEYS_H_
