// Causal softmax self-attention of one window on the device, the counterpart of
// worker/model/attention.h with grouped-query attention (query head h reads key/value head
// h / (heads / kv_heads)). The simple form: queries in blocks of kAttentionQueryBlock rows;
// per block, the scores of every head against the keys up to the block's last row by
// cublasSgemmStridedBatched (float32, scaled), a softmax kernel per row that zeroes what the
// mask hides, and the probabilities times the values by a second strided-batched SGEMM. Blocks
// skip the keys after their last row, so about half of the full T×T products are computed,
// not all; the scores of one block go through device memory (no fused flash kernel).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

inline constexpr int64_t kAttentionQueryBlock = 128;

struct AttentionDims {
  int64_t tokens = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
};

// Floats of the scores scratch CausalAttentionOnDevice needs: heads × min(block, tokens) × tokens.
int64_t AttentionScratchFloats(const AttentionDims& dims);

// q [tokens, heads·head_dim], k and v [tokens, kv_heads·head_dim] (row-major) -> out [tokens,
// heads·head_dim]. Scores are (q·k)·scale with later positions masked. `scores` holds
// AttentionScratchFloats(dims) floats. The cuBLAS handle must be bound to `stream`.
CudaStatus CausalAttentionOnDevice(cublasHandle_t blas, cudaStream_t stream, const AttentionDims& dims,
                                   const float* q, const float* k, const float* v, float scale, float* scores,
                                   float* out);

// Multiply-adds counted twice (FLOPs) of the scores and the weighted sum: the causal ones
// (those the mask keeps) and those this blocked form executes.
double CausalAttentionFlops(const AttentionDims& dims);
double ExecutedAttentionFlops(const AttentionDims& dims);

}  // namespace qshard::gpu
