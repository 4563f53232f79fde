#include "worker/quant/quant_grid.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace qshard {
namespace {

GridOptions Options(int bits, bool sym, bool fp16_scales = false) {
  GridOptions options;
  options.bits = bits;
  options.sym = sym;
  options.fp16_scales = fp16_scales;
  return options;
}

double PNormError(const std::vector<float>& row, const AffineGrid& grid, int bits, double norm) {
  double err = 0.0;
  for (float x : row) {
    const int32_t code = QuantizeToCode(x, grid.scale, grid.zero, MaxCode(bits));
    err += std::pow(std::fabs(static_cast<double>(DequantizeCode(code, grid.scale, grid.zero)) - x), norm);
  }
  return err;
}

// Heavy-tailed values (a normal divided by a uniform), like real weight rows with outliers.
std::vector<float> HeavyTailedRow(std::mt19937& rng, int n) {
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::uniform_real_distribution<float> uniform(0.05f, 1.0f);
  std::vector<float> row(n);
  for (float& v : row) v = normal(rng) / uniform(rng);
  return row;
}

TEST(QuantGridTest, AsymmetricMinMaxIncludesZero) {
  const std::vector<float> row = {-1.0f, 0.5f, 2.0f};
  const AffineGrid grid = FitGrid(Options(4, false), row.data(), row.size());
  EXPECT_EQ(grid.scale, 3.0f / 15.0f);  // (xmax − xmin) / maxq
  EXPECT_EQ(grid.zero, 5);              // round(−xmin / scale)
  // A strictly positive row still has xmin = 0 in its range (find_params uses min(min w, 0)).
  const std::vector<float> positive = {1.0f, 2.0f, 3.0f};
  GridOptions raw = Options(4, false);
  raw.nonzero_zero_point = false;
  const AffineGrid reference = FitGrid(raw, positive.data(), positive.size());
  EXPECT_EQ(reference.scale, 3.0f / 15.0f);
  EXPECT_EQ(reference.zero, 0);
}

TEST(QuantGridTest, ZeroPointZeroIsRefittedForV1Checkpoints) {
  // Zero point 0 cannot be stored as zero − 1: the same range gets zero 1 and one code fewer.
  const std::vector<float> row = {-0.01f, 1.0f, 3.0f};
  const AffineGrid grid = FitGrid(Options(4, false), row.data(), row.size());
  EXPECT_EQ(grid.zero, 1);
  EXPECT_EQ(grid.scale, 3.0f / 14.0f);
  for (float x : row) {  // the whole range is still covered: errors stay within half a step
    const float q = DequantizeCode(QuantizeToCode(x, grid.scale, grid.zero, 15), grid.scale, grid.zero);
    EXPECT_LE(std::fabs(q - x), grid.scale / 2) << x;
  }
}

TEST(QuantGridTest, SymmetricMirrorsTheLargerSide) {
  for (const std::vector<float>& row : {std::vector<float>{-1.0f, 3.0f}, std::vector<float>{-3.0f, 1.0f}}) {
    const AffineGrid grid = FitGrid(Options(4, true), row.data(), row.size());
    EXPECT_EQ(grid.scale, 6.0f / 15.0f);
    EXPECT_EQ(grid.zero, 8);  // (maxq + 1) / 2
  }
  const AffineGrid three_bit = FitGrid(Options(3, true), std::vector<float>{0.5f, -2.0f}.data(), 2);
  EXPECT_EQ(three_bit.zero, 4);
  EXPECT_EQ(three_bit.scale, 4.0f / 7.0f);
  // An all-nonnegative row is mirrored too (the reference would keep [0, 2] and clip at ~1).
  const AffineGrid positive = FitGrid(Options(4, true), std::vector<float>{1.0f, 2.0f}.data(), 2);
  EXPECT_EQ(positive.scale, 4.0f / 15.0f);
  const int32_t top = QuantizeToCode(2.0f, positive.scale, positive.zero, 15);
  EXPECT_LE(std::fabs(DequantizeCode(top, positive.scale, positive.zero) - 2.0f), positive.scale / 2);
}

TEST(QuantGridTest, AllZeroRowsGetUnitRange) {
  const std::vector<float> zeros(17, 0.0f);
  for (bool sym : {false, true}) {
    for (int bits : {2, 3, 4, 8}) {
      const AffineGrid grid = FitGrid(Options(bits, sym), zeros.data(), zeros.size());
      EXPECT_EQ(grid.scale, 2.0f / static_cast<float>(MaxCode(bits))) << bits << sym;
      const int32_t code = QuantizeToCode(0.0f, grid.scale, grid.zero, MaxCode(bits));
      EXPECT_EQ(DequantizeCode(code, grid.scale, grid.zero), 0.0f);
    }
  }
}

TEST(QuantGridTest, RoundsHalfToEvenNotAwayFromZero) {
  struct Case {
    float x;
    int32_t zero;
    int32_t half_even;
    int32_t half_away;
  };
  // x / step lands exactly on .5; torch.round and std::nearbyint pick the even neighbour.
  const Case cases[] = {{0.5f, 0, 0, 1},  {1.5f, 0, 2, 2},   {2.5f, 0, 2, 3},
                        {3.5f, 0, 4, 4},  {-2.5f, 8, 6, 5},  {-0.5f, 8, 8, 7}};
  for (const Case& c : cases) {
    EXPECT_EQ(QuantizeToCode(c.x, 1.0f, c.zero, 15), c.half_even) << c.x;
    EXPECT_EQ(static_cast<int32_t>(std::round(c.x)) + c.zero, c.half_away) << c.x;
  }
  // With a non-unit step: 5 · 0.25 / 0.5 = 2.5 exactly.
  EXPECT_EQ(QuantizeToCode(1.25f, 0.5f, 0, 15), 2);
  EXPECT_EQ(QuantizeToCode(1.75f, 0.5f, 0, 15), 4);
}

TEST(QuantGridTest, ClampsToTheCodeRange) {
  EXPECT_EQ(QuantizeToCode(100.0f, 1.0f, 3, 15), 15);
  EXPECT_EQ(QuantizeToCode(-100.0f, 1.0f, 3, 15), 0);
  EXPECT_EQ(DequantizeCode(0, 0.5f, 3), -1.5f);
}

TEST(QuantGridTest, ScalesRoundToNearestFp16) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-30.0f, 15.0f);
  for (int i = 0; i < 20000; ++i) {
    const float scale = std::exp2(exponent(rng));
    const float expected = static_cast<float>(static_cast<_Float16>(scale));  // compiler's RNE
    EXPECT_EQ(RoundScaleToFp16(scale), expected > 0.0f ? expected : 5.9604644775390625e-8f) << scale;
  }
  // Ties between two fp16 values go to the even mantissa.
  const float one_plus_half_ulp = 1.0f + 1.0f / 2048.0f;  // midway between 1 and 1 + 2^-10
  EXPECT_EQ(RoundScaleToFp16(one_plus_half_ulp), 1.0f);
  const float odd_plus_half_ulp = 1.0f + 3.0f / 2048.0f;  // midway between 1 + 2^-10 and 1 + 2^-9
  EXPECT_EQ(RoundScaleToFp16(odd_plus_half_ulp), 1.0f + 2.0f / 1024.0f);
  EXPECT_EQ(RoundScaleToFp16(1e-12f), 5.9604644775390625e-8f);  // never 0
}

