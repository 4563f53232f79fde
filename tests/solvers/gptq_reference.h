// A plain float64 GPTQ written for clarity, not speed, to check the optimized solver against:
// no blocks and no lazy batching — after each column, its error is applied at once to every
// later column through the full row of the inverse-Hessian factor. Own Cholesky code; only
// the grid functions (tested on their own) are shared with the solver.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "worker/calibration/hessian.h"
#include "worker/quant/quant_grid.h"
#include "worker/solvers/solver.h"

namespace qshard::testing {

struct ReferenceGptqResult {
  bool ok = false;
  std::vector<int32_t> codes;  // [out, in]
  Tensor dequantized;          // [out, in]
  Tensor scales;               // [groups, out]
  std::vector<int32_t> zeros;  // [groups, out]
  std::vector<int32_t> g_idx;  // [in]
  double damp = 0.0;
};

// a[n, n] → its lower Cholesky factor L (a = L Lᵀ); false if a is not positive definite.
inline bool ReferenceCholesky(std::vector<double>& a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0.0)) return false;
    a[j * n + j] = std::sqrt(d);
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int64_t k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / a[j * n + j];
    }
    for (int64_t k = j + 1; k < n; ++k) a[j * n + k] = 0.0;
  }
  return true;
}

// U with a⁻¹ = Uᵀ U (U upper triangular), via L = chol(a), a⁻¹ = L⁻ᵀ L⁻¹, U = chol(a⁻¹)ᵀ.
inline bool ReferenceUpperFactorOfInverse(std::vector<double> a, int64_t n, std::vector<double>& u) {
  if (!ReferenceCholesky(a, n)) return false;
  std::vector<double> l_inv(n * n, 0.0);  // forward substitution, column by column
  for (int64_t j = 0; j < n; ++j) {
    l_inv[j * n + j] = 1.0 / a[j * n + j];
    for (int64_t i = j + 1; i < n; ++i) {
      double s = 0.0;
      for (int64_t k = j; k < i; ++k) s += a[i * n + k] * l_inv[k * n + j];
      l_inv[i * n + j] = -s / a[i * n + i];
    }
  }
  std::vector<double> inverse(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k <= i; ++k) {
      double s = 0.0;
      for (int64_t m = i; m < n; ++m) s += l_inv[m * n + i] * l_inv[m * n + k];
      inverse[i * n + k] = inverse[k * n + i] = s;
    }
  if (!ReferenceCholesky(inverse, n)) return false;
  u.assign(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k <= i; ++k) u[k * n + i] = inverse[i * n + k];
  return true;
}

inline ReferenceGptqResult ReferenceGptq(const Tensor& weight, const HessianSum& hessian, const QuantSpec& spec,
                                         std::span<const float> column_scale = {},
                                         const FixedGrids* fixed = nullptr) {
  const int64_t out = weight.dim(0), n = weight.dim(1);
  const GridOptions options = spec.grid_options();
  const int32_t max_code = MaxCode(spec.bits);
  const int64_t groups = GroupCount(n, spec.group_size);
  ReferenceGptqResult result;
  result.scales = Tensor({groups, out});
  result.zeros.resize(groups * out);
  result.codes.resize(out * n);
  result.dequantized = Tensor({out, n});
  result.g_idx = ContiguousGroupIndex(n, spec.group_size);

  std::vector<double> w(out * n), h(n * n);
  for (int64_t i = 0; i < out * n; ++i) w[i] = weight[i];
  for (int64_t i = 0; i < n * n; ++i) h[i] = 2.0 * hessian.sum[i] / static_cast<double>(hessian.tokens);

  // Fits the grids of `group` on the current weights of columns cols[0..count).
  auto fit = [&](int64_t group, const int64_t* cols, int64_t count) {
    std::vector<float> block(count * out);
    for (int64_t k = 0; k < count; ++k)
      for (int64_t r = 0; r < out; ++r) block[k * out + r] = static_cast<float>(w[r * n + cols[k]]);
    FitGrids(options, block.data(), out, count, out, result.scales.row(group), result.zeros.data() + group * out);
  };
  std::vector<int64_t> identity(n);
  std::iota(identity.begin(), identity.end(), 0);

  if (fixed != nullptr) {
    result.scales = fixed->scales;
    result.zeros = fixed->zeros;
  } else if (spec.group_size <= 0) {
    fit(0, identity.data(), n);  // on W as given, before dead columns are zeroed
  }
  for (int64_t i = 0; i < n; ++i) {
    if (h[i * n + i] != 0.0) continue;
    h[i * n + i] = 1.0;
    for (int64_t r = 0; r < out; ++r) w[r * n + i] = 0.0;
  }
  const bool dynamic = spec.group_size > 0 && !spec.static_groups && fixed == nullptr;
  if (spec.group_size > 0 && spec.static_groups && fixed == nullptr)
    for (int64_t g = 0; g < groups; ++g)
      fit(g, identity.data() + g * spec.group_size, std::min<int64_t>(spec.group_size, n - g * spec.group_size));

  std::vector<int64_t> perm = identity;
  if (spec.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return h[a * n + a] > h[b * n + b]; });
  double mean = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += h[i * n + i] / static_cast<double>(n);

  std::vector<double> u;
  for (int retry = 0; retry <= spec.max_damp_retries && !result.ok; ++retry) {
    result.damp = spec.damp * std::pow(spec.damp_growth, retry);
    std::vector<double> permuted(n * n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) permuted[i * n + j] = h[perm[i] * n + perm[j]];
    for (int64_t i = 0; i < n; ++i) permuted[i * n + i] += result.damp * mean;
    result.ok = ReferenceUpperFactorOfInverse(permuted, n, u);
  }
  if (!result.ok) return result;

  for (int64_t j = 0; j < n; ++j) {
    const int64_t c = perm[j];
    if (dynamic && j % spec.group_size == 0)
      fit(j / spec.group_size, perm.data() + j, std::min<int64_t>(spec.group_size, n - j));
    const int64_t group = dynamic ? j / spec.group_size : result.g_idx[c];
    result.g_idx[c] = static_cast<int32_t>(group);
    const float multiplier = column_scale.empty() ? 1.0f : column_scale[c];
    for (int64_t r = 0; r < out; ++r) {
      const float step = result.scales.at(group, r) * multiplier;
      const int32_t zero = result.zeros[group * out + r];
      const int32_t code = QuantizeToCode(static_cast<float>(w[r * n + c]), step, zero, max_code);
      const float value = DequantizeCode(code, step, zero);
      result.codes[r * n + c] = code;
      result.dequantized.at(r, c) = value;
      const double err = (w[r * n + c] - value) / u[j * n + j];
      for (int64_t k = j + 1; k < n; ++k) w[r * n + perm[k]] -= err * u[j * n + k];
    }
  }
  return result;
}

}  // namespace qshard::testing
