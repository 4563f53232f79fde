// What the device GPTQ solver (gptq_solve_device.h) and its float64 host reference take: the
// subset of worker/solvers/solver.h's QuantSpec they implement (with the grid options of
// worker/quant/quant_grid.h's GridOptions), same meanings and defaults. A separate struct because the
// CUDA-only build cannot include the worker's Abseil headers; whoever wires the device solver
// into the worker converts one into the other. Also the host-side planning both share.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

struct GptqSolveSpec {
  int bits = 4;                    // 2..8
  int group_size = -1;             // input columns per group; -1: one grid per output row
  bool sym = false;
  bool act_order = false;          // sweep columns by descending diag(H)
  bool static_groups = false;      // groups fitted on the weight before the sweep
  bool fp16_scales = true;         // grids use the fp16 scale a checkpoint stores
  bool nonzero_zero_point = true;  // asymmetric zero ≥ 1 (GPTQ v1 checkpoints)
  double damp = 0.01;              // damp · mean(diag(H)) added to diag(H)
  int block_size = 128;            // lazy-batch width
  double damp_growth = 10.0;       // each failed Cholesky retries with damp × damp_growth
  int max_damp_retries = 4;
  // GPTQ's --mse (GridOptions): each grid is the best of the ranges shrunk by
  // p = 1 − i/mse_grid, i < MseCandidates, in Σ|q(x) − x|^mse_norm over its values.
  bool mse_clip = false;
  double mse_norm = 2.4;
  int mse_grid = 100;
  double mse_max_shrink = 0.8;
};

// The same rules as QuantSpec's validation (ValidateGridOptions' for the MSE options).
CudaStatus ValidateGptqSolveSpec(const GptqSolveSpec& spec);

// How many shrink factors the MSE search tries, i = 0 (the min-max grid) first: quant_grid.cc's count.
inline int MseCandidates(const GptqSolveSpec& spec) {
  return spec.mse_clip ? static_cast<int>(spec.mse_max_shrink * spec.mse_grid) : 0;
}

inline bool DynamicGroups(const GptqSolveSpec& spec) { return spec.group_size > 0 && !spec.static_groups; }
// Fixed grids (Z-Fold's searched ones, solver.h's FixedGrids) are indexed like static groups:
// the spec a sweep onto them runs under, so that group indices and block ends follow.
inline GptqSolveSpec WithFixedGrids(GptqSolveSpec spec) {
  spec.static_groups = spec.group_size > 0;
  return spec;
}
inline int64_t GroupCount(int64_t in, int group_size) {
  return group_size > 0 ? (in + group_size - 1) / group_size : 1;
}

// What the diagonal of the statistics decides before any factorization (inverse_hessian.cc):
// dead inputs (diag 0, set to 1), the mean diagonal damping scales with, and the sweep order.
struct DiagonalPlan {
  double normalizer = 0.0;    // 2 / tokens: H = normalizer · sum
  std::vector<double> diag;   // [in] diag(H), dead entries set to 1
  std::vector<char> dead;     // [in] by original column
  double mean_diag = 0.0;
  std::vector<int64_t> order; // sweep position → original column (stable descending diag under act-order)
};

// `sum_diagonal` is the diagonal of the un-normalized float64 sum over `tokens` tokens.
CudaStatus PlanDiagonal(const std::vector<double>& sum_diagonal, int64_t tokens, const GptqSolveSpec& spec,
                        DiagonalPlan& plan);

// The group (row of scales/zeros) of each original input column: c / group_size, 0 per
// channel, or, for dynamic groups under act-order, the sweep position's group.
std::vector<int32_t> GroupIndex(const GptqSolveSpec& spec, const std::vector<int64_t>& order);

}  // namespace qshard::gpu
