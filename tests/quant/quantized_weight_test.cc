// QuantizedWeight::Dequantized(), the row-at-a-time form, against the single-element definition
// Dequantize(r, c), bit for bit: groups contiguous and shuffled (act-order), with and without
// Z-Fold's column multipliers, on sizes that are no multiple of anything.
#include <random>

#include "gtest/gtest.h"
#include "tests/quant/random_quantized_weight.h"

namespace qshard {
namespace {

TEST(QuantizedWeightTest, DequantizedIsDequantizeOfEveryElement) {
  for (const bool act_order : {false, true}) {
    for (const bool multipliers : {false, true}) {
      QuantizedWeight w = testing_support::RandomQuantizedWeight(3, 37, 83, 20, act_order, 7);
      if (multipliers) {
        std::mt19937 rng(8);
        std::uniform_real_distribution<float> zeta(0.25f, 4.0f);
        for (int64_t c = 0; c < w.cols; ++c) w.column_scale.push_back(zeta(rng));
      }
      const Tensor all = w.Dequantized();
      ASSERT_EQ(all.shape(), (std::vector<int64_t>{w.rows, w.cols}));
      int64_t differing = 0;
      for (int64_t r = 0; r < w.rows; ++r)
        for (int64_t c = 0; c < w.cols; ++c) differing += all.at(r, c) != w.Dequantize(r, c);
      EXPECT_EQ(differing, 0) << "act_order " << act_order << " multipliers " << multipliers;
    }
  }
}

}  // namespace
}  // namespace qshard
