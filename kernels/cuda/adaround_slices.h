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

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cuda/adaround_device.h"
#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

// Units [first_unit, first_unit + units) of a problem.
struct AdaRoundSlice {
  int64_t first_unit = 0, units = 0;
};

// The problem's units: its heads with weightings, else its Hessian blocks.
int64_t AdaRoundUnits(const AdaRoundDeviceProblem& problem);

// A slice as a problem of its own, pointing into `problem`'s arrays at the slice's first row: its
// heads' weightings, and the Hessian blocks its rows lie in. Where those rows meet the blocks
// unequally (several heads per block, a cut inside a block: no aespa linear has both) the
// sub-problem's blocks are the pieces' greatest common divisor of rows, a block repeated per piece.
AdaRoundDeviceProblem AdaRoundSliceProblem(const AdaRoundDeviceProblem& problem, const AdaRoundSlice& slice);

// AdaRoundDeviceBytes of a slice's problem.
size_t AdaRoundSliceBytes(const AdaRoundDeviceProblem& problem, const AdaRoundSlice& slice);

// Cuts a valid problem into the fewest slices of consecutive units, the units spread evenly
// (sizes differing by one at most, the larger ones last), whose AdaRoundSliceBytes are at most
// `budget`: one slice, the whole problem, when it fits. An error when one unit alone does not
// fit. Reads the shapes only (the arrays may be null); no device call.
CudaStatus PlanAdaRoundSlices(const AdaRoundDeviceProblem& problem, size_t budget, std::vector<AdaRoundSlice>& slices);

// LearnRoundingOnDevice on each slice in turn (each frees its device memory before the next):
// the learned codes in row order, the losses per unit in unit order. `slices` must cover the
// units in order from the first.
CudaStatus LearnRoundingInSlices(cublasHandle_t blas, cudaStream_t stream, const AdaRoundDeviceProblem& problem,
                                 const std::vector<AdaRoundSlice>& slices, const AdaRoundDeviceOptions& options,
                                 AdaRoundDeviceResult& result);

}  // namespace qshard::gpu
