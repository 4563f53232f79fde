#include "worker/solvers/rtn.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/solvers/test_data.h"
#include "worker/quant/gptq_pack.h"
#include "worker/solvers/proxy_error.h"
#include "worker/solvers/solver.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<QuantizedLinear> Solve(const QuantSpec& spec, const Tensor& w,
                                      std::vector<const HessianSum*> hessians = {},
                                      std::span<const float> column_scale = {}, const FixedGrids* fixed = nullptr) {
  auto solver = MakeSolver("rtn", spec);
  if (!solver.ok()) return solver.status();
  LayerProblem problem;
  problem.name = "mlp.down_proj";
  problem.weight = &w;
  problem.hessians = std::move(hessians);
  problem.column_scale = column_scale;
  problem.fixed_grids = fixed;
  return (*solver)->Solve(problem);
}

QuantSpec Spec(int bits, int group_size, bool sym = false) {
  QuantSpec spec;
  spec.bits = bits;
  spec.group_size = group_size;
  spec.sym = sym;
  return spec;
}

TEST(RtnTest, RoundsEveryWeightOntoItsGroupGrid) {
  const int64_t out = 13, in = 50;
  const Tensor w = testing::RandomWeight(out, in, 1);
  for (int group_size : {-1, 16, 50, 64}) {
    for (bool sym : {false, true}) {
      const QuantSpec spec = Spec(3, group_size, sym);
      auto q = Solve(spec, w);
      ASSERT_TRUE(q.ok()) << q.status();
      EXPECT_EQ(q->weight.g_idx, ContiguousGroupIndex(in, group_size));
      EXPECT_TRUE(std::isnan(q->proxy_error));
      for (int64_t r = 0; r < out; ++r) {
        for (int64_t g = 0; g < GroupCount(in, group_size); ++g) {
          // The grid of (r, g) is the one FitGrid gives for that slice of the row.
          const int64_t begin = group_size > 0 ? g * group_size : 0;
          const int64_t count = group_size > 0 ? std::min<int64_t>(group_size, in - begin) : in;
          const AffineGrid grid = FitGrid(spec.grid_options(), w.row(r) + begin, count);
          ASSERT_EQ(q->weight.scales.at(g, r), grid.scale);
          ASSERT_EQ(q->weight.zeros[g * out + r], grid.zero);
          for (int64_t c = begin; c < begin + count; ++c)
            ASSERT_EQ(q->weight.codes[r * in + c], QuantizeToCode(w.at(r, c), grid.scale, grid.zero, 7));
        }
      }
      EXPECT_EQ(q->dequantized.values(), q->weight.Dequantized().values());
    }
  }
}

TEST(RtnTest, RealMatrixRoundTripsThroughTheCheckpointLayout) {
  std::string error;
  const Tensor w = testing::LoadGpt2Matrix("11", 768, &error);
  ASSERT_TRUE(error.empty()) << error;
  for (int bits : {2, 3, 4, 8}) {
    auto q = Solve(Spec(bits, 128), w);
    ASSERT_TRUE(q.ok()) << q.status();
    auto packed = PackGptq(q->weight);
    ASSERT_TRUE(packed.ok()) << packed.status();
    auto loaded = UnpackGptq(*packed);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->Dequantized().values(), q->dequantized.values()) << bits << " bits";
  }
}

TEST(RtnTest, ProxyErrorWhenAHessianIsGiven) {
  const int64_t out = 16, in = 40, tokens = 100;
  const Tensor w = testing::RandomWeight(out, in, 2);
  const std::vector<float> x = testing::CorrelatedActivations(tokens, in, 2, 5.0f, 3);
  const HessianSum h = testing::HessianOf(x, tokens, in);
  auto q = Solve(Spec(4, -1), w, {&h});
  ASSERT_TRUE(q.ok()) << q.status();
  const double measured = 2.0 * testing::OutputError(w, q->dequantized, x, tokens) / tokens;
  EXPECT_NEAR(q->proxy_error, measured, 1e-4 * measured);
}

