// Dequantization to fp16 and the cuBLAS fp16 product. Speed matters only for the cuBLAS call:
// the dequantization runs once per layer, so it is written for plainness (one thread per
// qweight word, unpacking like the specification reads).
#include "kernels/cuda/gptq_baseline.h"

#include <algorithm>
#include <cstdint>

namespace qshard::gpu {
namespace {

__global__ void DequantizeGptqKernel(GptqMatrixView w, __half* __restrict__ weight) {
  const int pack = layout::GptqCodesPerWord(w.bits);
  const uint32_t mask = layout::GptqCodeMask(w.bits);
  const int in = w.in_features;
  const int out = w.out_features;
  const size_t words = static_cast<size_t>(in / pack) * out;
  for (size_t e = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; e < words;
       e += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int row = static_cast<int>(e / out);
    const int o = static_cast<int>(e % out);
    const uint32_t word = static_cast<uint32_t>(w.qweight[e]);
    for (int k = 0; k < pack; ++k) {
      const int i = row * pack + k;
      const int g = min(max(w.g_idx[i], 0), w.groups - 1);
      const uint32_t zero_word =
          static_cast<uint32_t>(w.qzeros[static_cast<size_t>(g) * (out / pack) + o / pack]);
      const int zero = static_cast<int>((zero_word >> (o % pack * w.bits)) & mask) + layout::kGptqZeroOffset;
      const int q = static_cast<int>((word >> (k * w.bits)) & mask);
      const float scale = __half2float(w.scales[static_cast<size_t>(g) * out + o]);
      weight[static_cast<size_t>(o) * in + i] = __float2half_rn(static_cast<float>(q - zero) * scale);
    }
  }
}

}  // namespace

CudaStatus DequantizeGptq(const GptqMatrixView& w, __half* weight, cudaStream_t stream) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateGptqShape(w));
  if (w.qweight == nullptr || w.qzeros == nullptr || w.scales == nullptr || w.g_idx == nullptr ||
      weight == nullptr) {
    return CudaStatus::Error("DequantizeGptq: null qweight, qzeros, scales, g_idx or weight");
  }
  constexpr int kThreads = 256;
  const int64_t words = static_cast<int64_t>(w.in_features / layout::GptqCodesPerWord(w.bits)) * w.out_features;
  const int blocks = static_cast<int>(std::min<int64_t>((words + kThreads - 1) / kThreads, 65536));
  DequantizeGptqKernel<<<blocks, kThreads, 0, stream>>>(w, weight);
  QSHARD_CUDA_CHECK_LAUNCH("DequantizeGptqKernel");
  return CudaStatus();
}

CublasHandle::~CublasHandle() {
  if (handle_ != nullptr) cublasDestroy(handle_);
}

CudaStatus CublasHandle::Create(cudaStream_t stream) {
  if (handle_ == nullptr) QSHARD_CUBLAS_TRY(cublasCreate(&handle_));
  QSHARD_CUBLAS_TRY(cublasSetStream(handle_, stream));
  return CudaStatus();
}

CudaStatus HalfMatmulCublas(const CublasHandle& handle, const __half* x, int tokens,
                            const __half* weight, int in_features, int out_features, __half* y) {
  return HalfMatmulCublas(handle.get(), x, tokens, weight, in_features, out_features, y);
}

CudaStatus HalfMatmulCublas(cublasHandle_t handle, const __half* x, int tokens, const __half* weight,
                            int in_features, int out_features, __half* y) {
  if (handle == nullptr) return CudaStatus::Error("HalfMatmulCublas: handle not created");
  if (tokens < 0 || in_features <= 0 || out_features <= 0) {
    return CudaStatus::Error("HalfMatmulCublas: bad shape");
  }
  if (tokens == 0) return CudaStatus();
  // cuBLAS is column-major: row-major y[tokens, out] is column-major yᵀ[out, tokens] =
  // W[out, in] · xᵀ[in, tokens], and row-major W[out, in] is column-major Wᵀ, hence OP_T.
  const float alpha = 1.0f;
  const float beta = 0.0f;
  QSHARD_CUBLAS_TRY(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, out_features, tokens,
                                 in_features, &alpha, weight, CUDA_R_16F, in_features, x,
                                 CUDA_R_16F, in_features, &beta, y, CUDA_R_16F, out_features,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return CudaStatus();
}

}  // namespace qshard::gpu
