// CudaStatus without the CUDA headers (cuda_status.h adds the CUDA error macros), for the parts
// of kernels/cuda that are plain C++ and built without CUDA too (layer_architecture.h,
// device_memory_bytes.h: `qshard plan --device-memory` in every build).
#pragma once

#include <string>
#include <utility>

namespace qshard::gpu {

class CudaStatus {
 public:
  CudaStatus() = default;  // success
  static CudaStatus Error(std::string message) {
    CudaStatus status;
    status.message_ = message.empty() ? "unknown error" : std::move(message);
    return status;
  }

  bool ok() const { return message_.empty(); }
  const std::string& message() const { return message_; }

 private:
  std::string message_;  // empty on success
};

}  // namespace qshard::gpu

// Propagates a failed CudaStatus from a nested call.
#define QSHARD_CUDA_RETURN_IF_ERROR(expr)                       \
  do {                                                          \
    ::qshard::gpu::CudaStatus qshard_cuda_status_ = (expr);     \
    if (!qshard_cuda_status_.ok()) return qshard_cuda_status_;  \
  } while (0)
