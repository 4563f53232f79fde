// AdaRound on small random problems: its loss matches a direct float64 evaluation of
// tr(ΔW H ΔWᵀ) and Σ_h tr(G_h ΔW_h H ΔW_hᵀ), it starts from GPTQ's rounding (GPTQ's unrounded
// values round to GPTQ's codes), and it never ends above that start — here it improves on it.
// Descended in row parts on a pool, it gives the codes of one descent.
#include "worker/methods/adaround_rounding.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "core/thread_pool.h"
#include "gtest/gtest.h"
#include "kernels/cpu/blas.h"
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
  if (!r.learned) {
    EXPECT_EQ(r.codes, s.gptq.weight.codes);
  }
  options.iters = 0;
  const RoundingResult none = LearnRounding(ProblemOf(s), options);
  EXPECT_EQ(none.codes, s.gptq.weight.codes);
  EXPECT_FALSE(none.learned);
}

TEST(AdaRoundTest, RowPartsCoverTheRowsInWholeHeadsOrProductTiles) {
  const Fixture plain = MakeSetup(100, 12, 3, 0, 5);  // one unit of 100 rows: tiles of 32
  const std::vector<RowRange> parts = RoundingRowParts(ProblemOf(plain), 3);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts.front().begin, 0);
  EXPECT_EQ(parts.back().end, 100);
  for (size_t p = 1; p < parts.size(); ++p) EXPECT_EQ(parts[p].begin, parts[p - 1].end);
  for (const RowRange& part : parts) EXPECT_EQ(part.begin % 32, 0);
  EXPECT_EQ(RoundingRowParts(ProblemOf(plain), 9).size(), 4u);  // no more parts than tiles
  const Fixture heads = MakeSetup(40, 12, 3, 8, 6);  // 5 heads of 8
  const std::vector<RowRange> head_parts = RoundingRowParts(ProblemOf(heads), 7);
  ASSERT_EQ(head_parts.size(), 5u);  // no more parts than heads
  for (const RowRange& part : head_parts) EXPECT_EQ(part.begin % 8, 0);
  EXPECT_EQ(RoundingRowParts(ProblemOf(heads), 2).size(), 2u);
  EXPECT_EQ(RoundingRowParts(ProblemOf(heads), 0).size(), 1u);
  // Three Hessian blocks of 14 rows and no weightings: whole blocks, each one tile.
  Fixture blocks = MakeSetup(42, 12, 3, 0, 5);
  RoundingProblem three = ProblemOf(blocks);
  three.hessians = {three.hessians[0], three.hessians[0], three.hessians[0]};
  const std::vector<RowRange> block_parts = RoundingRowParts(three, 2);
  ASSERT_EQ(block_parts.size(), 2u);
  EXPECT_EQ(block_parts[0].end, 14);
  EXPECT_EQ(RoundingRowParts(three, 4).size(), 3u);
  // Two blocks of 50 rows, three parts: a block's tiles (32 and 18 rows), then the other block.
  RoundingProblem two = ProblemOf(plain);
  two.hessians = {two.hessians[0], two.hessians[0]};
  const std::vector<RowRange> tile_parts = RoundingRowParts(two, 3);
  ASSERT_EQ(tile_parts.size(), 3u);
  EXPECT_EQ(tile_parts[1].begin, 32);
  EXPECT_EQ(tile_parts[2].begin, 50);
}

// The same problem descended whole and in parts on a pool of `threads`; long enough for most
// weights to freeze, so that tiles switch to products at their live weights (SetLiveProductShare)
// and their frozen parts must agree too.
void ExpectSameCodesOnAPool(RoundingProblem p, int threads) {
  AdaRoundOptions options;
  options.iters = 600;
  const RoundingResult whole = LearnRounding(p, options);
  EXPECT_NE(whole.codes, p.initial->codes);  // the descent moved codes, so the parts had work to agree on
  ThreadPool pool(threads);
  p.pool = &pool;
  const RoundingResult parts = LearnRounding(p, options);
  EXPECT_EQ(parts.codes, whole.codes);
  EXPECT_EQ(parts.loss, whole.loss);
  EXPECT_EQ(parts.learned, whole.learned);
}

TEST(AdaRoundTest, PartsOnAPoolGiveTheCodesOfOneDescent) {
  ExpectSameCodesOnAPool(ProblemOf(MakeSetup(100, 45, 3, 0, 7)), 3);  // tiles 32, 32, 32 + 4
  ExpectSameCodesOnAPool(ProblemOf(MakeSetup(40, 45, 2, 8, 8)), 2);   // 5 heads: parts of 2 and 3
  ExpectSameCodesOnAPool(ProblemOf(MakeSetup(40, 45, 2, 8, 8)), 3);
  // Two Hessian blocks of 50 rows: with 3 threads parts of 32, 18 and 50 rows, with 2 a block each.
  Fixture s = MakeSetup(100, 45, 3, 0, 9);
  std::mt19937 rng(10);
  const HessianSum other = testing::MixedInputs(45, 6 * 45, rng, {3, 0.5f, 9, 1.5f, 11, 4, 6.0f});
  const WorkingHessian second = PrepareHessian(other, QuantSpec().damp);
  RoundingProblem p = ProblemOf(s);
  p.hessians.push_back(&second.h);
  ExpectSameCodesOnAPool(p, 3);
  ExpectSameCodesOnAPool(p, 2);
}

// The gradient of each row part has the whole gradient's bits on its rows, under one BLAS
// thread as LearnRounding runs it, at a size where OpenBLAS 0.3.21 gives a row of a 96-row
// product other bits than the same row of a 32-row one (its small-matrix kernel takes the
// latter): without the 32-row tiles of E·H this fails on the AVX-512 VM.
TEST(AdaRoundTest, RowPartsHaveTheWholeGradientsBits) {
  const Fixture s = MakeSetup(96, 130, 3, 0, 11);
  const RoundingProblem p = ProblemOf(s);
  const kernels::SingleThreadedBlas one_thread;
  SoftRoundingObjective whole(p);
  const std::vector<float> v = whole.InitialVariables();
  std::vector<float> grad(v.size());
  whole.Gradient(v, 0.01f, 10.0f, grad);
  const std::vector<RowRange> parts = RoundingRowParts(p, 3);
  ASSERT_EQ(parts.size(), 3u);
  for (const RowRange& part : parts) {
    SoftRoundingObjective objective(p, part);
    const std::span<const float> part_v(v.data() + part.begin * 130, part.size() * 130);
    std::vector<float> part_grad(part_v.size());
    objective.Gradient(part_v, 0.01f, 10.0f, part_grad);
    EXPECT_EQ(std::memcmp(part_grad.data(), grad.data() + part.begin * 130, part_grad.size() * sizeof(float)), 0)
        << "rows [" << part.begin << ", " << part.end << ")";
  }
}

}  // namespace
}  // namespace qshard
