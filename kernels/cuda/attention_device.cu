// CausalAttentionOnDevice: attention_plan.h's plan executed with cublasSgemmStridedBatched and a
// row-softmax kernel (one block per row, reductions in a fixed order); CachedAttentionOnDevice:
// one kernel, a block per query row and head, for decoding.
#include "kernels/cuda/attention_device.h"

#include <cmath>
#include <string>

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

constexpr int kCachedThreads = 128;

// Block (t, h): query row t, head h, against keys 0 .. first + t of key/value head h / group.
__global__ void CachedAttentionKernel(const float* __restrict__ q, const float* __restrict__ k,
                                      const float* __restrict__ v, int64_t first, int64_t heads, int64_t kv_heads,
                                      int64_t head_dim, float scale, float* __restrict__ out) {
  extern __shared__ float scores[];
  __shared__ float shared[kReduceMaxWarps];
  const int64_t t = blockIdx.x, h = blockIdx.y, kv = h / (heads / kv_heads);
  const int64_t visible = first + t + 1, kv_width = kv_heads * head_dim;
  const float* query = q + (t * heads + h) * head_dim;
  float largest = -INFINITY;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) {
    const float* key = k + j * kv_width + kv * head_dim;
    float dot = 0.0f;
    for (int64_t d = 0; d < head_dim; ++d) dot += query[d] * key[d];
    scores[j] = dot * scale;
    largest = fmaxf(largest, scores[j]);
  }
  largest = BlockReduce(largest, MaxOp(), shared);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) {
    scores[j] = expf(scores[j] - largest);
    sum += scores[j];
  }
  const float inverse_sum = 1.0f / BlockReduce(sum, SumOp(), shared);  // synchronizes: every score is written
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < visible; ++j) acc += scores[j] * v[j * kv_width + kv * head_dim + d];
    out[(t * heads + h) * head_dim + d] = acc * inverse_sum;
  }
}

}  // namespace

CudaStatus CausalSoftmaxOnDevice(float* scores, int64_t rows, int64_t keys, int64_t first_row, int64_t heads,
                                 cudaStream_t stream) {
  if (rows <= 0 || heads <= 0) return CudaStatus();
  if (rows > 2147483647 || heads > 65535 || first_row + rows > keys)
    return CudaStatus::Error("CausalSoftmaxOnDevice: rows, heads or keys out of range");
  CausalSoftmaxKernel<<<dim3(static_cast<unsigned>(rows), static_cast<unsigned>(heads)), kSoftmaxThreads, 0,
                        stream>>>(scores, rows, keys, first_row);
  QSHARD_CUDA_CHECK_LAUNCH("CausalSoftmaxKernel");
  return CudaStatus();
}

CudaStatus CachedAttentionOnDevice(cudaStream_t stream, const AttentionDims& d, int64_t first_position,
                                   const float* q, const float* k_cache, const float* v_cache, float scale,
                                   float* out) {
  if (d.tokens <= 0) return CudaStatus();
  if (d.heads <= 0 || d.kv_heads <= 0 || d.head_dim <= 0 || d.heads % d.kv_heads != 0 || first_position < 0)
    return CudaStatus::Error("CachedAttentionOnDevice: heads must be a positive multiple of kv_heads");
  const int64_t keys = first_position + d.tokens;
  if (keys > kCachedAttentionMaxKeys || d.heads > 65535)
    return CudaStatus::Error("CachedAttentionOnDevice: more than " + std::to_string(kCachedAttentionMaxKeys) +
                             " positions or 65535 heads");
  const dim3 grid(static_cast<unsigned>(d.tokens), static_cast<unsigned>(d.heads));
  CachedAttentionKernel<<<grid, kCachedThreads, sizeof(float) * keys, stream>>>(
      q, k_cache, v_cache, first_position, d.heads, d.kv_heads, d.head_dim, scale, out);
  QSHARD_CUDA_CHECK_LAUNCH("CachedAttentionKernel");
  return CudaStatus();
}

CudaStatus CausalAttentionOnDevice(cublasHandle_t blas, cudaStream_t stream, const AttentionDims& d, const float* q,
                                   const float* k, const float* v, float scale, float* scores, float* out) {
  if (d.tokens <= 0) return CudaStatus();
  if (d.heads <= 0 || d.kv_heads <= 0 || d.head_dim <= 0 || d.heads % d.kv_heads != 0)
    return CudaStatus::Error("CausalAttentionOnDevice: heads must be a positive multiple of kv_heads");
  if (d.tokens > 2147483647 || d.heads * d.head_dim > 2147483647)
    return CudaStatus::Error("CausalAttentionOnDevice: dimensions exceed cuBLAS's int");
  const auto input = [&](const GemmOperand& operand) -> const float* {
    switch (operand.buffer) {
      case AttentionBuffer::kQ: return q + operand.offset;
      case AttentionBuffer::kK: return k + operand.offset;
      case AttentionBuffer::kV: return v + operand.offset;
      case AttentionBuffer::kScores: return scores + operand.offset;
      case AttentionBuffer::kOut: break;
    }
    return out + operand.offset;
  };
  const auto output = [&](const GemmOperand& operand) {  // the plan writes only scores and out
    return (operand.buffer == AttentionBuffer::kScores ? scores : out) + operand.offset;
  };
  const auto run = [&](const StridedGemm& g) -> CudaStatus {
    const float zero = 0.0f;
    QSHARD_CUBLAS_TRY(cublasSgemmStridedBatched(
        blas, g.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(g.m), static_cast<int>(g.n),
        static_cast<int>(g.k), &g.alpha, input(g.a), static_cast<int>(g.a.ld), g.a.stride, input(g.b),
        static_cast<int>(g.b.ld), g.b.stride, &zero, output(g.c), static_cast<int>(g.c.ld), g.c.stride,
        static_cast<int>(g.batch)));
    return CudaStatus();
  };
  for (const AttentionBlockPlan& block : PlanCausalAttention(d, scale)) {
    for (const StridedGemm& g : block.scores) QSHARD_CUDA_RETURN_IF_ERROR(run(g));
    const SoftmaxStep& s = block.softmax;
    QSHARD_CUDA_RETURN_IF_ERROR(CausalSoftmaxOnDevice(scores, s.rows, s.keys, s.first_row, d.heads, stream));
    for (const StridedGemm& g : block.values) QSHARD_CUDA_RETURN_IF_ERROR(run(g));
  }
  return CudaStatus();
}

}  // namespace qshard::gpu
