#include "worker/solvers/inverse_hessian.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/large_buffers.h"
#include "kernels/cpu/blas.h"

namespace qshard {
namespace {

// `reversed` holds J H J (H: the ordered, dead-fixed, damped Hessian) in its lower triangle and
// zeros above it; on success it becomes the factor's updates R·diag(R)⁻¹ and the factor gets
// diag(R). R = J L J with L = chol(J H J) is the flat array of L read backwards: reversed in place.
bool FactorReversed(int64_t n, std::vector<float>& reversed, InverseHessianFactor& factor) {
  if (!kernels::CholeskyLowerF32(n, reversed.data())) return false;
  std::reverse(reversed.begin(), reversed.end());
  factor.diagonal.resize(n);
  std::vector<double> inverse_diagonal(n);
  for (int64_t j = 0; j < n; ++j) {
    factor.diagonal[j] = reversed[j * n + j];
    inverse_diagonal[j] = 1.0 / static_cast<double>(factor.diagonal[j]);
  }
  for (int64_t i = 0; i < n; ++i) {
    float* row = reversed.data() + i * n;
    for (int64_t j = i; j < n; ++j) row[j] = static_cast<float>(row[j] * inverse_diagonal[j]);
  }
  factor.updates = std::move(reversed);
  return true;
}

}  // namespace

absl::StatusOr<InverseHessianFactor> FactorInverseHessian(const HessianSum& hessian, const QuantSpec& spec) {
  const int64_t n = hessian.dim;
  const double normalizer = 2.0 / static_cast<double>(hessian.tokens);
  InverseHessianFactor factor;
  factor.dim = n;

  std::vector<double> diag(n);
  factor.dead.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    diag[i] = hessian.sum[i * n + i] * normalizer;
    factor.dead[i] = diag[i] == 0.0;
    if (factor.dead[i]) diag[i] = 1.0;
  }
  const double mean_diag = std::accumulate(diag.begin(), diag.end(), 0.0) / static_cast<double>(n);
  if (!(mean_diag > 0.0))
    return absl::InvalidArgumentError(absl::StrCat("hessian: mean diagonal ", mean_diag, " is not positive"));

  factor.order.resize(n);
  std::iota(factor.order.begin(), factor.order.end(), 0);
  if (spec.act_order) {
    // Stable, so equal diagonals keep their column order and the result is reproducible.
    std::stable_sort(factor.order.begin(), factor.order.end(),
                     [&](int64_t a, int64_t b) { return diag[a] > diag[b]; });
  }

  // Sweep position j is row n−1−j of the reversed matrix.
  std::vector<int64_t> reversed_order(factor.order.rbegin(), factor.order.rend());
  // Only the lower triangle is written (and read by the Cholesky): the zeros above it become
  // the zeros below the updates' diagonal.
  std::vector<float> work = ZeroedVector<float>(n * n);
  for (int retry = 0; retry <= spec.max_damp_retries; ++retry) {
    factor.damp = spec.damp * std::pow(spec.damp_growth, retry);
    factor.damp_added = factor.damp * mean_diag;
    factor.retries = retry;
    for (int64_t i = 0; i < n; ++i) {
      const double* source_row = hessian.sum.data() + reversed_order[i] * n;
      float* row = work.data() + i * n;
      for (int64_t j = 0; j < i; ++j) row[j] = static_cast<float>(source_row[reversed_order[j]] * normalizer);
      row[i] = static_cast<float>(diag[reversed_order[i]] + factor.damp_added);
    }
    if (FactorReversed(n, work, factor)) return factor;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "hessian: not positive definite even with damp ", factor.damp, " (", spec.max_damp_retries,
      " retries); collect more calibration data or raise damp"));
}

}  // namespace qshard
