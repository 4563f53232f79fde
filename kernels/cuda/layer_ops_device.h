// The row-wise building blocks of a decoder layer on the device, the counterparts of
// worker/model/layer_ops.h and rotary.h on [rows, cols] float32 row-major matrices: norms
// (statistics in float64, as on the CPU), linears through cuBLAS SGEMM (IEEE float32, no TF32),
// bias + activation, the SiLU gate and RoPE. Every function queues work on `stream` and returns
// once it is queued; each launch is checked.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

// out = (x − mean) / sqrt(var + eps) · weight + bias per row (biased variance, two passes),
// as torch's LayerNorm. out may be x (in place).
CudaStatus LayerNormRows(const float* x, const float* weight, const float* bias, double eps, int64_t rows,
                         int64_t cols, float* out, cudaStream_t stream);
// out = weight · (x · rsqrt(mean(x²) + eps)) per row (LLaMA RMSNorm). out may be x.
CudaStatus RmsNormRows(const float* x, const float* weight, double eps, int64_t rows, int64_t cols, float* out,
                       cudaStream_t stream);

enum class Activation { kNone, kRelu };

// y [rows, out] = x [rows, in] · Wᵀ (+ y when `accumulate`), then + bias and the activation.
// W is [out, in] row-major (torch's nn.Linear layout); bias [out] or null. The cuBLAS handle
// must be bound to `stream`.
CudaStatus LinearForward(cublasHandle_t blas, cudaStream_t stream, const float* weight, const float* bias,
                         int64_t out_features, int64_t in_features, const float* x, int64_t rows, float* y,
                         bool accumulate, Activation activation);
// y [rows, cols] += bias [cols] (when not null), then the activation, in place: LinearForward's
// epilogue, also run after linears computed by other kernels (layer_forward.h's DeviceLinearKernel).
CudaStatus BiasActivationRows(float* y, const float* bias, int64_t rows, int64_t cols, Activation activation,
                              cudaStream_t stream);

// gate = silu(gate) · up, elementwise over `count` values.
CudaStatus SiluMultiplyInPlace(float* gate, const float* up, int64_t count, cudaStream_t stream);

// cos and sin [tokens, head_dim / 2] of positions 0..tokens−1, computed as
// worker/model/rotary.cc does: float32 inverse frequencies 1 / theta^(2i/d), the float32 product
// position · inv_freq, its cosine and sine in float64 rounded to float32.
CudaStatus RopeTable(int64_t tokens, int64_t head_dim, double theta, float* cos, float* sin, cudaStream_t stream);
// The same for positions first_position .. first_position + tokens − 1 (decoding with a cache).
CudaStatus RopeTable(int64_t tokens, int64_t first_position, int64_t head_dim, double theta, float* cos, float* sin,
                     cudaStream_t stream);
// Rotates x [tokens, heads · head_dim] in place, dimension i of a head paired with i + head_dim/2
// (Hugging Face's rotate_half layout).
CudaStatus ApplyRope(float* x, int64_t tokens, int64_t heads, int64_t head_dim, const float* cos, const float* sin,
                     cudaStream_t stream);

}  // namespace qshard::gpu
