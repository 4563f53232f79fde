// AdaRound's hand-written gradient against central finite differences of a float64 evaluation
// of its objective written from the definition (reconstruction loss of the soft weights plus
// λ·Σ(1 − |2h − 1|^β)), on awkward sizes: several row blocks with their own Hessians, head
// output weightings, groups that do not divide the columns, per-column step multipliers, and
// levels clamped at both ends of the grid. And the descent, which steps only the weights still
// live, against plain Adam over every weight on that gradient: the same codes, bit for bit (with
// tile GEMMs throughout), and the same gradients within float tolerance (with products at the
// live weights only).
#include <algorithm>
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "worker/methods/adaround_rounding.h"
#include "worker/quant/quant_grid.h"

namespace qshard {
namespace {

constexpr double kGamma = -0.1, kZeta = 1.1;

std::vector<double> RandomSpd(int64_t d, std::mt19937& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> a(d * (d + 3)), g(d * d, 0.0);
  for (double& v : a) v = normal(rng);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j)
      for (int64_t k = 0; k < d + 3; ++k) g[i * d + j] += a[i * (d + 3) + k] * a[j * (d + 3) + k] / d;
  return g;
}

struct Setup {
  Tensor weight, unrounded;
  QuantizedWeight grids;
  std::vector<std::vector<double>> hessians, heads;

  RoundingProblem Problem() const {
    RoundingProblem p{&weight, &unrounded, &grids, {}, {}};
    for (const auto& h : hessians) p.hessians.push_back(&h);
    for (const auto& g : heads) p.output_weightings.push_back(&g);
    return p;
  }
  float Step(int64_t r, int64_t c) const { return grids.scales.at(grids.g_idx[c], r) * grids.column_scale[c]; }
  int32_t Zero(int64_t r, int64_t c) const { return grids.zeros[grids.g_idx[c] * grids.rows + r]; }
};

Setup MakeSetup(int64_t out, int64_t in, int64_t hessian_blocks, int64_t head_rows, int64_t group, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  Setup s;
  QuantizedWeight& q = s.grids;
  q.bits = 3;
  q.rows = out;
  q.cols = in;
  const int64_t groups = (in + group - 1) / group;
  q.scales = Tensor({groups, out});
  for (float& v : q.scales.values()) v = 0.01f + 0.02f * uniform(rng);
  q.zeros.resize(groups * out);
  for (int32_t& z : q.zeros) z = static_cast<int32_t>(rng() % 9);  // true zero points in [0, 2^bits]
  for (int64_t c = 0; c < in; ++c) q.g_idx.push_back(static_cast<int32_t>(c / group));
  for (int64_t c = 0; c < in; ++c) q.column_scale.push_back(0.5f + uniform(rng));
  s.weight = Tensor({out, in});
  s.unrounded = Tensor({out, in});
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c) {
      // u anywhere on the grid and a little beyond it, so some levels clamp at 0 or 2^bits − 1.
      const double level = -1.5 + 10.0 * uniform(rng);
      s.unrounded.at(r, c) = static_cast<float>(s.Step(r, c) * (level - s.Zero(r, c)));
      s.weight.at(r, c) = s.unrounded.at(r, c) + 0.3f * s.Step(r, c) * normal(rng);
    }
  q.codes.assign(out * in, 0);
  for (int64_t b = 0; b < hessian_blocks; ++b) s.hessians.push_back(RandomSpd(in, rng));
  if (head_rows > 0)
    for (int64_t h = 0; h < out / head_rows; ++h) s.heads.push_back(RandomSpd(head_rows, rng));
  return s;
}

