// GPTQ behind the Solver interface (worker/solvers/solver.h) on a CUDA device: the layer's
// weight and its reduced statistics (one per block of rows) go to the device, with Z-Fold's
// fixed grids and ζ; gpu::SolveGptqRowBlocksOnDevice factors and
// sweeps there, and codes, grids, g_idx (and the values before rounding, for aespa) come back
// as the same QuantizedLinear the CPU
// solver returns, for the one packing path (worker/quant/gptq_pack).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cuda/gptq_solve_spec.h"
#include "worker/cuda/cuda_session.h"
#include "worker/solvers/solver.h"

namespace qshard {

// The device solver's spec for a QuantSpec: the same fields (--mse's search options from
// QuantSpec::grid_options), INVALID_ARGUMENT where the spec itself is invalid.
absl::StatusOr<gpu::GptqSolveSpec> DeviceGptqSpec(const QuantSpec& spec);

absl::StatusOr<std::unique_ptr<Solver>> MakeCudaGptqSolver(std::shared_ptr<CudaSession> session, const QuantSpec& spec);

}  // namespace qshard
