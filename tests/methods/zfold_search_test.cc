// Z-Fold's grid search against brute force (every candidate scored by a direct ΔW H ΔWᵀ), and
// the alternating search's invariants: the loss never rises above the min-max start, ζ > 0,
// and tied columns share one ζ.
#include "worker/methods/zfold_search.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

#include "core/thread_pool.h"
#include "gtest/gtest.h"

namespace qshard {
namespace {

// Correlated inputs with a few outlier channels, as LLM activations have.
HessianSum CorrelatedInputs(int64_t dim, int64_t tokens, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> mix(dim * dim);
  for (float& v : mix) v = normal(rng);
  HessianSum sum(dim);
  std::vector<float> x(tokens * dim), z(dim);
  for (int64_t t = 0; t < tokens; ++t) {
    for (float& v : z) v = normal(rng);
    for (int64_t i = 0; i < dim; ++i) {
      double acc = z[i];
      for (int64_t j = 0; j < 4; ++j) acc += 0.5 * mix[i * dim + (i + j) % dim] * z[(i + j) % dim];
      x[t * dim + i] = static_cast<float>(acc * (i % 17 == 3 ? 12.0 : 1.0));
    }
  }
  sum.AddWindow(x.data(), tokens);
  return sum;
}

Tensor RandomWeight(int64_t rows, int64_t cols, std::mt19937& rng) {
  Tensor w({rows, cols});
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::lognormal_distribution<float> column_scale(0.0f, 0.5f);
  std::vector<float> scale(cols);
  for (float& s : scale) s = column_scale(rng);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) w.at(r, c) = normal(rng) * scale[c];
  return w;
}

// The candidate grids as specified: clip ratios 1.00..0.01 × zero floor/ceil (symmetric: the
// mirrored range, zero fixed), fp16 scales, zero ≥ 1 (refitted like GridForRange). Written out
// independently of the search.
std::vector<AffineGrid> Candidates(const std::vector<double>& x, const QuantSpec& spec) {
  float lo = 0, hi = 0;
  for (double v : x) lo = std::min(lo, float(v)), hi = std::max(hi, float(v));
  if (spec.sym) hi = std::max(-lo, hi), lo = -hi;
  if (lo == 0 && hi == 0) lo = -1, hi = 1;
  const int32_t maxq = MaxCode(spec.bits);
  std::vector<AffineGrid> out;
  for (int i = 0; i < 100; ++i) {
    const float clip = static_cast<float>(1.0 - i / 100.0);
    if (spec.sym) {
      out.push_back({RoundScaleToFp16((clip * hi - clip * lo) / maxq), (maxq + 1) / 2});
      continue;
    }
    for (int ceil_zero = 0; ceil_zero < 2; ++ceil_zero) {
      AffineGrid g;
      g.scale = RoundScaleToFp16((clip * hi - clip * lo) / maxq);
      const float z = -(clip * lo) / g.scale;
      g.zero = static_cast<int32_t>(std::clamp(ceil_zero ? std::ceil(z) : std::floor(z), 0.0f, float(maxq)));
      if (g.zero == 0) g = {RoundScaleToFp16(clip * hi / (maxq - 1)), 1};
      out.push_back(g);
    }
  }
  return out;
}

// Δ H Δᵀ of one row whose columns are quantized with per-column grids.
double RowLoss(const Tensor& w, int64_t r, const std::vector<AffineGrid>& column_grids,
               const std::vector<float>& zeta, const WorkingHessian& h, int bits) {
  const int64_t in = w.dim(1);
  std::vector<double> delta(in);
  for (int64_t c = 0; c < in; ++c) {
    const float step = column_grids[c].scale * zeta[c];
    delta[c] = DequantizeCode(QuantizeToCode(w.at(r, c), step, column_grids[c].zero, MaxCode(bits)), step,
                              column_grids[c].zero) - double(w.at(r, c));
  }
  double loss = 0.0;
  for (int64_t i = 0; i < in; ++i)
    for (int64_t j = 0; j < in; ++j) loss += delta[i] * h.h[i * in + j] * delta[j];
  return loss;
}

// Block coordinate descent over groups, each candidate scored directly.
double BruteForceRow(const StackedRows& stack, int64_t r, const std::vector<float>& zeta, const QuantSpec& spec,
                     const FixedGrids& start) {
  const int64_t in = stack.cols(), out = stack.rows(), gs = spec.group_size > 0 ? spec.group_size : in;
  const WorkingHessian& h = *stack.blocks.front().hessian;
  std::vector<AffineGrid> grids(in);
  for (int64_t c = 0; c < in; ++c) grids[c] = {start.scales[(c / gs) * out + r], start.zeros[(c / gs) * out + r]};
  double best = 0.0;
  for (int64_t c0 = 0; c0 < in; c0 += gs) {
    const int64_t n = std::min(gs, in - c0);
    std::vector<double> x(n);
    for (int64_t j = 0; j < n; ++j) x[j] = double(stack.weight.at(r, c0 + j)) / zeta[c0 + j];
    best = std::numeric_limits<double>::infinity();
    AffineGrid chosen;
    for (const AffineGrid& candidate : Candidates(x, spec)) {
      std::fill_n(grids.begin() + c0, n, candidate);
      const double loss = RowLoss(stack.weight, r, grids, zeta, h, spec.bits);
      if (loss < best) best = loss, chosen = candidate;
    }
    std::fill_n(grids.begin() + c0, n, chosen);
  }
  return best;
}

void ExpectSearchMatchesBruteForce(int group_size, int bits, bool sym = false) {
  std::mt19937 rng(3 + group_size + bits);
  const int64_t rows = 29, in = 53;
  const Tensor w = RandomWeight(rows, in, rng);
  const HessianSum h = CorrelatedInputs(in, 400, rng);
  const StackPart part{&w, {&h}};
  const StackedRows stack = StackRows({&part, 1}, 0.01);
  QuantSpec spec;
  spec.bits = bits;
  spec.group_size = group_size;
  spec.sym = sym;
  std::vector<float> zeta(in);
  std::lognormal_distribution<float> positive(0.0f, 0.3f);
  for (float& z : zeta) z = positive(rng);

  const FixedGrids start = MinMaxGrids(stack, spec);
  const FixedGrids searched = SearchGrids(stack, zeta, spec, start);
  ThreadPool pool(3);
  const FixedGrids on_pool = SearchGrids(stack, zeta, spec, start, &pool);
  EXPECT_EQ(on_pool.scales.values(), searched.scales.values());
  EXPECT_EQ(on_pool.zeros, searched.zeros);
  const int64_t gs = group_size > 0 ? group_size : in;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<AffineGrid> grids(in);
    for (int64_t c = 0; c < in; ++c)
      grids[c] = {searched.scales[(c / gs) * rows + r], searched.zeros[(c / gs) * rows + r]};
    const double found = RowLoss(w, r, grids, zeta, *stack.blocks[0].hessian, bits);
    const double brute = BruteForceRow(stack, r, zeta, spec, start);
    EXPECT_NEAR(found, brute, 1e-9 * brute) << "row " << r << " group_size " << group_size << " bits " << bits;
  }
}