TEST(QuantGridTest, Fp16GridUsesTheRoundedScaleForTheZeroPoint) {
  const std::vector<float> row = {-1.0f, 0.5f, 2.0f};
  const AffineGrid grid = FitGrid(Options(4, false, /*fp16_scales=*/true), row.data(), row.size());
  EXPECT_EQ(grid.scale, static_cast<float>(static_cast<_Float16>(0.2f)));
  EXPECT_EQ(grid.zero, static_cast<int32_t>(std::nearbyint(1.0f / grid.scale)));
}

TEST(QuantGridTest, MinMaxKeepsEveryValueWithinHalfAStep) {
  std::mt19937 rng(3);
  for (bool sym : {false, true}) {
    for (int bits : {2, 3, 4, 8}) {
      const std::vector<float> row = HeavyTailedRow(rng, 301);
      const AffineGrid grid = FitGrid(Options(bits, sym, /*fp16_scales=*/true), row.data(), row.size());
      for (float x : row) {
        const int32_t code = QuantizeToCode(x, grid.scale, grid.zero, MaxCode(bits));
        // Rounding the scale to fp16 (relative error ≤ 2^-11) can move the extremes, maxq
        // steps away from zero, by up to maxq · 2^-11 steps beyond half a step.
        const float bound = grid.scale * (0.5f + static_cast<float>(MaxCode(bits)) / 2048.0f);
        EXPECT_LE(std::fabs(DequantizeCode(code, grid.scale, grid.zero) - x), bound)
            << "bits " << bits << " sym " << sym << " x " << x;
      }
    }
  }
}

