// The float64 references of gptq_solver_reference.h: short loops in the order the paper
// writes them, with the inner loops over contiguous memory so that layers of ~1000 inputs
// take about a second.
#include "kernels/cuda/gptq_solver_reference.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

namespace qshard::gpu {
namespace {

// In place: the lower Cholesky factor L of a[n, n] (row-major), upper triangle zeroed.
bool CholeskyLower(int64_t n, std::vector<double>& a) {
  for (int64_t j = 0; j < n; ++j) {
    const double* row_j = a.data() + j * n;
    double d = row_j[j];
    for (int64_t k = 0; k < j; ++k) d -= row_j[k] * row_j[k];
    if (!(d > 0.0)) return false;
    const double l = std::sqrt(d);
    a[j * n + j] = l;
    for (int64_t i = j + 1; i < n; ++i) {
      double* row_i = a.data() + i * n;
      double s = row_i[j];
      for (int64_t k = 0; k < j; ++k) s -= row_i[k] * row_j[k];
      row_i[j] = s / l;
    }
  }
  for (int64_t i = 0; i < n; ++i) std::fill(a.begin() + i * n + i + 1, a.begin() + (i + 1) * n, 0.0);
  return true;
}

// H⁻¹ = L⁻ᵀ L⁻¹ from the lower factor L of H. t holds (L⁻¹)ᵀ row-major, so both inner
// loops read contiguous rows.
std::vector<double> InverseFromCholesky(int64_t n, const std::vector<double>& l) {
  std::vector<double> t(n * n, 0.0);
  for (int64_t c = 0; c < n; ++c) {
    double* t_c = t.data() + c * n;
    for (int64_t i = c; i < n; ++i) {
      const double* l_i = l.data() + i * n;
      double s = i == c ? 1.0 : 0.0;
      for (int64_t k = c; k < i; ++k) s -= l_i[k] * t_c[k];
      t_c[i] = s / l_i[i];
    }
  }
  std::vector<double> inverse(n * n);
  for (int64_t a = 0; a < n; ++a) {
    for (int64_t b = a; b < n; ++b) {
      double s = 0.0;
      for (int64_t k = b; k < n; ++k) s += t[a * n + k] * t[b * n + k];
      inverse[a * n + b] = inverse[b * n + a] = s;
    }
  }
  return inverse;
}

struct Grid {
  double scale = 1.0;
  int32_t zero = 0;
};

double StoredScale(const GptqSolveSpec& spec, double scale) {
  if (!spec.fp16_scales) return scale;
  const double rounded = __half2float(__float2half_rn(static_cast<float>(scale)));
  if (!(rounded > 0.0)) return 5.9604644775390625e-8;  // 2^-24
  return std::min(rounded, 65504.0);
}

// A range [xmin, xmax] (xmin ≤ 0 ≤ xmax) mirrored when symmetric, ±1 when all zero.
void NormalizeRange(const GptqSolveSpec& spec, double& xmin, double& xmax) {
  if (spec.sym) {
    xmax = std::max(-xmin, xmax);
    xmin = -xmax;
  }
  if (xmin == 0.0 && xmax == 0.0) {
    xmin = -1.0;
    xmax = 1.0;
  }
}

Grid GridForRange(const GptqSolveSpec& spec, double xmin, double xmax) {
  const int32_t max_code = (1 << spec.bits) - 1;
  NormalizeRange(spec, xmin, xmax);
  Grid grid;
  grid.scale = StoredScale(spec, (xmax - xmin) / max_code);
  if (spec.sym) {
    grid.zero = (max_code + 1) / 2;
    return grid;
  }
  grid.zero = static_cast<int32_t>(std::clamp(std::nearbyint(-xmin / grid.scale), 0.0, static_cast<double>(max_code)));
  if (grid.zero == 0 && spec.nonzero_zero_point) {
    grid.scale = StoredScale(spec, xmax / (max_code - 1));
    grid.zero = 1;
  }
  return grid;
}

int32_t Quantize(double x, double step, int32_t zero, int32_t max_code) {
  return static_cast<int32_t>(std::clamp(std::nearbyint(x / step) + zero, 0.0, static_cast<double>(max_code)));
}

// GPTQ's find_params on the values' range (which always includes 0); with --mse, the range
// shrunk by p = 1 − i/grid (i < MseCandidates) whose grid has the least Σ|q(x) − x|^norm, the
// first of equals (the min-max grid is i = 0).
Grid FitGrid(const GptqSolveSpec& spec, const double* values, int64_t count) {
  double xmin = 0.0, xmax = 0.0;
  for (int64_t k = 0; k < count; ++k) {
    xmin = std::min(xmin, values[k]);
    xmax = std::max(xmax, values[k]);
  }
  NormalizeRange(spec, xmin, xmax);  // before shrinking, as quant_grid.cc does
  Grid grid = GridForRange(spec, xmin, xmax);
  const int32_t max_code = (1 << spec.bits) - 1;
  double best = INFINITY;
  for (int i = 0; i < MseCandidates(spec); ++i) {
    const double p = 1.0 - static_cast<double>(i) / spec.mse_grid;
    const Grid trial = GridForRange(spec, p * xmin, p * xmax);
    double error = 0.0;
    for (int64_t k = 0; k < count; ++k)
      error += std::pow(std::fabs(trial.scale * (Quantize(values[k], trial.scale, trial.zero, max_code) - trial.zero) -
                                  values[k]),
                        spec.mse_norm);
    if (error < best) {
      best = error;
      grid = trial;
    }
  }
  return grid;
}

// One Hessian's part of the sweep: its diagonal plan and U, the upper Cholesky factor of the
// damped H⁻¹ in sweep order (row-major), damping retried until H's Cholesky succeeds.
struct ReferenceFactor {
  DiagonalPlan plan;
  std::vector<double> u_rows;  // [in, in]
  double damp = 0.0;
  int retries = 0;
};

CudaStatus FactorReference(const ReferenceHessian& hessian, int64_t in, const GptqSolveSpec& spec,
                           ReferenceFactor& result) {
  const std::vector<double>& sum = *hessian.sum;
  if (static_cast<int64_t>(sum.size()) != in * in) return CudaStatus::Error("reference: a Hessian is not [in, in]");
  std::vector<double> sum_diagonal(in);
  for (int64_t i = 0; i < in; ++i) sum_diagonal[i] = sum[i * in + i];
  DiagonalPlan& plan = result.plan;
  QSHARD_CUDA_RETURN_IF_ERROR(PlanDiagonal(sum_diagonal, hessian.tokens, spec, plan));
  const std::vector<int64_t>& order = plan.order;

  std::vector<double> factor;
  bool factored = false;
  for (int retry = 0; retry <= spec.max_damp_retries && !factored; ++retry) {
    result.damp = spec.damp * std::pow(spec.damp_growth, retry);
    result.retries = retry;
    factor.assign(in * in, 0.0);
    for (int64_t i = 0; i < in; ++i) {
      for (int64_t j = 0; j < in; ++j) factor[i * in + j] = sum[order[i] * in + order[j]] * plan.normalizer;
      factor[i * in + i] = plan.diag[order[i]] + result.damp * plan.mean_diag;
    }
    factored = CholeskyLower(in, factor);
  }
  if (!factored) return CudaStatus::Error("reference: H not positive definite at the largest damping");
  // Held as its transpose, a lower factor.
  std::vector<double> lower_u = InverseFromCholesky(in, factor);
  if (!CholeskyLower(in, lower_u)) return CudaStatus::Error("reference: H⁻¹ not positive definite");
  result.u_rows.assign(in * in, 0.0);  // U row-major, for the sweep's contiguous inner loop
  for (int64_t j = 0; j < in; ++j)
    for (int64_t k = j; k < in; ++k) result.u_rows[j * in + k] = lower_u[k * in + j];
  return CudaStatus();
}

CudaStatus CheckProblem(const ReferenceGptqProblem& problem, const GptqSolveSpec& spec) {
  const int64_t blocks = static_cast<int64_t>(problem.hessians.size());
  const size_t elements = static_cast<size_t>(problem.out * problem.in);
  if (problem.weight == nullptr || problem.weight->size() != elements || problem.out <= 0 || problem.in <= 0)
    return CudaStatus::Error("reference: the weight is not [out, in]");
  if (blocks < 1 || problem.out % blocks != 0)
    return CudaStatus::Error("reference: " + std::to_string(blocks) + " Hessians for " + std::to_string(problem.out) +
                             " rows");
  if (blocks > 1 && DynamicGroups(spec) && spec.act_order)
    return CudaStatus::Error("reference: act-order with dynamic groups needs one Hessian for all rows");
  const size_t grids = static_cast<size_t>(GroupCount(problem.in, spec.group_size) * problem.out);
  if ((problem.fixed_scales == nullptr) != (problem.fixed_zeros == nullptr) ||
      (problem.fixed_scales != nullptr && (problem.fixed_scales->size() != grids || problem.fixed_zeros->size() != grids)))
    return CudaStatus::Error("reference: fixed grids need scales and zeros, [groups, out] each");
  if (problem.column_scale != nullptr && problem.column_scale->size() != static_cast<size_t>(problem.in))
    return CudaStatus::Error("reference: column_scale is not [in]");
  return CudaStatus();
}

}  // namespace

std::vector<std::vector<float>> RandomCalibrationWindows(int64_t in, int windows, int64_t rows,
                                                         const std::vector<int64_t>& silent, std::mt19937_64& rng) {
  constexpr int kFactors = 4;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> log_scale(-1.5f, 1.5f);
  std::vector<float> scale(in), loading(kFactors * in);
  for (float& s : scale) s = std::exp(log_scale(rng));
  for (float& l : loading) l = 0.6f * normal(rng);
  std::vector<std::vector<float>> result(windows, std::vector<float>(rows * in));
  for (std::vector<float>& x : result) {
    for (int64_t t = 0; t < rows; ++t) {
      float factor[kFactors];
      for (float& f : factor) f = normal(rng);
      float* token = x.data() + t * in;
      for (int64_t i = 0; i < in; ++i) {
        float v = normal(rng);
        for (int k = 0; k < kFactors; ++k) v += factor[k] * loading[k * in + i];
        token[i] = scale[i] * v;
      }
      for (int64_t column : silent) token[column] = 0.0f;
    }
  }
  return result;
}

std::vector<float> RandomLayerWeight(int64_t out, int64_t in, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> w(out * in);
  for (float& v : w) v = normal(rng) * (unit(rng) < 0.002f ? 10.0f : 1.0f);
  return w;
}

void ReferenceAddWindow(const float* x, int64_t rows, int64_t dim, std::vector<double>& sum) {
  // The upper triangle, then the mirror (sum stays symmetric between calls).
  for (int64_t t = 0; t < rows; ++t) {
    const float* token = x + t * dim;
    for (int64_t i = 0; i < dim; ++i) {
      const double xi = token[i];
      double* row = sum.data() + i * dim;
      for (int64_t j = i; j < dim; ++j) row[j] += xi * static_cast<double>(token[j]);
    }
  }
  for (int64_t i = 0; i < dim; ++i)
    for (int64_t j = 0; j < i; ++j) sum[i * dim + j] = sum[j * dim + i];
}

CudaStatus ReferenceGptq(const ReferenceGptqProblem& problem, const GptqSolveSpec& given_spec,
                         ReferenceGptqResult& result, const FollowedSolution* follow, double tie_margin) {
  const bool fixed = problem.fixed_scales != nullptr;
  const GptqSolveSpec spec = fixed ? WithFixedGrids(given_spec) : given_spec;
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateGptqSolveSpec(spec));
  QSHARD_CUDA_RETURN_IF_ERROR(CheckProblem(problem, spec));
  const std::vector<float>& weight = *problem.weight;
  const int64_t out = problem.out, in = problem.in;
  const int64_t blocks = static_cast<int64_t>(problem.hessians.size()), block_rows = out / blocks;
  const auto zeta = [&](int64_t column) {
    return problem.column_scale == nullptr ? 1.0 : static_cast<double>((*problem.column_scale)[column]);
  };

