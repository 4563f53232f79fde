// Internal to kernels/cuda: what the two GPTQ kernels (CUDA-core and tensor-core) share, and
// the launch entry points GptqMatmul chooses between. Not a public header.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/gptq_dequant_gemm.h"
#include "kernels/cuda/gptq_layout.h"

namespace qshard::gpu::internal {

inline constexpr int kWarps = 8;
inline constexpr int kThreads = 32 * kWarps;
inline constexpr int kTileColumns = 128;  // output columns per block, both kernels
inline constexpr int kMaxGridY = 65535;
inline constexpr uint32_t kHalf1024Pair = 0x64006400u;  // fp16 1024.0 in both halves: its ulp
                                                        // is 1, so OR-ing a small integer q into
                                                        // the mantissa gives exactly 1024 + q

inline int CeilDiv(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

__device__ __forceinline__ __half2 BitsToHalf2(uint32_t bits) {
  __half2 value;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

__device__ __forceinline__ uint32_t Half2ToBits(__half2 value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof(bits));
  return bits;
}

__device__ __forceinline__ int ClampGroup(int group, int groups) {
  return min(max(group, 0), groups - 1);
}

// Split-K epilogue, called by every thread of a block after it has added its partial sums for
// `tokens` tokens × 128 columns into `partial_sums` [tokens, out]: the last split to arrive
// for this column block converts the totals to fp16 and leaves the workspace zeroed again
// (the CUDA programming guide's last-block pattern).
__device__ __forceinline__ void FinishSplitK(float* partial_sums, unsigned* arrivals,
                                             __half* y, int tokens, int out, int tile_col) {
  __shared__ bool last_split;
  __threadfence();  // publish this block's additions before counting it as arrived
  __syncthreads();
  if (threadIdx.x == 0) last_split = atomicAdd(arrivals + blockIdx.x, 1u) == gridDim.y - 1;
  __syncthreads();
  if (!last_split) return;
  for (int e = threadIdx.x; e < tokens * kTileColumns; e += blockDim.x) {
    const int c = tile_col + e % kTileColumns;
    if (c >= out) continue;
    const size_t index = static_cast<size_t>(e / kTileColumns) * out + c;
    y[index] = __float2half_rn(atomicExch(partial_sums + index, 0.0f));
  }
  if (threadIdx.x == 0) arrivals[blockIdx.x] = 0;
}

// What one kernel instance may use on one device.
struct KernelLimits {
  int resident_blocks = 0;     // over all SMs
  int split_row_multiple = 1;  // splits start at multiples of this many qweight rows
  int min_split_rows = 1;      // fewer rows would leave warps without a full batch of work
  int max_split_rows = 0;      // more would not fit shared memory
  int overhead_rows = 0;       // fixed cost of a block (prologue, epilogue) in rows streamed
};

// Picks plan.k_splits and plan.rows_per_split for `rows` rows of the inputs (qweight rows, or
// k-tiles of the mma layout) over plan.column_blocks column blocks (gptq_dequant_gemm.cu).
void ChooseSplits(int rows, const KernelLimits& limits, GptqLaunchPlan& plan);

// CUDA-core kernel: any shape ValidateGptqShape accepts; token tiles 1, 4 and 16.
int CudaCoreTokenTile(int tokens);
CudaStatus CudaCoreLimits(int bits, int token_tile, int device, KernelLimits& limits);
CudaStatus LaunchCudaCore(const GptqMatrixView& w, const __half* x, int tokens, __half* y,
                          const GptqLaunchPlan& plan, const GptqWorkspace& workspace,
                          cudaStream_t stream);

// Tensor-core kernel: in % 32 == 0 and 16-byte aligned activations; token tiles 8 and 16.
bool TensorCoreApplies(const GptqMatrixView& w, const __half* x);
int TensorCoreTokenTile(int tokens);
CudaStatus TensorCoreLimits(const GptqMatrixView& w, int token_tile, int device,
                            KernelLimits& limits);
CudaStatus LaunchTensorCore(const GptqMatrixView& w, const __half* x, int tokens, __half* y,
                            const GptqLaunchPlan& plan, const GptqWorkspace& workspace,
                            cudaStream_t stream);

}  // namespace qshard::gpu::internal
