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

#include "kernels/cuda/adaround_plan.h"
#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

// The descent and both losses on the current device, on `stream` with `blas` (default math mode:
// float32 GEMMs stay IEEE float32); synchronizes before it returns.
CudaStatus LearnRoundingOnDevice(cublasHandle_t blas, cudaStream_t stream, const AdaRoundDeviceProblem& problem,
                                 const AdaRoundDeviceOptions& options, AdaRoundDeviceResult& result);

}  // namespace qshard::gpu
