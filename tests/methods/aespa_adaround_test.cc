// AdaRound on small random problems: its loss matches a direct float64 evaluation of
// tr(ΔW H ΔWᵀ) and Σ_h tr(G_h ΔW_h H ΔW_hᵀ), it starts from GPTQ's rounding (GPTQ's unrounded
// values round to GPTQ's codes), and it never ends above that start — here it improves on it.
#include "worker/methods/adaround_rounding.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "gtest/gtest.h"
#include "tests/methods/mixed_inputs.h"
#include "worker/methods/zfold_problem.h"
#include "worker/solvers/solver.h"

namespace qshard {
namespace {

std::vector<double> RandomSpd(int64_t d, std::mt19937& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> a(d * d), g(d * d, 0.0);
  for (double& v : a) v = normal(rng);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j)
      for (int64_t k = 0; k < d; ++k) g[i * d + j] += a[i * d + k] * a[j * d + k] / d;
  return g;
}

struct Fixture {
  Tensor weight;
  HessianSum sum;
  WorkingHessian hessian;
  QuantizedLinear gptq;
  std::vector<std::vector<double>> heads;
};

Fixture MakeSetup(int64_t out, int64_t in, int bits, int64_t head_rows, uint32_t seed) {
  std::mt19937 rng(seed);
  Fixture s;
  s.weight = Tensor({out, in});
  std::normal_distribution<float> normal(0.0f, 0.02f);  // LLM-like weight scale
  for (float& v : s.weight.values()) v = normal(rng);
  s.sum = testing::MixedInputs(in, 6 * in, rng, {1, 0.7f, 5, 0.4f, 13, 2, 8.0f});
  QuantSpec spec;
  spec.bits = bits;
  s.hessian = PrepareHessian(s.sum, spec.damp);
  auto gptq = MakeSolver("gptq", spec);
  EXPECT_TRUE(gptq.ok());
  LayerProblem problem;
  problem.weight = &s.weight;
  problem.hessians = {&s.sum};
  problem.keep_unrounded = true;
  auto solved = (*gptq)->Solve(problem);
  EXPECT_TRUE(solved.ok()) << solved.status();
  s.gptq = std::move(*solved);
  if (head_rows > 0)
    for (int64_t h = 0; h < out / head_rows; ++h) s.heads.push_back(RandomSpd(head_rows, rng));
  return s;
}

RoundingProblem ProblemOf(const Fixture& s) {
  RoundingProblem p{&s.weight, &s.gptq.unrounded, &s.gptq.weight, {&s.hessian.h}, {}};
  for (const auto& g : s.heads) p.output_weightings.push_back(&g);
  return p;
}

// Σ_h tr(G_h ΔW_h H ΔW_hᵀ) (G = I without head weightings), in float64 from the definition.
double DirectLoss(const Fixture& s, const std::vector<int32_t>& codes) {
  const QuantizedWeight& q = s.gptq.weight;
  const int64_t out = q.rows, in = q.cols;
  std::vector<double> delta(out * in);
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c)
      delta[r * in + c] = double(DequantizeCode(codes[r * in + c], q.scales.at(0, r), q.zeros[r])) - s.weight.at(r, c);
  std::vector<double> m(out * out, 0.0);  // ΔW H ΔWᵀ
  for (int64_t a = 0; a < out; ++a)
    for (int64_t b = 0; b < out; ++b)
      for (int64_t i = 0; i < in; ++i)
        for (int64_t j = 0; j < in; ++j) m[a * out + b] += delta[a * in + i] * s.hessian.h[i * in + j] * delta[b * in + j];
  double loss = 0.0;
  if (s.heads.empty()) {
    for (int64_t a = 0; a < out; ++a) loss += m[a * out + a];
    return loss;
  }
  const int64_t d = out / static_cast<int64_t>(s.heads.size());
  for (size_t h = 0; h < s.heads.size(); ++h)
    for (int64_t a = 0; a < d; ++a)
      for (int64_t b = 0; b < d; ++b) loss += s.heads[h][a * d + b] * m[(h * d + a) * out + h * d + b];
  return loss;
}

TEST(AdaRoundTest, GptqUnroundedValuesRoundToGptqCodes) {
  const Fixture s = MakeSetup(16, 40, 3, 0, 1);
  ASSERT_EQ(s.gptq.unrounded.shape(), s.weight.shape());
  const QuantizedWeight& q = s.gptq.weight;
  for (int64_t r = 0; r < q.rows; ++r)
    for (int64_t c = 0; c < q.cols; ++c)
      EXPECT_EQ(QuantizeToCode(s.gptq.unrounded.at(r, c), q.scales.at(0, r), q.zeros[r], MaxCode(3)), q.codes[r * q.cols + c]);
}

void ExpectImproves(int64_t head_rows, int bits, uint32_t seed) {
  const Fixture s = MakeSetup(32, 48, bits, head_rows, seed);
  const RoundingProblem p = ProblemOf(s);
  const double start = ReconstructionLoss(p, s.gptq.weight.codes);
  EXPECT_NEAR(start, DirectLoss(s, s.gptq.weight.codes), 1e-4 * start);

  AdaRoundOptions options;
  options.iters = 2000;
  const auto t0 = std::chrono::steady_clock::now();
  const RoundingResult r = LearnRounding(p, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NEAR(r.initial_loss, start, 1e-9 * start);
  EXPECT_LE(r.loss, r.initial_loss);
  EXPECT_TRUE(r.learned);
  EXPECT_NEAR(r.loss, DirectLoss(s, r.codes), 1e-4 * r.loss);
  for (size_t i = 0; i < r.codes.size(); ++i) {  // the grid point below or above the unrounded value
    const float scaled = s.gptq.unrounded[i] / s.gptq.weight.scales.at(0, i / 48) + s.gptq.weight.zeros[i / 48];
    EXPECT_LE(std::fabs(r.codes[i] - std::clamp(scaled, 0.0f, float(MaxCode(bits)))), 1.0f + 1e-4f);
  }
  std::printf("AdaRound %d-bit%s: GPTQ loss %.5g -> %.5g (%.1f%% lower), %d iterations in %.2f s\n", bits,
              head_rows > 0 ? " with head weightings" : "", r.initial_loss, r.loss,
              100.0 * (1.0 - r.loss / r.initial_loss), options.iters, seconds);
}

TEST(AdaRoundTest, ImprovesOnGptqPlainLoss) { ExpectImproves(0, 3, 2); }
TEST(AdaRoundTest, ImprovesOnGptqWithHeadWeightings) { ExpectImproves(8, 2, 3); }

TEST(AdaRoundTest, NeverEndsAboveTheStart) {
  // A regularizer so strong that the learned rounding ignores the loss: the start is kept.
  const Fixture s = MakeSetup(16, 24, 3, 0, 4);
  AdaRoundOptions options;
  options.iters = 200;
  options.lambda = 1e6;
  options.warmup = 0.0;
  const RoundingResult r = LearnRounding(ProblemOf(s), options);
  EXPECT_LE(r.loss, r.initial_loss);
  if (!r.learned) EXPECT_EQ(r.codes, s.gptq.weight.codes);
  options.iters = 0;
  const RoundingResult none = LearnRounding(ProblemOf(s), options);
  EXPECT_EQ(none.codes, s.gptq.weight.codes);
  EXPECT_FALSE(none.learned);
}

}  // namespace
}  // namespace qshard