  const int32_t max_code = (1 << spec.bits) - 1;
  const int64_t groups = GroupCount(in, spec.group_size);
  result.codes.assign(out * in, 0);
  result.scales.assign(groups * out, 0.0);
  result.zeros.assign(groups * out, 0);
  result.unrounded.assign(problem.keep_unrounded ? out * in : 0, 0.0);
  result.damp = 0.0;
  result.retries = 0;
  result.follow = FollowReport();
  // The followed solution's grid where it differs from the one just fitted.
  const auto adopt_grid = [&](int64_t g, int64_t r, Grid& grid) {
    if (follow == nullptr) return;
    const Grid theirs{(*follow->scales)[g * out + r], (*follow->zeros)[g * out + r]};
    if (theirs.scale == grid.scale && theirs.zero == grid.zero) return;
    ++result.follow.grids_adopted;
    grid = theirs;
  };
  // The followed solution's code where it differs, with the distance of the value from the
  // tie between the two codes, in steps.
  const auto adopt_code = [&](int64_t r, int64_t column, double value, double step, int32_t zero, int32_t& code) {
    if (follow == nullptr) return;
    const int32_t theirs = (*follow->codes)[r * in + column];
    if (theirs == code) return;
    const double tie = std::min(theirs, code) + 0.5 - zero;
    const double distance = std::fabs(value / step - tie);
    ++result.follow.flips;
    result.follow.far_flips += std::abs(theirs - code) > 1 || distance > tie_margin;
    result.follow.worst_distance = std::max(result.follow.worst_distance, distance);
    code = theirs;
  };

