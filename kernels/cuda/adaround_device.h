// aespa's AdaRound on the device: the descent of worker/methods/adaround_rounding.h (soft
// variable V, rectified sigmoid h(V), the regularizer after its warm-up with β annealed, Adam,
// finally h ← [V ≥ 0]) for one linear's rows with their Hessian blocks and optional per-head
// output weightings, and both roundings' losses per unit for the choice. Free of Abseil (the
// CUDA-only build); worker/cuda/cuda_rounding_learner.cc is the glue.
//
// Precision, as the CPU's descent: the gradient's products E·H take bfloat16 inputs with float32
// sums (cublasGemmStridedBatchedEx, CUBLAS_COMPUTE_32F: tensor cores, the CPU's kernels/cpu/
// bf16_gemm.h arithmetic up to summation order), the output weightings G·(E·H) are float32
// GEMMs, the element-wise steps float32; the losses are float32 GEMMs E·H (and G·) with each
// row's Σ (E·H)∘E in float64, the units' rows added in row order. Every weight is stepped (the
// CPU freezes saturated ones; its header shows that gives the same codes). No atomics: every
// reduction has a fixed order, so two runs on one GPU kind give the same codes and losses.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

// AdaRoundOptions (adaround_rounding.h), as the CPU reads them.
struct AdaRoundDeviceOptions {
  int iters = 2000;
  double learning_rate = 0.015;
  double lambda = 1.0;
  double warmup = 0.2;
  double beta_start = 20.0;
  double beta_end = 2.0;
};

// One linear's problem on the host, per weight flattened [rows, cols] row-major.
struct AdaRoundDeviceProblem {
  int64_t rows = 0, cols = 0;
  int32_t max_code = 0;                 // 2^bits − 1
  const float* step = nullptr;          // s: the grid step (scale·ζ)
  const float* zero = nullptr;          // z: the zero point, an integer
  const float* floor_level = nullptr;   // ⌊u/s⌋ + z
  const float* variables = nullptr;     // the initial V (h(V) = u/s − ⌊u/s⌋)
  const float* weight = nullptr;        // W, the target
  const int32_t* initial_codes = nullptr;  // GPTQ's
  std::vector<const float*> hessians;      // [cols, cols] each, one per equal block of rows
  std::vector<const float*> weightings;    // empty, or [d, d] each, one per equal block of d rows
};

struct AdaRoundDeviceResult {
  std::vector<int32_t> learned;        // [rows, cols]: [V ≥ 0] on the grids (the initial codes if iters = 0)
  std::vector<double> initial_losses;  // per unit (a head with weightings, else a Hessian block)
  std::vector<double> learned_losses;
};

// The device memory LearnRoundingOnDevice allocates, besides cuBLAS's workspace: 42 bytes per
// weight (46 with weightings), 6·cols² per Hessian block (float32 and bfloat16), 4·d² per
// weighting, 8 per row.
size_t AdaRoundDeviceBytes(int64_t rows, int64_t cols, int64_t hessians, int64_t heads);

// Shapes and options LearnRoundingOnDevice accepts: blocks and heads dividing the rows, each
// head inside one block, iters ≥ 0, a positive learning rate.
CudaStatus ValidateAdaRoundDeviceProblem(const AdaRoundDeviceProblem& problem, const AdaRoundDeviceOptions& options);

// β at iteration `it`: constant through the warm-up, then linear to beta_end (the CPU's Beta).
float AdaRoundBeta(int it, const AdaRoundDeviceOptions& options);

// The descent and both losses on the current device, on `stream` with `blas` (default math mode:
// float32 GEMMs stay IEEE float32); synchronizes before it returns.
CudaStatus LearnRoundingOnDevice(cublasHandle_t blas, cudaStream_t stream, const AdaRoundDeviceProblem& problem,
                                 const AdaRoundDeviceOptions& options, AdaRoundDeviceResult& result);

}  // namespace qshard::gpu