// The objective at v in float64, from the definition.
double ReferenceObjective(const Setup& s, const std::vector<double>& v, double lambda, double beta) {
  const int64_t out = s.grids.rows, in = s.grids.cols;
  const double max_code = MaxCode(s.grids.bits);
  std::vector<double> e(out * in);
  double regularizer = 0.0;
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c) {
      const int64_t i = r * in + c;
      const float step = s.Step(r, c);
      const double h = std::clamp((kZeta - kGamma) / (1.0 + std::exp(-v[i])) + kGamma, 0.0, 1.0);
      // ⌊u/s⌋ in float, as the grids are applied to u in float.
      const double below = std::floor(s.unrounded.at(r, c) / step);
      const double level = std::clamp(below + s.Zero(r, c) + h, 0.0, max_code);
      e[i] = double(step) * (level - s.Zero(r, c)) - s.weight.at(r, c);
      regularizer += 1.0 - std::pow(std::fabs(2.0 * h - 1.0), beta);
    }
  const int64_t block_rows = out / static_cast<int64_t>(s.hessians.size());
  std::vector<double> m(out * in, 0.0);  // E_b H_b
  for (int64_t r = 0; r < out; ++r) {
    const std::vector<double>& h = s.hessians[r / block_rows];
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < in; ++j) m[r * in + j] += e[r * in + i] * h[i * in + j];
  }
  double loss = 0.0;
  if (s.heads.empty()) {
    for (int64_t i = 0; i < out * in; ++i) loss += e[i] * m[i];
  } else {
    const int64_t d = out / static_cast<int64_t>(s.heads.size());
    for (int64_t r = 0; r < out; ++r) {
      const std::vector<double>& g = s.heads[r / d];
      for (int64_t r2 = r / d * d; r2 < (r / d + 1) * d; ++r2)
        for (int64_t j = 0; j < in; ++j) loss += g[(r % d) * d + r2 % d] * m[r2 * in + j] * e[r * in + j];
    }
  }
  return loss + lambda * regularizer;
}

// Variables spread over the live range of the rectified sigmoid and beyond, kept away from its
// kinks at ±ln 11 so that central differences do not straddle one.
std::vector<float> RandomVariables(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-3.5f, 3.5f);
  std::vector<float> v(n);
  for (float& x : v)
    do x = uniform(rng);
    while (std::fabs(std::fabs(x) - std::log(11.0f)) < 0.05f);
  return v;
}

void ExpectGradientMatches(const Setup& s, float lambda, float beta, uint32_t seed) {
  const RoundingProblem problem = s.Problem();
  SoftRoundingObjective objective(problem);
  std::mt19937 rng(seed);
  const std::vector<float> v = RandomVariables(s.grids.rows * s.grids.cols, rng);
  std::vector<float> grad(v.size());
  const double value = objective.Evaluate(v, lambda, beta, grad);
  std::vector<double> x(v.begin(), v.end());
  const double reference = ReferenceObjective(s, x, lambda, beta);
  EXPECT_NEAR(value, reference, 1e-4 * std::fabs(reference));

  double largest = 0.0;
  for (float g : grad) largest = std::max(largest, double(std::fabs(g)));
  ASSERT_GT(largest, 0.0);
  constexpr double kDelta = 1e-4;
  int live = 0, clamped = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + kDelta;
    const double up = ReferenceObjective(s, x, lambda, beta);
    x[i] = saved - kDelta;
    const double down = ReferenceObjective(s, x, lambda, beta);
    x[i] = saved;
    const double numeric = (up - down) / (2.0 * kDelta);
    EXPECT_NEAR(grad[i], numeric, 2e-3 * largest) << "weight " << i << " v " << v[i];
    (numeric != 0.0 ? live : clamped)++;
  }
  // Both kinds are exercised: weights that pass a gradient and weights clamped (by the
  // sigmoid's rectification or the grid's ends) that pass none.
  EXPECT_GT(live, 0);
  EXPECT_GT(clamped, 0);
}

TEST(AdaRoundGradientTest, RowBlocksWithTheirOwnHessians) {
  ExpectGradientMatches(MakeSetup(/*out=*/21, /*in=*/37, /*hessian_blocks=*/3, /*head_rows=*/0, /*group=*/16, 1),
                        /*lambda=*/0.0f, /*beta=*/20.0f, 11);
}

TEST(AdaRoundGradientTest, WithTheRegularizer) {
  ExpectGradientMatches(MakeSetup(21, 37, 1, 0, 10, 2), 0.7f, 5.3f, 12);
  ExpectGradientMatches(MakeSetup(21, 37, 1, 0, 10, 2), 1.5f, 2.0f, 13);
}

