// The w4a16 kernel on the tensor-core layout (kernels/layout/gptq_mma_w4.h): a 4-bit GPTQ layer
// repacked once at load time so that each lane's mma fragments of 64 inputs are one 16-byte
// load, for decoding-size batches (1 to 16 tokens per launch; longer inputs run in slices).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gptq_dequant_gemm.h"
#include "kernels/layout/gptq_mma_w4.h"

namespace qshard::gpu {

// Device pointers to one repacked layer.
struct GptqMmaW4View {
  const uint32_t* tiles = nullptr;
  const uint32_t* params = nullptr;
  const int32_t* perm = nullptr;
  layout::MmaW4Shape shape;
};

// A device copy of a repacked layer.
struct DeviceGptqMmaW4 {
  DeviceBuffer<uint32_t> tiles;
  DeviceBuffer<uint32_t> params;
  DeviceBuffer<int32_t> perm;
  layout::MmaW4Shape shape;

  CudaStatus Upload(const layout::MmaW4Layer& layer);
  GptqMmaW4View View() const { return {tiles.get(), params.get(), perm.get(), shape}; }
};

// How one launch divides the work: blocks of 8 column tiles (128 outputs) along x, `k_splits`
// blocks of `tiles_per_split` k-tiles along y; split partial sums meet in the workspace.
struct GptqMmaW4Plan {
  int token_tiles = 0;  // 8-token mma columns the kernel is compiled for (1 or 2)
  int column_blocks = 0;
  int k_splits = 0;
  int tiles_per_split = 0;
  size_t shared_bytes = 0;  // dynamic: the split's activations and group parameters
  bool gather = false;      // x read through perm (else as 8-byte vectors: identity order)
};

// The plan GptqMmaW4Matmul uses for `tokens` (1..16) tokens on the current device: enough
// splits to fill every SM in few waves, each small enough for 48 KB of shared memory.
CudaStatus PlanGptqMmaW4(const GptqMmaW4View& w, const __half* x, int tokens, GptqMmaW4Plan& plan);

// y[tokens, out] = x[tokens, in] · dequant(w)ᵀ, fp16 x and y (row-major), fp32 sums. Numerics as
// GptqMatmul's fused kernels: q − zero is exact in fp16, products with x are exact in the mma's
// fp32 accumulation, and each group's sums are scaled once in fp32; with k_splits > 1 the split
// sums are added with atomics (the last bits vary from run to run). Queued on `stream`.
CudaStatus GptqMmaW4Matmul(const GptqMmaW4View& w, const __half* x, int tokens, __half* y,
                           GptqWorkspace& workspace, cudaStream_t stream);

}  // namespace qshard::gpu
