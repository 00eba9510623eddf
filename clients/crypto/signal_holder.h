// SPDX-License-Identifier: GPL-3.0-or-later
//
// Internal: RAII holders for libsignal-protocol-c objects and SG_ERR_* ->
// absl::Status mapping. Not part of the public API (clients/crypto/crypto.h).
// Like every libsignal object, holders belong to one thread at a time.
#ifndef PARLEY_CLIENTS_CRYPTO_SIGNAL_HOLDER_H_
#define PARLEY_CLIENTS_CRYPTO_SIGNAL_HOLDER_H_

#include <signal/signal_protocol.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace parley::crypto {

// Owns one reference to a ref-counted libsignal object (anything whose first
// member is signal_type_base) and drops it with SIGNAL_UNREF.
template <typename T>
class SignalPtr {
 public:
  SignalPtr() = default;
  explicit SignalPtr(T* p) : p_(p) {}
  SignalPtr(const SignalPtr&) = delete;
  SignalPtr& operator=(const SignalPtr&) = delete;
  SignalPtr(SignalPtr&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  SignalPtr& operator=(SignalPtr&& o) noexcept {
    if (this != &o) reset(std::exchange(o.p_, nullptr));
    return *this;
  }
  ~SignalPtr() { reset(); }

  T* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }
  // For out-parameters: drops the current object, returns &p_.
  T** out() {
    reset();
    return &p_;
  }
  void reset(T* p = nullptr) {
    if (p_ != nullptr) SIGNAL_UNREF(p_);
    p_ = p;
  }

 private:
  T* p_ = nullptr;
};

// Owns a signal_buffer; `secret` buffers are zeroed before being freed.
class SignalBuffer {
 public:
  explicit SignalBuffer(bool secret = false) : secret_(secret) {}
  SignalBuffer(const SignalBuffer&) = delete;
  SignalBuffer& operator=(const SignalBuffer&) = delete;
  ~SignalBuffer() { reset(); }

  signal_buffer* get() const { return b_; }
  signal_buffer** out() {
    reset();
    return &b_;
  }
  void reset() {
    if (b_ == nullptr) return;
    if (secret_) {
      signal_buffer_bzero_free(b_);
    } else {
      signal_buffer_free(b_);
    }
    b_ = nullptr;
  }
  std::string_view view() const {
    if (b_ == nullptr) return {};
    return {reinterpret_cast<const char*>(signal_buffer_const_data(b_)),
            signal_buffer_len(b_)};
  }

 private:
  signal_buffer* b_ = nullptr;
  bool secret_;
};

// Maps a negative SG_ERR_* code to a Status. `what` names the operation,
// `peer` (may be empty) the remote party, e.g. "bob.2".
absl::Status SignalError(int code, std::string_view what,
                         std::string_view peer = {});

inline std::string_view AsView(const signal_buffer* b) {
  return {reinterpret_cast<const char*>(signal_buffer_const_data(b)),
          signal_buffer_len(b)};
}
// Abseil 20220623 here has its own absl::string_view (not std::string_view).
inline absl::string_view AV(std::string_view s) { return {s.data(), s.size()}; }

inline const uint8_t* AsBytes(std::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

}  // namespace parley::crypto

#endif  // PARLEY_CLIENTS_CRYPTO_SIGNAL_HOLDER_H_
