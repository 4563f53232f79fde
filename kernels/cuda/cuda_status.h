// Error values for the CUDA kernels: every public function returns a CudaStatus instead of
// throwing or aborting. It is kept free of Abseil so that the CUDA-only build (GPU machines
// without the Debian packages) needs nothing but the CUDA toolkit. CudaStatus itself is in
// cuda_status_plain.h; this adds what names CUDA's errors.
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>
#include <cusolver_common.h>

#include <string>

#include "kernels/cuda/cuda_status_plain.h"

namespace qshard::gpu {

// "file:line: what failed: why", the form every macro below produces.
inline CudaStatus CallSiteError(const char* file, int line, const char* what, const std::string& why) {
  return CudaStatus::Error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " + why);
}

inline std::string DescribeCudaError(cudaError_t error) {
  return std::string(cudaGetErrorName(error)) + " (" + cudaGetErrorString(error) + ")";
}

}  // namespace qshard::gpu

// Returns a CudaStatus naming the call site when `expr` (a cudaError_t) is not cudaSuccess.
#define QSHARD_CUDA_TRY(expr)                                                               \
  do {                                                                                      \
    const cudaError_t qshard_cuda_error_ = (expr);                                          \
    if (qshard_cuda_error_ != cudaSuccess) {                                                \
      return ::qshard::gpu::CallSiteError(__FILE__, __LINE__, #expr,                        \
                                          ::qshard::gpu::DescribeCudaError(qshard_cuda_error_)); \
    }                                                                                       \
  } while (0)

// Same for cuBLAS calls (cublasStatus_t).
#define QSHARD_CUBLAS_TRY(expr)                                                             \
  do {                                                                                      \
    const cublasStatus_t qshard_cublas_status_ = (expr);                                    \
    if (qshard_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                   \
      return ::qshard::gpu::CallSiteError(__FILE__, __LINE__, #expr,                        \
                                          cublasGetStatusString(qshard_cublas_status_));    \
    }                                                                                       \
  } while (0)

// Same for cuSOLVER calls (cusolverStatus_t; cuSOLVER has no status-string function).
#define QSHARD_CUSOLVER_TRY(expr)                                                           \
  do {                                                                                      \
    const cusolverStatus_t qshard_cusolver_status_ = (expr);                                \
    if (qshard_cusolver_status_ != CUSOLVER_STATUS_SUCCESS) {                               \
      return ::qshard::gpu::CallSiteError(__FILE__, __LINE__, #expr,                        \
                                          "cusolverStatus_t " +                             \
                                              std::to_string(static_cast<int>(qshard_cusolver_status_))); \
    }                                                                                       \
  } while (0)

// Kernel launches report configuration errors only through cudaGetLastError.
#define QSHARD_CUDA_CHECK_LAUNCH(kernel_name)                                              \
  do {                                                                                      \
    const cudaError_t qshard_launch_error_ = cudaGetLastError();                           \
    if (qshard_launch_error_ != cudaSuccess) {                                              \
      return ::qshard::gpu::CallSiteError(__FILE__, __LINE__, "launch of " kernel_name,     \
                                          ::qshard::gpu::DescribeCudaError(qshard_launch_error_)); \
    }                                                                                       \
  } while (0)
