// CausalAttentionOnDevice: attention_plan.h's plan executed with cublasSgemmStridedBatched and a
// row-softmax kernel (one block per row, reductions in a fixed order).
#include "kernels/cuda/attention_device.h"

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
