// BlockedCholeskyF64 against an unblocked long-double Cholesky on awkward sizes (inside one
// tile, on a tile's edge, across several), its bits equal on every pool, and its refusal of a
// matrix that is not positive definite.
#include "worker/solvers/blocked_cholesky.h"

#include <cmath>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "gtest/gtest.h"

namespace qshard {
namespace {

std::vector<double> RandomSpd(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  const int64_t rank = n / 2 + 1;  // low rank plus a ridge: conditioned like a damped Hessian
  std::vector<double> b(n * rank), a(n * n);
  for (double& x : b) x = normal(rng);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = i == j ? 0.01 * static_cast<double>(rank) : 0.0;
      for (int64_t k = 0; k < rank; ++k) sum += b[i * rank + k] * b[j * rank + k];
      a[i * n + j] = sum;
    }
  return a;
}

std::vector<long double> ReferenceCholesky(int64_t n, const std::vector<double>& a) {
  std::vector<long double> l(n * n, 0.0L);
  for (int64_t j = 0; j < n; ++j) {
    long double d = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= l[j * n + k] * l[j * n + k];
    l[j * n + j] = std::sqrt(d);
    for (int64_t i = j + 1; i < n; ++i) {
      long double s = a[i * n + j];
      for (int64_t k = 0; k < j; ++k) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / l[j * n + j];
    }
  }
  return l;
}

TEST(BlockedCholeskyTest, MatchesAnUnblockedReferenceOnAwkwardSizes) {
  for (const int64_t n : {1, 7, 255, 256, 257, 613}) {
    const std::vector<double> a = RandomSpd(n, static_cast<uint32_t>(n));
    std::vector<double> l = a;
    ThreadPool pool(2);
    ASSERT_TRUE(BlockedCholeskyF64(n, l.data(), &pool)) << n;
    const std::vector<long double> reference = ReferenceCholesky(n, a);
    long double worst = 0.0L, largest = 0.0L;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        if (j > i) {
          ASSERT_EQ(l[i * n + j], 0.0) << "upper entry " << i << "," << j << " at n " << n;
          continue;
        }
        worst = std::max(worst, std::fabs(static_cast<long double>(l[i * n + j]) - reference[i * n + j]));
        largest = std::max(largest, std::fabs(reference[i * n + j]));
      }
    // Within one tile the factor is float64 LAPACK; past it, the trailing products are float32
    // (accumulated in float64), so the error is float32's relative precision times a modest
    // growth, and an error in a float64-only path (a wrong tile, a missed update) is far larger.
    EXPECT_LT(static_cast<double>(worst / largest), n <= 256 ? 1e-12 : 2e-5) << "n " << n;
  }
}

TEST(BlockedCholeskyTest, BitsDoNotDependOnThePool) {
  const int64_t n = 700;
  const std::vector<double> a = RandomSpd(n, 11);
  std::vector<double> inline_factor = a;
  ASSERT_TRUE(BlockedCholeskyF64(n, inline_factor.data(), nullptr));
  for (const int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<double> on_pool = a;
    ASSERT_TRUE(BlockedCholeskyF64(n, on_pool.data(), &pool));
    EXPECT_TRUE(on_pool == inline_factor) << threads << " threads";
  }
}

TEST(BlockedCholeskyTest, RefusesAMatrixThatIsNotPositiveDefinite) {
  const int64_t n = 600;
  std::vector<double> a = RandomSpd(n, 5);
  // Positive definite in the first two tiles, not in the third.
  for (int64_t j = 0; j < n; ++j) a[550 * n + j] = a[j * n + 550] = 0.0;
  a[550 * n + 550] = -1.0;
  ThreadPool pool(2);
  EXPECT_FALSE(BlockedCholeskyF64(n, a.data(), &pool));
}

}  // namespace
}  // namespace qshard
