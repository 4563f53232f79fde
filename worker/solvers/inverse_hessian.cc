#include "worker/solvers/inverse_hessian.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/large_buffers.h"
#include "core/thread_pool.h"
#include "worker/solvers/blocked_cholesky.h"

namespace qshard {
namespace {

// `reversed` holds J H J (H: the ordered, dead-fixed, damped Hessian); on success the factor
// gets R = J chol(J H J) J, as the update weights R_ik/R_kk and the diagonal R_kk, in float32.
// The copy runs in row chunks on the pool, each chunk touching its rows' pages first: at
// dim 8192 the 268 MB of updates are new memory, and mapping them on one thread (a page fault
// per 4 KiB on these VMs) cost more than the copy.
bool FactorReversed(int64_t n, double* reversed, InverseHessianFactor& factor, ThreadPool* pool) {
  if (!BlockedCholeskyF64(n, reversed, pool)) return false;
  const auto r = [&](int64_t i, int64_t j) { return reversed[(n - 1 - i) * n + (n - 1 - j)]; };  // R_ij
  factor.updates.resize(n * n);  // every element written below
  factor.diagonal.resize(n);
  std::vector<double> inverse_diagonal(n);
  for (int64_t j = 0; j < n; ++j) {
    factor.diagonal[j] = static_cast<float>(r(j, j));
    inverse_diagonal[j] = 1.0 / r(j, j);
  }
  ForChunks(n, pool, [&](int64_t first, int64_t end) {
    PopulatePages(factor.updates.data() + first * n, (end - first) * n * sizeof(float));
    for (int64_t i = first; i < end; ++i) {
      const double* source = reversed + (n - 1 - i) * n + (n - 1);  // row n−1−i, from the end
      float* row = factor.updates.data() + i * n;
      std::fill(row, row + i, 0.0f);
      for (int64_t j = i; j < n; ++j) row[j] = static_cast<float>(source[-j] * inverse_diagonal[j]);
    }
  });
  return true;
}

}  // namespace

absl::StatusOr<InverseHessianFactor> FactorInverseHessian(const HessianSum& hessian, const QuantSpec& spec,
                                                          ThreadPool* pool) {
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
  UninitializedVector<double> work(n * n);  // J H J, written whole before each factorization
  for (int retry = 0; retry <= spec.max_damp_retries; ++retry) {
    factor.damp = spec.damp * std::pow(spec.damp_growth, retry);
    factor.damp_added = factor.damp * mean_diag;
    factor.retries = retry;
    ForChunks(n, pool, [&](int64_t first, int64_t end) {
      if (retry == 0) PopulatePages(work.data() + first * n, (end - first) * n * sizeof(double));
      for (int64_t i = first; i < end; ++i) {
        const double* source_row = hessian.sum.data() + reversed_order[i] * n;
        double* row = work.data() + i * n;
        for (int64_t j = 0; j < n; ++j) row[j] = source_row[reversed_order[j]] * normalizer;
        row[i] = diag[reversed_order[i]] + factor.damp_added;
      }
    });
    if (FactorReversed(n, work.data(), factor, pool)) return factor;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "hessian: not positive definite even with damp ", factor.damp, " (", spec.max_damp_retries,
      " retries); collect more calibration data or raise damp"));
}

}  // namespace qshard
