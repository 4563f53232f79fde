// CausalAttentionOnDevice: per block of query rows, two strided-batched SGEMMs per query head
// of a key/value group around a row-softmax kernel. cuBLAS sees each head as a column-major
// matrix inside the row-major [tokens, heads·head_dim] activations (leading dimension the row
// width), so no head is ever copied out.
#include "kernels/cuda/attention_device.h"

#include <algorithm>
#include <cmath>

#include "kernels/cuda/block_reduce.cuh"

namespace qshard::gpu {
namespace {

constexpr int kSoftmaxThreads = 128;

// Row i of head h of a block of `rows` query rows starting at `first_row`, its `keys` scores
// stored contiguously: softmax over the keys 0..first_row+i it may see, 0 for the later ones.
__global__ void CausalSoftmaxKernel(float* scores, int64_t rows, int64_t keys, int64_t first_row) {
  __shared__ float shared[kReduceMaxWarps];
  float* row = scores + (blockIdx.y * rows + blockIdx.x) * keys;
  const int64_t visible = first_row + blockIdx.x + 1;
  float largest = -INFINITY;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) largest = fmaxf(largest, row[j]);
  largest = BlockReduce(largest, MaxOp(), shared);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) {
    const float e = expf(row[j] - largest);
    row[j] = e;
    sum += e;
  }
  const float inverse_sum = 1.0f / BlockReduce(sum, SumOp(), shared);
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) row[j] *= inverse_sum;  // the thread's own writes
  for (int64_t j = visible + threadIdx.x; j < keys; j += blockDim.x) row[j] = 0.0f;
}

int64_t BlockRows(const AttentionDims& d) { return std::min(kAttentionQueryBlock, d.tokens); }

}  // namespace

int64_t AttentionScratchFloats(const AttentionDims& d) { return d.heads * BlockRows(d) * d.tokens; }

double CausalAttentionFlops(const AttentionDims& d) {
  // Row i sees i + 1 keys: Σ (i + 1) = T(T + 1)/2 per head, for the scores and the weighted sum.
  return 2.0 * 2.0 * d.heads * d.head_dim * (0.5 * d.tokens * (d.tokens + 1.0));
}

double ExecutedAttentionFlops(const AttentionDims& d) {
  double keys_times_rows = 0.0;
  for (int64_t first = 0; first < d.tokens; first += kAttentionQueryBlock) {
    const int64_t rows = std::min(kAttentionQueryBlock, d.tokens - first);
    keys_times_rows += static_cast<double>(rows) * (first + rows);
  }
  return 2.0 * 2.0 * d.heads * d.head_dim * keys_times_rows;
}

CudaStatus CausalAttentionOnDevice(cublasHandle_t blas, cudaStream_t stream, const AttentionDims& d, const float* q,
                                   const float* k, const float* v, float scale, float* scores, float* out) {
  if (d.tokens <= 0) return CudaStatus();
  if (d.heads <= 0 || d.kv_heads <= 0 || d.head_dim <= 0 || d.heads % d.kv_heads != 0)
    return CudaStatus::Error("CausalAttentionOnDevice: heads must be a positive multiple of kv_heads");
  if (d.tokens > 2147483647 || d.heads * d.head_dim > 2147483647)
    return CudaStatus::Error("CausalAttentionOnDevice: dimensions exceed cuBLAS's int");
  const int64_t group = d.heads / d.kv_heads;  // query heads per key/value head
  const int hd = static_cast<int>(d.head_dim);
  const int q_ld = static_cast<int>(d.heads * d.head_dim), kv_ld = static_cast<int>(d.kv_heads * d.head_dim);
  const int batch = static_cast<int>(d.kv_heads);
  const float one = 1.0f, zero = 0.0f;
  for (int64_t first = 0; first < d.tokens; first += kAttentionQueryBlock) {
    const int64_t rows = std::min(kAttentionQueryBlock, d.tokens - first);
    const int64_t keys = first + rows;  // the keys the block's last row sees
    const long long head_scores = rows * keys;  // head h's scores at scores + h·head_scores, [rows, keys] row-major
    const float* q_block = q + first * q_ld;
    float* out_block = out + first * q_ld;
    // Batch index g runs over the key/value heads; call r takes query head g·group + r of each.
    for (int64_t r = 0; r < group; ++r) {
      // Scores, column-major [keys, rows] = K_gᵀ (K_g: column-major [hd, keys]) · Q_h ([hd, rows]).
      QSHARD_CUBLAS_TRY(cublasSgemmStridedBatched(
          blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(keys), static_cast<int>(rows), hd, &scale, k, kv_ld,
          d.head_dim, q_block + r * d.head_dim, q_ld, group * d.head_dim, &zero, scores + r * head_scores,
          static_cast<int>(keys), group * head_scores, batch));
    }
    CausalSoftmaxKernel<<<dim3(static_cast<unsigned>(rows), static_cast<unsigned>(d.heads)), kSoftmaxThreads, 0,
                          stream>>>(scores, rows, keys, first);
    QSHARD_CUDA_CHECK_LAUNCH("CausalSoftmaxKernel");
    for (int64_t r = 0; r < group; ++r) {
      // Output, column-major [hd, rows] = V_g ([hd, keys]) · P_h (column-major [keys, rows]).
      QSHARD_CUBLAS_TRY(cublasSgemmStridedBatched(
          blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, static_cast<int>(rows), static_cast<int>(keys), &one, v, kv_ld,
          d.head_dim, scores + r * head_scores, static_cast<int>(keys), group * head_scores, &zero,
          out_block + r * d.head_dim, q_ld, group * d.head_dim, batch));
    }
  }
  return CudaStatus();
}

}  // namespace qshard::gpu