TEST(AdaRoundGradientTest, HeadOutputWeightings) {
  // Two Hessian blocks of 9 rows, each holding three heads of 3 rows.
  ExpectGradientMatches(MakeSetup(18, 29, 2, 3, 7, 3), 1.1f, 7.0f, 14);
}

// Adam over every weight with Gradient's gradient (PyTorch's defaults, the operations of
// adaround_rounding.cc's AdamUpdate; this file is built for baseline x86-64, which has no fused
// multiply-add to contract them into), against AdamStep, which freezes saturated weights, with its
// products as tile GEMMs throughout: the codes must match at every checkpoint, while the frozen
// weights grow to most of them.
void ExpectDescentMatchesPlainAdam(const Setup& s, uint32_t seed, bool bf16 = false) {
  const RoundingProblem problem = s.Problem();
  SoftRoundingObjective reference(problem), descent(problem);
  descent.SetLiveProductShare(0.0);  // the tile GEMM's summation order throughout, as Gradient's
  reference.SetBf16Products(bf16);
  descent.SetBf16Products(bf16);
  std::vector<float> v = reference.InitialVariables(), grad(v.size()), m(v.size(), 0.0f), second(v.size(), 0.0f);
  const int64_t n = static_cast<int64_t>(v.size());
  const std::vector<int32_t> initial = reference.Codes(v);
  std::mt19937 rng(seed);
  constexpr int kIters = 400, kWarmup = 60;
  constexpr float kLearningRate = 0.03f;
  int64_t fewest_live = n;
  for (int t = 1; t <= kIters; ++t) {
    const float lambda = t <= kWarmup ? 0.0f : 0.5f;
    const float beta = t <= kWarmup ? 20.0f : 20.0f - 18.0f * (t - kWarmup) / (kIters - kWarmup);
    reference.Gradient(v, lambda, beta, grad);
    const float step_size = kLearningRate / (1.0f - std::pow(0.9f, static_cast<float>(t)));
    const float inverse_sqrt_correction2 = 1.0f / std::sqrt(1.0f - std::pow(0.999f, static_cast<float>(t)));
    for (int64_t i = 0; i < n; ++i) {
      m[i] = 0.9f * m[i] + (1.0f - 0.9f) * grad[i];
      second[i] = 0.999f * second[i] + (1.0f - 0.999f) * grad[i] * grad[i];
      v[i] -= step_size * m[i] / (std::sqrt(second[i]) * inverse_sqrt_correction2 + 1e-8f);
    }
    descent.AdamStep(lambda, beta, kLearningRate, t);
    if (t % 20 == 0) {
      ASSERT_EQ(descent.DescentCodes(), reference.Codes(v)) << "step " << t;
    }
    fewest_live = std::min(fewest_live, descent.LiveWeights());
  }
  EXPECT_LT(fewest_live, n / 2);     // the frozen path was taken, for most weights
  EXPECT_GT(descent.LiveWeights(), 0);  // and the live one too, to the end
  EXPECT_NE(descent.DescentCodes(), initial);
}

TEST(AdaRoundDescentTest, FrozenWeightsKeepThePlainDescentsCodes) {
  // Two Hessian blocks of 35 rows: product tiles of 32 and 3 rows, so chunks of both sizes.
  ExpectDescentMatchesPlainAdam(MakeSetup(70, 37, 2, 0, 16, 4), 21);
  ExpectDescentMatchesPlainAdam(MakeSetup(18, 29, 2, 3, 7, 5), 22);  // heads of 3 rows
}

TEST(AdaRoundDescentTest, Bf16ProductsKeepThePlainDescentsCodes) {
  // The descent LearnRounding runs: its products in bfloat16, as Gradient's then.
  ExpectDescentMatchesPlainAdam(MakeSetup(70, 37, 2, 0, 16, 4), 23, /*bf16=*/true);
  ExpectDescentMatchesPlainAdam(MakeSetup(18, 29, 2, 3, 7, 5), 24, /*bf16=*/true);
}

