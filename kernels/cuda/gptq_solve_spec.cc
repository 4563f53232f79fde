// Validation and the diagonal planning shared by the device GPTQ solver and its host
// reference; mirrors worker/solvers/solver.cc and inverse_hessian.cc.
#include "kernels/cuda/gptq_solve_spec.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace qshard::gpu {

CudaStatus ValidateGptqSolveSpec(const GptqSolveSpec& spec) {
  if (spec.bits < 2 || spec.bits > 8) return CudaStatus::Error("bits: " + std::to_string(spec.bits) + " is outside 2..8");
  if (spec.group_size == 0 || spec.group_size < -1)
    return CudaStatus::Error("group_size: " + std::to_string(spec.group_size) + " (use -1 or a positive count)");
  if (spec.static_groups && spec.group_size == -1) return CudaStatus::Error("static_groups: needs a group_size");
  if (!(std::isfinite(spec.damp) && spec.damp > 0.0)) return CudaStatus::Error("damp: must be a positive fraction");
  if (spec.block_size < 1) return CudaStatus::Error("block_size: must be >= 1");
  if (!(std::isfinite(spec.damp_growth) && spec.damp_growth > 1.0)) return CudaStatus::Error("damp_growth: must be > 1");
  if (spec.max_damp_retries < 0) return CudaStatus::Error("max_damp_retries: is negative");
  if (spec.mse_clip) {
    if (!(spec.mse_norm > 0.0)) return CudaStatus::Error("mse_norm: " + std::to_string(spec.mse_norm) + " must be > 0");
    if (spec.mse_grid < 1) return CudaStatus::Error("mse_grid: " + std::to_string(spec.mse_grid) + " must be >= 1");
    if (!(spec.mse_max_shrink > 0.0 && spec.mse_max_shrink < 1.0))
      return CudaStatus::Error("mse_max_shrink: " + std::to_string(spec.mse_max_shrink) + " must be in (0, 1)");
  }
  return CudaStatus();
}

CudaStatus PlanDiagonal(const std::vector<double>& sum_diagonal, int64_t tokens, const GptqSolveSpec& spec,
                        DiagonalPlan& plan) {
  const int64_t n = static_cast<int64_t>(sum_diagonal.size());
  if (tokens <= 0) return CudaStatus::Error("hessian: no tokens were added");
  plan.normalizer = 2.0 / static_cast<double>(tokens);
  plan.diag.resize(n);
  plan.dead.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    plan.diag[i] = sum_diagonal[i] * plan.normalizer;
    plan.dead[i] = plan.diag[i] == 0.0;
    if (plan.dead[i]) plan.diag[i] = 1.0;
  }
  plan.mean_diag = std::accumulate(plan.diag.begin(), plan.diag.end(), 0.0) / static_cast<double>(n);
  if (!(plan.mean_diag > 0.0))
    return CudaStatus::Error("hessian: mean diagonal " + std::to_string(plan.mean_diag) + " is not positive");
  plan.order.resize(n);
  std::iota(plan.order.begin(), plan.order.end(), int64_t{0});
  if (spec.act_order) {
    // Stable, so equal diagonals keep their column order and the result is reproducible.
    std::stable_sort(plan.order.begin(), plan.order.end(),
                     [&](int64_t a, int64_t b) { return plan.diag[a] > plan.diag[b]; });
  }
  return CudaStatus();
}

std::vector<int32_t> GroupIndex(const GptqSolveSpec& spec, const std::vector<int64_t>& order) {
  const int64_t in = static_cast<int64_t>(order.size());
  std::vector<int32_t> g_idx(in, 0);
  if (spec.group_size <= 0) return g_idx;
  for (int64_t j = 0; j < in; ++j) {
    const int64_t column = DynamicGroups(spec) && spec.act_order ? order[j] : j;
    g_idx[column] = static_cast<int32_t>(j / spec.group_size);
  }
  return g_idx;
}

}  // namespace qshard::gpu
