// GPTQ on the device, the counterpart of worker/solvers/gptq.cc: the same R-form sweep (no explicit inverse, see inverse_hessian.h), lazy blocks whose
// updates are cuBLAS float32 GEMMs, dynamic groups fitted on fully updated weights (a
// triangular solve, cublasStrsm), static groups, act-order and dead columns, and what Z-Fold
// and aespa add (fixed grids, per-column step multipliers, one Hessian per block of rows, the
// values before rounding: DeviceGptqExtras). Codes agree with
// the CPU solver's up to rounding-boundary flips (different float32 summation orders).
//
// Within a block, columns are visited in sub-blocks of 16 by one kernel with a thread per
// output row (rows are independent given their grids), which also applies each column's
// update to the rest of its sub-block; sub-blocks also end at every dynamic group start, so
// that a group's grid is always fitted before a kernel starts. Deterministic: no atomics;
// every reduction runs in a fixed order.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gptq_factor_device.h"
#include "kernels/cuda/gptq_solve_spec.h"
#include "kernels/cuda/hessian_device.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {

struct DeviceGptqResult {
  int64_t rows = 0;  // out_features
  int64_t cols = 0;  // in_features
  int64_t groups = 0;
  DeviceBuffer<int32_t> codes;   // [rows, cols] row-major, original column order, in [0, 2^bits − 1]
  DeviceBuffer<float> scales;    // [groups, rows], fp16 values when spec.fp16_scales
  DeviceBuffer<int32_t> zeros;   // [groups, rows], true zero points
  std::vector<int32_t> g_idx;    // [cols] (host): the group of each input column
  double proxy_error = 0.0;      // tr(ΔW H ΔWᵀ), undamped H = 2·sum/tokens
  double damp_used = 0.0;         // the largest over row blocks
  int damp_retries = 0;           // the most over row blocks
  DeviceBuffer<float> unrounded;  // [rows, cols] when asked: each value just before it was rounded
};

// What Z-Fold and aespa hand the solver besides the weight (worker/solvers/solver.h's
// LayerProblem), as host arrays the sweep uploads.
struct DeviceGptqExtras {
  // Z-Fold's grids, indexed like static groups, quantized onto instead of fitted: group g of
  // row r at fixed_scales[g·fixed_stride + r] (fixed_stride ≥ rows: a block of rows inside a
  // larger table; 0 means rows). Both or neither.
  const float* fixed_scales = nullptr;
  const int32_t* fixed_zeros = nullptr;
  int64_t fixed_stride = 0;
  const float* column_scale = nullptr;  // [cols] Z-Fold's ζ, original order: step(r, c) = scale·ζ_c
  bool keep_unrounded = false;          // fill DeviceGptqResult::unrounded (aespa's AdaRound)
};

// The sweep with a factor made from the same Hessian. weight: device [rows, cols] row-major
// float32. Device memory besides the factor and the result: 12·rows·cols (16·rows·cols keeping
// the unrounded values) + 4·rows·(block_size + group_size) bytes.
CudaStatus SweepGptqOnDevice(const SolverContext& context, const float* weight, int64_t rows, int64_t cols,
                             const DeviceInverseHessianFactor& factor, const GptqSolveSpec& spec,
                             DeviceGptqResult& result, const DeviceGptqExtras& extras = DeviceGptqExtras());

// Factor, then sweep; the factor's float64 work matrix is freed before the sweep allocates.
CudaStatus SolveGptqOnDevice(const SolverContext& context, const float* weight, int64_t rows, int64_t cols,
                             const DeviceHessianSum& hessian, const GptqSolveSpec& spec, DeviceGptqResult& result,
                             const DeviceGptqExtras& extras = DeviceGptqExtras());

// A reduced statistics sum in host memory: sum [dim, dim] (float64, row-major) over `tokens`.
struct HostHessianSum {
  const double* sum = nullptr;
  int64_t dim = 0;
  int64_t tokens = 0;
};

// One Hessian per equal consecutive block of rows (aespa's per-head value projections): rows
// [h·rows/n, (h+1)·rows/n) are solved with hessians[h], one block after another, into one
// result. Each sum goes up just before its block is solved and is freed after it, so device
// memory holds one sum at a time (OPT-175B's v_proj: 96 heads of 12288² float64 would be
// 116 GB at once). Act-order with dynamic groups needs one Hessian (its g_idx follows the
// order), as the CPU solver's validation says.
CudaStatus SolveGptqRowBlocksOnDevice(const SolverContext& context, const float* weight, int64_t rows, int64_t cols,
                                      const std::vector<HostHessianSum>& hessians, const GptqSolveSpec& spec,
                                      const DeviceGptqExtras& extras, DeviceGptqResult& result);

}  // namespace qshard::gpu