TEST(QuantGridTest, MseClipIsNeverWorseThanMinMaxInItsNorm) {
  std::mt19937 rng(11);
  int strictly_better = 0, rows = 0;
  for (bool sym : {false, true}) {
    for (int bits : {2, 3, 4}) {
      for (int trial = 0; trial < 20; ++trial, ++rows) {
        const std::vector<float> row = HeavyTailedRow(rng, 128);
        GridOptions options = Options(bits, sym, /*fp16_scales=*/true);
        const AffineGrid min_max = FitGrid(options, row.data(), row.size());
        options.mse_clip = true;
        const AffineGrid clipped = FitGrid(options, row.data(), row.size());
        const double e_min_max = PNormError(row, min_max, bits, options.mse_norm);
        const double e_clipped = PNormError(row, clipped, bits, options.mse_norm);
        EXPECT_LE(e_clipped, e_min_max) << "bits " << bits << " sym " << sym;
        strictly_better += e_clipped < e_min_max;
      }
    }
  }
  // Heavy tails make a shrunken range pay off on most rows.
  EXPECT_GT(strictly_better, rows / 2);
}

TEST(QuantGridTest, BatchedFitMatchesRowByRowFit) {
  std::mt19937 rng(5);
  const int rows = 13, count = 29;
  std::vector<std::vector<float>> data;
  std::vector<float> columns(rows * count);  // value k of row r at [k * rows + r]
  for (int r = 0; r < rows; ++r) {
    data.push_back(HeavyTailedRow(rng, count));
    for (int k = 0; k < count; ++k) columns[k * rows + r] = data[r][k];
  }
  for (bool mse : {false, true}) {
    GridOptions options = Options(3, false, true);
    options.mse_clip = mse;
    std::vector<float> scales(rows);
    std::vector<int32_t> zeros(rows);
    FitGrids(options, columns.data(), rows, count, rows, scales.data(), zeros.data());
    for (int r = 0; r < rows; ++r) {
      const AffineGrid grid = FitGrid(options, data[r].data(), count);
      EXPECT_EQ(scales[r], grid.scale);
      EXPECT_EQ(zeros[r], grid.zero);
    }
  }
}

TEST(QuantGridTest, GroupGridsCoverGroupsOfInputColumns) {
  // wt is [in = 5, out = 2]; groups of 2 columns: {0,1}, {2,3}, {4}.
  const std::vector<float> wt = {1, -1, 2, -2, 10, -10, 20, -20, 100, -100};
  std::vector<float> scales(3 * 2);
  std::vector<int32_t> zeros(3 * 2);
  FitGroupGrids(Options(8, true), wt.data(), 5, 2, 2, scales.data(), zeros.data(), 2);
  const float steps[] = {2, 2, 20, 20, 100, 100};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(scales[i], 2.0f * steps[i] / 255.0f) << i;
}

TEST(QuantGridTest, RejectsUnsupportedBitWidths) {
  EXPECT_FALSE(ValidateGridOptions(Options(1, false)).ok());
  EXPECT_FALSE(ValidateGridOptions(Options(9, false)).ok());
  EXPECT_TRUE(ValidateGridOptions(Options(2, false)).ok());
  EXPECT_TRUE(ValidateGridOptions(Options(8, true)).ok());
}

}  // namespace
}  // namespace qshard
