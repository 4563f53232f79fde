// The arithmetic of aespa's AdaRound on the device: its problem's shapes and options, the device
// memory LearnRoundingOnDevice allocates, and the plan of slices (adaround_slices.h). Plain C++,
// without the CUDA headers, built in every build (qshard_cuda_memory): the CUDA learner plans its
// slices with these, and `qshard plan --device-memory` says the same slices in a build without CUDA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cuda/cuda_status_plain.h"

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

}  // namespace qshard::gpu
