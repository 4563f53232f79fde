// A FlattenQuant linear through the CPU kernels: Apply flattens each token (split channels
// divided by their copies), quantizes it per tensor and multiplies in int32 — the same as the
// plain reference on the flattened activations, at 8 and at 4 bits (W4A4), into a layer whose
// input width is the unflattened one. Malformed input maps are refused.
#include "worker/export/flattenquant_linear_kernel.h"

#include <cmath>
#include <limits>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cpu/gptq_reference.h"
#include "tests/quant/random_quantized_weight.h"
#include "worker/methods/flatten_channels.h"

namespace qshard {
namespace {

TEST(FlattenQuantLinearKernelTest, MatchesTheReferenceOnFlattenedActivations) {
  const int64_t layer_in = 21, out = 24, tokens = 7;  // out: a partial tile of 16
  // Channels 3 and 17 split in 3 and 2: 24 packed inputs, a multiple of 8.
  std::vector<int32_t> channels;
  for (int32_t c = 0; c < layer_in; ++c) channels.insert(channels.end(), c == 3 ? 3 : c == 17 ? 2 : 1, c);
  const int64_t in = static_cast<int64_t>(channels.size());
  ASSERT_EQ(in, 24);
  std::mt19937 rng(4);
  std::normal_distribution<float> normal;
  Tensor x({tokens, layer_in});
  for (float& v : x.values()) v = normal(rng);
  for (int bits : {8, 4}) {
    const QuantizedWeight w = testing_support::RandomQuantizedWeight(bits, out, in, in, false, 9 + bits);
    auto packed = PackGptq(w);
    ASSERT_TRUE(packed.ok()) << packed.status();
    const kernels::StaticActivationQuant quant{bits, 2.5f / kernels::ActivationMaxCode(bits)};  // clips a few
    auto kernel = FlattenQuantLinearKernel::Create(*packed, channels, quant, nullptr);
    ASSERT_TRUE(kernel.ok()) << kernel.status();
    EXPECT_EQ((*kernel)->in_features(), layer_in);
    const Tensor y = (*kernel)->Apply(x);

    std::vector<float> flat(tokens * in), expected(tokens * out, std::numeric_limits<float>::quiet_NaN());
    FlattenActivations(x.data(), tokens, layer_in, channels, CopiesPerChannel(channels), flat.data());
    kernels::ReferenceGptqGemmStatic(PackedView(*packed), flat.data(), tokens, quant, expected.data());
    for (int64_t k = 0; k < tokens * out; ++k)
      EXPECT_NEAR(y[k], expected[k], 1e-4 * (1.0 + std::fabs(expected[k]))) << bits << " bits, " << k;
  }
}

TEST(FlattenQuantLinearKernelTest, RefusesMalformedInputMaps) {
  const QuantizedWeight w = testing_support::RandomQuantizedWeight(8, 4, 8, 8, false, 1);
  auto packed = PackGptq(w);
  ASSERT_TRUE(packed.ok());
  const kernels::StaticActivationQuant quant{8, 0.1f};
  EXPECT_FALSE(FlattenQuantLinearKernel::Create(*packed, {0, 1, 2}, quant, nullptr).ok());  // too short
  EXPECT_FALSE(FlattenQuantLinearKernel::Create(*packed, {0, 1, 3, 4, 5, 6, 7, 8}, quant, nullptr).ok());  // a gap
  EXPECT_FALSE(FlattenQuantLinearKernel::Create(*packed, {0, 1, 2, 3, 4, 5, 6, 7}, {3, 0.1f}, nullptr).ok());
  EXPECT_TRUE(FlattenQuantLinearKernel::Create(*packed, {0, 0, 1, 2, 3, 4, 5, 5}, quant, nullptr).ok());
}

}  // namespace
}  // namespace qshard