TEST(RtnTest, ProxyErrorOfRowBlocksEachWithItsOwnHessian) {
  // Three row blocks of 7, 37 inputs: each block measured with its own statistics.
  const int64_t blocks = 3, rows = 7, in = 37, tokens = 61;
  const Tensor w = testing::RandomWeight(blocks * rows, in, 5);
  auto q = Solve(Spec(3, -1), w, {});
  ASSERT_TRUE(q.ok()) << q.status();
  std::vector<HessianSum> sums;
  std::vector<std::vector<float>> inputs;
  for (int64_t b = 0; b < blocks; ++b) {
    inputs.push_back(testing::CorrelatedActivations(tokens, in, 2, 3.0f + b, 10 + b));
    sums.push_back(testing::HessianOf(inputs.back(), tokens, in));
  }
  const HessianSum* hessians[] = {&sums[0], &sums[1], &sums[2]};
  double expected = 0.0;  // Σ_b 2/tokens · Σ_t ‖Δ_b x_t‖², in float64
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = b * rows; r < (b + 1) * rows; ++r) {
        double y = 0.0;
        for (int64_t c = 0; c < in; ++c)
          y += (double(w.at(r, c)) - q->dequantized.at(r, c)) * inputs[b][t * in + c];
        expected += 2.0 * y * y / tokens;
      }
  EXPECT_NEAR(ProxyError(w, q->dequantized, hessians), expected, 1e-5 * expected);
}

TEST(RtnTest, FixedGridsWithColumnMultipliers) {
  const int64_t out = 6, in = 10;
  const Tensor w = testing::RandomWeight(out, in, 4);
  std::vector<float> zeta(in);
  for (int64_t c = 0; c < in; ++c) zeta[c] = 0.5f + 0.125f * static_cast<float>(c);
  FixedGrids grids{Tensor({1, out}, std::vector<float>(out, 0.0078125f)), std::vector<int32_t>(out, 8)};
  auto q = Solve(Spec(4, -1), w, {}, zeta, &grids);
  ASSERT_TRUE(q.ok()) << q.status();
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) {
      const float step = 0.0078125f * zeta[c];
      const int32_t code = QuantizeToCode(w.at(r, c), step, 8, 15);
      EXPECT_EQ(q->weight.codes[r * in + c], code);
      EXPECT_EQ(q->dequantized.at(r, c), step * static_cast<float>(code - 8));
    }
  }
}

TEST(RtnTest, RejectsBadSpecsAndProblemsByName) {
  const Tensor w = testing::RandomWeight(4, 8, 5);
  EXPECT_THAT(std::string(Solve(Spec(1, -1), w).status().message()), HasSubstr("bits: 1"));
  EXPECT_THAT(std::string(Solve(Spec(4, 0), w).status().message()), HasSubstr("group_size: 0"));
  QuantSpec static_without_groups = Spec(4, -1);
  static_without_groups.static_groups = true;
  EXPECT_THAT(std::string(Solve(static_without_groups, w).status().message()), HasSubstr("static_groups"));
  EXPECT_THAT(std::string(MakeSolver("awq", Spec(4, -1)).status().message()), HasSubstr("unknown 'awq'"));

  Tensor bad = w;
  bad.at(2, 3) = std::nanf("");
  EXPECT_THAT(std::string(Solve(Spec(4, -1), bad).status().message()),
              HasSubstr("mlp.down_proj: weight[2,3] = nan is not finite"));
  bad.at(2, 3) = 1e6f;
  EXPECT_THAT(std::string(Solve(Spec(4, -1), bad).status().message()), HasSubstr("fp16 range"));
  const std::vector<float> short_zeta(3, 1.0f);
  EXPECT_THAT(std::string(Solve(Spec(4, -1), w, {}, short_zeta).status().message()), HasSubstr("column_scale"));
  FixedGrids not_fp16{Tensor({1, 4}, std::vector<float>(4, 0.1f)), std::vector<int32_t>(4, 8)};
  EXPECT_THAT(std::string(Solve(Spec(4, -1), w, {}, {}, &not_fp16).status().message()),
              HasSubstr("fixed_grids.scales[0,0] = 0.1 is not an fp16 value"));
}

TEST(RtnTest, NeedsNoHessian) {
  auto solver = MakeSolver("rtn", Spec(4, 128));
  ASSERT_TRUE(solver.ok());
  EXPECT_FALSE((*solver)->needs_hessian());
  EXPECT_EQ((*solver)->method(), "rtn");
}

}  // namespace
}  // namespace qshard
