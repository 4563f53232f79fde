// The fp16 baseline the GPTQ kernels are measured against: dequantize the layer once to fp16
// (the nn.Linear layout [out, in]) and multiply with cuBLAS, as an unquantized model would.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/gptq_layout.h"

namespace qshard::gpu {

// weight[o * in + i] = fp16(scales[g, o] * (q(i, o) − zero(g, o))), g = g_idx[i]: the product
// is exact in fp32, so each weight is the correctly rounded fp16 of the exact value.
CudaStatus DequantizeGptq(const GptqMatrixView& w, __half* weight, cudaStream_t stream);

// Owns a cuBLAS handle bound to one stream.
class CublasHandle {
 public:
  CublasHandle() = default;
  ~CublasHandle();
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;

  CudaStatus Create(cudaStream_t stream);
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

// y[tokens, out] = x[tokens, in] · weight[out, in]ᵀ, fp16 in and out, fp32 accumulation
// (cublasGemmEx with CUBLAS_COMPUTE_32F), queued on the handle's stream.
CudaStatus HalfMatmulCublas(const CublasHandle& handle, const __half* x, int tokens,
                            const __half* weight, int in_features, int out_features, __half* y);
// The same on a handle owned elsewhere (a SolverContext's), bound to the stream to queue on.
CudaStatus HalfMatmulCublas(cublasHandle_t handle, const __half* x, int tokens, const __half* weight,
                            int in_features, int out_features, __half* y);

}  // namespace qshard::gpu