  std::vector<double> row(in), swept(in);
  for (int64_t b = 0; b < blocks; ++b) {
    ReferenceFactor factor;
    QSHARD_CUDA_RETURN_IF_ERROR(FactorReference(problem.hessians[b], in, spec, factor));
    const DiagonalPlan& plan = factor.plan;
    const std::vector<int64_t>& order = plan.order;
    result.damp = std::max(result.damp, factor.damp);
    result.retries = std::max(result.retries, factor.retries);
    // Dynamic groups under act-order (the one case where g_idx follows the order) have one block.
    if (b == 0) result.g_idx = GroupIndex(spec, order);
    const auto u = [&](int64_t j, int64_t k) { return factor.u_rows[j * in + k]; };

    for (int64_t r = b * block_rows; r < (b + 1) * block_rows; ++r) {
      std::vector<Grid> grids(groups);
      for (int64_t c = 0; c < in; ++c) row[c] = weight[r * in + c];
      if (fixed) {
        for (int64_t g = 0; g < groups; ++g) grids[g] = Grid{(*problem.fixed_scales)[g * out + r], (*problem.fixed_zeros)[g * out + r]};
      } else if (spec.group_size <= 0) {
        grids[0] = FitGrid(spec, row.data(), in);  // before dead columns are zeroed
      }
      for (int64_t c = 0; c < in; ++c)
        if (plan.dead[c]) row[c] = 0.0;
      if (!fixed && spec.group_size > 0 && spec.static_groups) {
        for (int64_t g = 0; g < groups; ++g)
          grids[g] = FitGrid(spec, row.data() + g * spec.group_size, std::min<int64_t>(spec.group_size, in - g * spec.group_size));
      }
      if (!DynamicGroups(spec))
        for (int64_t g = 0; g < groups; ++g) adopt_grid(g, r, grids[g]);
      for (int64_t j = 0; j < in; ++j) swept[j] = row[order[j]];
      for (int64_t j = 0; j < in; ++j) {
        if (DynamicGroups(spec) && j % spec.group_size == 0) {
          const int64_t g = j / spec.group_size;
          grids[g] = FitGrid(spec, swept.data() + j, std::min<int64_t>(spec.group_size, in - j));
          adopt_grid(g, r, grids[g]);
        }
        const int64_t column = order[j];
        const Grid& grid = grids[DynamicGroups(spec) ? j / spec.group_size : result.g_idx[column]];
        const double step = grid.scale * zeta(column);
        if (problem.keep_unrounded) result.unrounded[r * in + column] = swept[j];
        int32_t code = Quantize(swept[j], step, grid.zero, max_code);
        adopt_code(r, column, swept[j], step, grid.zero, code);
        result.codes[r * in + column] = code;
        const double e = (swept[j] - step * (code - grid.zero)) / u(j, j);
        const double* u_j = factor.u_rows.data() + j * in;
        for (int64_t k = j + 1; k < in; ++k) swept[k] -= e * u_j[k];
      }
      for (int64_t g = 0; g < groups; ++g) {
        result.scales[g * out + r] = grids[g].scale;
        result.zeros[g * out + r] = grids[g].zero;
      }
    }
  }
  return CudaStatus();
}

