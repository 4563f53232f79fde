// FactorInverseHessian, whose Cholesky runs in float32, against a float64 Cholesky of the same
// ordered, dead-fixed, damped Hessian on awkward sizes: R (from the updates and the diagonal)
// must be that factor to float32 accuracy, R·Rᵀ must give back H, and the updates' layout
// (unit diagonal, zeros below it) must hold exactly.
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/solvers/test_data.h"
#include "worker/solvers/inverse_hessian.h"

namespace qshard {
namespace {

// H as the factor sees it, in sweep order: 2·sum/tokens, dead diagonals 1, damping added.
std::vector<double> OrderedDampedHessian(const HessianSum& h, const InverseHessianFactor& factor) {
  const int64_t n = h.dim;
  const double normalizer = 2.0 / static_cast<double>(h.tokens);
  std::vector<double> a(n * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) a[i * n + j] = h.sum[factor.order[i] * n + factor.order[j]] * normalizer;
  for (int64_t i = 0; i < n; ++i) {
    if (factor.dead[factor.order[i]]) a[i * n + i] = 1.0;
    a[i * n + i] += factor.damp_added;
  }
  return a;
}

// The upper triangular R with H = R·Rᵀ, by a textbook float64 Cholesky from the last column back.
std::vector<double> ReferenceR(const std::vector<double>& h, int64_t n) {
  std::vector<double> r(n * n, 0.0);
  for (int64_t j = n - 1; j >= 0; --j) {
    double d = h[j * n + j];
    for (int64_t k = j + 1; k < n; ++k) d -= r[j * n + k] * r[j * n + k];
    r[j * n + j] = std::sqrt(d);
    for (int64_t i = j - 1; i >= 0; --i) {
      double s = h[i * n + j];
      for (int64_t k = j + 1; k < n; ++k) s -= r[i * n + k] * r[j * n + k];
      r[i * n + j] = s / r[j * n + j];
    }
  }
  return r;
}

TEST(InverseHessianTest, Float32FactorMatchesFloat64Cholesky) {
  for (const int64_t n : {1, 2, 83, 257}) {
    for (const bool act_order : {false, true}) {
      const int64_t tokens = 3 * n + 5;
      std::vector<float> x = testing::CorrelatedActivations(tokens, n, 2, 6.0f, static_cast<uint32_t>(n));
      if (n > 2)
        for (int64_t t = 0; t < tokens; ++t) x[t * n + n / 2] = 0.0f;  // a dead input
      const HessianSum h = testing::HessianOf(x, tokens, n);
      QuantSpec spec;
      spec.act_order = act_order;
      auto factor = FactorInverseHessian(h, spec);
      ASSERT_TRUE(factor.ok()) << factor.status();
      ASSERT_EQ(factor->retries, 0);
      const std::vector<double> a = OrderedDampedHessian(h, *factor);
      const std::vector<double> ref = ReferenceR(a, n);

      double max_h = 0.0, max_r = 0.0, factor_gap = 0.0, product_gap = 0.0;
      std::vector<double> r(n * n, 0.0);
      for (int64_t i = 0; i < n; ++i) {
        max_h = std::max(max_h, a[i * n + i]);
        EXPECT_EQ(factor->updates[i * n + i], 1.0f);
        for (int64_t j = 0; j < i; ++j) ASSERT_EQ(factor->updates[i * n + j], 0.0f) << i << "," << j;
        for (int64_t j = i; j < n; ++j) {
          r[i * n + j] = static_cast<double>(factor->updates[i * n + j]) * factor->diagonal[j];
          max_r = std::max(max_r, std::fabs(ref[i * n + j]));
          factor_gap = std::max(factor_gap, std::fabs(r[i * n + j] - ref[i * n + j]));
        }
      }
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0.0;
          for (int64_t k = std::max(i, j); k < n; ++k) s += r[i * n + k] * r[j * n + k];
          product_gap = std::max(product_gap, std::fabs(s - a[i * n + j]));
        }
      EXPECT_LE(factor_gap, 1e-5 * max_r) << "n " << n << " act_order " << act_order;
      EXPECT_LE(product_gap, 1e-6 * max_h) << "n " << n << " act_order " << act_order;
    }
  }
}

}  // namespace
}  // namespace qshard
