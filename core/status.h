// Status helpers used across qshard: the return-if-error / assign-or-return macro pair
// (Debian's Abseil predates absl's own) and small constructors for contextual errors.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define QSHARD_STATUS_CONCAT_INNER(a, b) a##b
#define QSHARD_STATUS_CONCAT(a, b) QSHARD_STATUS_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define QSHARD_RETURN_IF_ERROR(expr)               \
  do {                                             \
    ::absl::Status qshard_status_ = (expr);        \
    if (!qshard_status_.ok()) return qshard_status_; \
  } while (0)

// `QSHARD_ASSIGN_OR_RETURN(auto x, MakeX());` unwraps a StatusOr or returns its error.
#define QSHARD_ASSIGN_OR_RETURN(lhs, expr) \
  QSHARD_ASSIGN_OR_RETURN_IMPL(QSHARD_STATUS_CONCAT(qshard_statusor_, __LINE__), lhs, expr)
#define QSHARD_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                 \
  if (!statusor.ok()) return statusor.status();           \
  lhs = std::move(statusor).value()

namespace qshard {

// Prefixes a status message with context ("model.safetensors: ..."), keeping its code.
inline absl::Status WithContext(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), std::string(context) + ": " + std::string(status.message()));
}

}  // namespace qshard
