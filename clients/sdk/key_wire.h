// Conversions between the key directory's wire messages (api/, parley.v1)
// and the crypto layer's values (clients/crypto). Used by the SDK's
// SignalEngine and by parley-bench's real-Signal mode.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Pure functions: no I/O, thread-safe. Only public keys and signatures pass
// through here (the crypto layer never hands out private keys).
#ifndef PARLEY_CLIENTS_SDK_KEY_WIRE_H_
#define PARLEY_CLIENTS_SDK_KEY_WIRE_H_

#include <cstddef>
#include <vector>

#include "clients/crypto/crypto.h"
#include "parley/v1/parley.pb.h"

namespace parley {

// A fetched bundle as the crypto layer's ProcessBundle takes it. A bundle
// without a one-time pre-key (the server ran out) has none here either.
// Malformed keys are not checked here: ProcessBundle refuses them.
crypto::PreKeyBundle BundleFromProto(const v1::PreKeyBundle& b);

// The UploadKeys requests that publish `up`: identity key, registration id
// and signed pre-key in each, the one-time pre-keys split into requests of
// at most `max_pre_keys` (>= 1) each; one request when there are none.
std::vector<v1::UploadKeysRequest> UploadRequests(const crypto::PreKeyUpload& up,
                                                  size_t max_pre_keys);

}  // namespace parley

#endif  // PARLEY_CLIENTS_SDK_KEY_WIRE_H_