// The gradient with bfloat16 products against the float32 one: each product's inputs are within
// 2⁻⁸ relative, so the half gradient's entries within about 2⁻⁷·Σ_k|e_k·H_kj|; with these SPD
// Hessians that sum stays within a few times the largest |E·H| entry, so 0.05 of the largest
// gradient holds with a margin, while a wrong Hessian block or a transposed product is off by
// the size of the gradient itself.
void ExpectBf16GradientNearFloat32(const Setup& s) {
  const RoundingProblem problem = s.Problem();
  SoftRoundingObjective exact(problem), rounded(problem);
  rounded.SetBf16Products(true);
  const std::vector<float> v = exact.InitialVariables();
  std::vector<float> want(v.size()), got(v.size());
  exact.Gradient(v, 0.5f, 10.0f, want);
  rounded.Gradient(v, 0.5f, 10.0f, got);
  float largest = 0.0f;
  for (const float g : want) largest = std::max(largest, std::fabs(g));
  int64_t differing = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 0.05f * largest) << "weight " << i;
    differing += got[i] != want[i];
  }
  EXPECT_GT(differing, 0);  // the bfloat16 products ran
}

TEST(AdaRoundGradientTest, Bf16ProductsStayWithinTheirRounding) {
  ExpectBf16GradientNearFloat32(MakeSetup(70, 37, 2, 0, 16, 4));
  ExpectBf16GradientNearFloat32(MakeSetup(18, 29, 2, 3, 7, 5));  // heads of 3 rows, with weightings
}

// The descent with its products at the live weights (the frozen weights' part kept as they
// freeze, plus the live weights' rows of H) against Gradient's tile GEMMs at the descent's own
// variables, every step: another summation order, so a tolerance. Both are float32 sums of `in`
// products e_k·H_kj, so each differs from the exact sum by at most about in·2⁻²⁴·Σ_k|e_k·H_kj|
// (Higham's bound for recursive summation); with in ≤ 70 and these SPD Hessians, Σ|·| stays
// within a few times the largest |E·H| entry, so 1e-4 of the step's largest gradient holds that
// with a margin of more than ten, while a wrong frozen part (a missed or doubled e_k·H_k) would be
// off by the size of a whole term. The regularizer's part is computed alike in both.
void ExpectLiveProductsMatchTheGemm(const Setup& s, double share) {
  const RoundingProblem problem = s.Problem();
  SoftRoundingObjective reference(problem), descent(problem);
  descent.SetLiveProductShare(share);
  const int64_t n = s.grids.rows * s.grids.cols;
  std::vector<float> grad(n);
  constexpr int kIters = 400, kWarmup = 60;
  int64_t differing = 0;
  for (int t = 1; t <= kIters; ++t) {
    const float lambda = t <= kWarmup ? 0.0f : 0.5f;
    const float beta = t <= kWarmup ? 20.0f : 20.0f - 18.0f * (t - kWarmup) / (kIters - kWarmup);
    reference.Gradient(descent.DescentVariables(), lambda, beta, grad);
    descent.AdamStep(lambda, beta, 0.03f, t);
    const std::vector<float> live_grad = descent.DescentGradient();
    float largest = 0.0f;
    for (const float g : grad) largest = std::max(largest, std::fabs(g));
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(live_grad[i], grad[i], 1e-4f * largest) << "step " << t << " weight " << i;
      differing += live_grad[i] != grad[i];
    }
  }
  EXPECT_GT(differing, 0);  // the live products ran: their summation order shows in the bits
  EXPECT_GT(descent.LiveWeights(), 0);
}

TEST(AdaRoundDescentTest, LiveProductsMatchTheTileGemm) {
  // Two Hessian blocks of 35 rows (tiles of 32 and 3 rows) at 37 and 70 columns; a share of 1
  // switches a tile at its first repack, so the frozen part is built by the GEMM early and then
  // grows by most of its weights' rows of H.
  ExpectLiveProductsMatchTheGemm(MakeSetup(70, 37, 2, 0, 16, 4), 1.0);
  ExpectLiveProductsMatchTheGemm(MakeSetup(70, 70, 2, 0, 9, 6), 0.25);
}

}  // namespace
}  // namespace qshard
