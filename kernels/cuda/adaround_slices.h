// aespa's AdaRound on the device in slices, for linears whose whole problem does not fit the
// device (OPT-175B's v_proj: 96 per-head Hessians of 12288², 93.3 GB). A problem's rows fall into
// units (a head where there are output weightings, else a Hessian block) that share nothing in
// LearnRoundingOnDevice: a Hessian block's rows see only that block, each head lies in one block
// and its weighting only mixes its own rows, the element-wise steps (soft errors, the chain,
// Adam) touch one weight, β, Adam's corrections and the regularizer's switch depend only on the
// iteration, and a unit's loss sums its own rows' float64 row sums in row order: no reduction
// crosses units or decides anything for others. So a run of consecutive units is a problem of its
// own, and solving the runs one after another gives the whole problem's codes and unit losses:
// bit for bit where each unit's arithmetic does not depend on the shapes around it (the host
// emulation's cuBLAS loops over batch items; on a GPU cuBLAS may pick another kernel for another
// batch count or row count, docs/cuda.md "aespa's AdaRound on the device"). Free of Abseil.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <vector>

#include "kernels/cuda/adaround_device.h"
#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

// LearnRoundingOnDevice on each slice in turn (each frees its device memory before the next):
// the learned codes in row order, the losses per unit in unit order. `slices` must cover the
// units in order from the first.
CudaStatus LearnRoundingInSlices(cublasHandle_t blas, cudaStream_t stream, const AdaRoundDeviceProblem& problem,
                                 const std::vector<AdaRoundSlice>& slices, const AdaRoundDeviceOptions& options,
                                 AdaRoundDeviceResult& result);

}  // namespace qshard::gpu
