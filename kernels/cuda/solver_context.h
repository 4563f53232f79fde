// The cuBLAS and cuSOLVER handles the device statistics and GPTQ solver run on, bound to one
// stream. One context per stream (and per thread): handles are not shared across streams.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

class SolverContext {
 public:
  SolverContext() = default;
  ~SolverContext();
  SolverContext(const SolverContext&) = delete;
  SolverContext& operator=(const SolverContext&) = delete;

  // Creates the handles on the current device. cuBLAS keeps its default math mode: float32
  // GEMMs stay IEEE float32 (no TF32), as the CPU solver's are.
  CudaStatus Init(cudaStream_t stream);

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
  cusolverDnHandle_t solver() const { return solver_; }
  cusolverDnParams_t solver_params() const { return params_; }

 private:
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cusolverDnHandle_t solver_ = nullptr;
  cusolverDnParams_t params_ = nullptr;
};

}  // namespace qshard::gpu