TEST(ZfoldSearchTest, IncrementalScoresPickTheBruteForceBestPerChannel) { ExpectSearchMatchesBruteForce(-1, 3); }
TEST(ZfoldSearchTest, IncrementalScoresPickTheBruteForceBestWithGroups) { ExpectSearchMatchesBruteForce(16, 4); }
TEST(ZfoldSearchTest, TwoAndEightBitsAndSymmetric) {
  ExpectSearchMatchesBruteForce(-1, 2);
  ExpectSearchMatchesBruteForce(-1, 8);
  ExpectSearchMatchesBruteForce(-1, 4, /*sym=*/true);
}

TEST(ZfoldSearchTest, AlternationLowersTheLossKeepsZetaPositiveAndTied) {
  std::mt19937 rng(5);
  const int64_t in = 48;
  const Tensor a = RandomWeight(40, in, rng), b = RandomWeight(24, in, rng);
  const HessianSum h = CorrelatedInputs(in, 300, rng);
  const StackPart parts[] = {{&a, {&h}}, {&b, {&h, &h}}};
  const StackedRows stack = StackRows(parts, 0.01);
  EXPECT_EQ(stack.blocks.size(), 3u);
  EXPECT_EQ(stack.blocks[1].hessian, stack.blocks[2].hessian);  // one prepared copy per HessianSum
  // Columns c and c + 24 share a channel, like two query heads over one KV head.
  ZetaChannels channels;
  channels.channels = 24;
  for (int64_t c = 0; c < in; ++c) channels.channel_of_column.push_back(static_cast<int32_t>(c % 24));
  QuantSpec spec;
  spec.bits = 3;
  const ZfoldSolution s = SearchZfold(stack, spec, 30, &channels);
  EXPECT_GE(s.iterations, 1);
  EXPECT_LT(s.loss, s.initial_loss);
  ASSERT_EQ(s.channel_zeta.size(), 24u);
  for (float z : s.channel_zeta) EXPECT_GT(z, 0.0f);
  const std::vector<float> zeta = ColumnZeta(channels, s.channel_zeta);
  EXPECT_NEAR(s.loss, HessianWeightedLoss(stack, zeta, s.grids, 3, -1), 1e-12 * s.loss);
  for (int64_t c = 0; c < 24; ++c) EXPECT_EQ(zeta[c], zeta[c + 24]);

  const ZfoldSolution fixed = SearchZfold(stack, spec, 30, nullptr);
  EXPECT_TRUE(fixed.channel_zeta.empty());
  EXPECT_LE(fixed.loss, fixed.initial_loss);
  std::printf("3-bit loss: min-max %.6g, grid search with ζ = 1 %.6g, Z-Fold %.6g after %d alternations\n",
              s.initial_loss, fixed.loss, s.loss, s.iterations);
}

}  // namespace
}  // namespace qshard
