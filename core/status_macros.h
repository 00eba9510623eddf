// Small status helpers for core (Abseil 20220623 ships no status macros).
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_CORE_STATUS_MACROS_H_
#define PARLEY_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PARLEY_CONCAT_INNER_(a, b) a##b
#define PARLEY_CONCAT_(a, b) PARLEY_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define PARLEY_RETURN_IF_ERROR(expr)             \
  do {                                           \
    ::absl::Status parley_status_ = (expr);      \
    if (!parley_status_.ok()) return parley_status_; \
  } while (0)

// `lhs = value of expr` (an absl::StatusOr<T>), or returns its error.
#define PARLEY_ASSIGN_OR_RETURN(lhs, expr) \
  PARLEY_ASSIGN_OR_RETURN_IMPL_(PARLEY_CONCAT_(parley_statusor_, __LINE__), lhs, expr)
#define PARLEY_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return std::move(tmp).status();      \
  lhs = std::move(tmp).value()

#endif  // PARLEY_CORE_STATUS_MACROS_H_