CudaStatus ReferenceGptq(const std::vector<float>& weight, int64_t out, int64_t in, const std::vector<double>& sum,
                         int64_t tokens, const GptqSolveSpec& spec, ReferenceGptqResult& result,
                         const FollowedSolution* follow, double tie_margin) {
  ReferenceGptqProblem problem;
  problem.weight = &weight;
  problem.out = out;
  problem.in = in;
  problem.hessians = {ReferenceHessian{&sum, tokens}};
  return ReferenceGptq(problem, spec, result, follow, tie_margin);
}

std::vector<double> DequantizeCodes(const std::vector<int32_t>& codes, const std::vector<double>& scales,
                                    const std::vector<int32_t>& zeros, const std::vector<int32_t>& g_idx, int64_t out,
                                    int64_t in, const std::vector<float>* column_scale) {
  std::vector<double> values(out * in);
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) {
      const int64_t grid = static_cast<int64_t>(g_idx[c]) * out + r;
      const double zeta = column_scale == nullptr ? 1.0 : static_cast<double>((*column_scale)[c]);
      values[r * in + c] = scales[grid] * zeta * (codes[r * in + c] - zeros[grid]);
    }
  }
  return values;
}

double ProxyError(const std::vector<float>& weight, const std::vector<double>& dequantized, int64_t out, int64_t in,
                  const std::vector<double>& sum, int64_t tokens) {
  const double normalizer = 2.0 / static_cast<double>(tokens);
  std::vector<double> delta(in);
  double total = 0.0;
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) delta[c] = weight[r * in + c] - dequantized[r * in + c];
    for (int64_t i = 0; i < in; ++i) {
      const double* h = sum.data() + i * in;
      double s = 0.0;
      for (int64_t j = 0; j < in; ++j) s += h[j] * delta[j];
      total += delta[i] * s;
    }
  }
  return total * normalizer;
}

double ProblemProxyError(const ReferenceGptqProblem& problem, const std::vector<double>& dequantized) {
  const int64_t blocks = static_cast<int64_t>(problem.hessians.size()), rows = problem.out / blocks;
  const int64_t block_elements = rows * problem.in;
  double total = 0.0;
  for (int64_t b = 0; b < blocks; ++b) {
    const std::vector<float> weight(problem.weight->begin() + b * block_elements,
                                    problem.weight->begin() + (b + 1) * block_elements);
    const std::vector<double> values(dequantized.begin() + b * block_elements,
                                     dequantized.begin() + (b + 1) * block_elements);
    total += ProxyError(weight, values, rows, problem.in, *problem.hessians[b].sum, problem.hessians[b].tokens);
  }
  return total;
}

}  // namespace qshard::gpu
