// SPDX-License-Identifier: GPL-3.0-or-later
//
// Internal: the OpenSSL 3 crypto provider for libsignal-protocol-c.
//
// random: RAND_bytes; HMAC-SHA256: EVP_MAC ("HMAC", digest SHA256);
// SHA-512: EVP_MD_CTX / EVP_Digest*; AES-CBC-PKCS5 and AES-CTR with 128-,
// 192- or 256-bit keys (chosen by key length) via EVP_CIPHER_CTX. Only
// non-deprecated OpenSSL 3 API (the library is compiled with
// OPENSSL_API_COMPAT=30000 and OPENSSL_NO_DEPRECATED). Callbacks keep no
// shared state besides immutable algorithm handles, so they are thread-safe;
// intermediate buffers are wiped with OPENSSL_cleanse.
#ifndef PARLEY_CLIENTS_CRYPTO_OPENSSL_PROVIDER_H_
#define PARLEY_CLIENTS_CRYPTO_OPENSSL_PROVIDER_H_

#include <signal/signal_protocol.h>

namespace parley::crypto {

// The provider (user_data is unused and null). Valid for the whole program.
const signal_crypto_provider& OpenSslCryptoProvider();

// Recursive locking functions for signal_context_set_locking_functions; the
// signal_context's user_data must point to a std::recursive_mutex.
void SignalLock(void* recursive_mutex);
void SignalUnlock(void* recursive_mutex);

}  // namespace parley::crypto

#endif  // PARLEY_CLIENTS_CRYPTO_OPENSSL_PROVIDER_H_
