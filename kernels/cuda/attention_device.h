// Causal softmax self-attention of one window on the device, the counterpart of
// worker/model/attention.h with grouped-query attention (query head h reads key/value head
// h / (heads / kv_heads)). The simple form, planned in attention_plan.h: queries in blocks of
// kAttentionQueryBlock rows; per block, the scores of every head against the keys up to the
// block's last row by cublasSgemmStridedBatched (float32, scaled), a softmax kernel per row that
// zeroes what the mask hides, and the probabilities times the values by a second strided-batched
// SGEMM. Blocks skip the keys after their last row, so about half of the full T×T products are
// computed, not all; the scores of one block go through device memory (no fused flash kernel).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

// q [tokens, heads·head_dim], k and v [tokens, kv_heads·head_dim] (row-major) -> out [tokens,
// heads·head_dim]. Scores are (q·k)·scale with later positions masked. `scores` holds
// AttentionScratchFloats(dims) floats. The cuBLAS handle must be bound to `stream`.
CudaStatus CausalAttentionOnDevice(cublasHandle_t blas, cudaStream_t stream, const AttentionDims& dims,
                                   const float* q, const float* k, const float* v, float scale, float* scores,
                                   float* out);

// The softmax step alone, as the attention runs it: for each of `heads` blocks of `rows` rows of
// `keys` scores (row i of head h at scores + (h·rows + i)·keys), the softmax over keys
// 0..first_row + i, the later keys set to 0. For aespa's statistics (attention_stats_device.h),
// which form one head's probabilities at a time.
CudaStatus CausalSoftmaxOnDevice(float* scores, int64_t rows, int64_t keys, int64_t first_row, int64_t heads,
                                 cudaStream_t stream);

// Decoding with a key/value cache: q [tokens, heads·head_dim] of positions first_position ..
// first_position + tokens − 1, k_cache and v_cache [≥ first_position + tokens, kv_heads·head_dim]
// holding every position up to the last query's -> out [tokens, heads·head_dim]; query t sees keys
// 0 .. first_position + t. One block per query row and head (scores in shared memory: at most
// kCachedAttentionMaxKeys keys), float32 with a fixed reduction order; meant for a few tokens
// per call, not for prefill-sized windows (CausalAttentionOnDevice).
inline constexpr int64_t kCachedAttentionMaxKeys = 8192;
CudaStatus CachedAttentionOnDevice(cudaStream_t stream, const AttentionDims& dims, int64_t first_position,
                                   const float* q, const float* k_cache, const float* v_cache, float scale,
                                   float* out);

}  // namespace qshard::gpu
