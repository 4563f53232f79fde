// The symmetric int8 rule (kernels/layout/int8_symmetric.h) that the CPU int8 path and the CUDA
// W8A8 path share, and the W8A8 weight layout made from it (int8_channel_weights.h): scales,
// rounding to nearest with ties to even, clamping, all-zero rows, and the padding to 16, on
// widths that are not multiples of 4 or 16; and the exact conversion of symmetric 8-bit
// per-channel GPTQ layers (refusing the others). The device side is qshard_cuda_w8a8_check's.
#include "kernels/layout/int8_channel_weights.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/layout/int8_symmetric.h"
#include "tests/quant/random_quantized_weight.h"
#include "worker/quant/gptq_pack.h"

namespace qshard::layout {
namespace {

TEST(Int8SymmetricTest, ScaleIsMaxAbsOver127AndOneForZero) {
  EXPECT_EQ(Int8ScaleOfMaxAbs(127.0f), 1.0f);
  EXPECT_EQ(Int8ScaleOfMaxAbs(2.54f), 2.54f / 127.0f);
  EXPECT_EQ(Int8ScaleOfMaxAbs(0.0f), 1.0f);
}

TEST(Int8SymmetricTest, RoundsHalfToEvenAndClamps) {
  // Scale 1: x / scale is x exactly, so the halves are true ties.
  EXPECT_EQ(Int8Code(0.5f, 1.0f, 127), 0);
  EXPECT_EQ(Int8Code(1.5f, 1.0f, 127), 2);
  EXPECT_EQ(Int8Code(2.5f, 1.0f, 127), 2);
  EXPECT_EQ(Int8Code(-2.5f, 1.0f, 127), -2);
  EXPECT_EQ(Int8Code(-3.5f, 1.0f, 127), -4);
  EXPECT_EQ(Int8Code(2.5000002f, 1.0f, 127), 3);
  EXPECT_EQ(Int8Code(300.0f, 1.0f, 127), 127);
  EXPECT_EQ(Int8Code(-300.0f, 1.0f, 127), -127);  // never −128
  EXPECT_EQ(Int8Code(9.0f, 1.0f, 7), 7);          // FlattenQuant's 4-bit grid
}

// RoundHalfEven replaces std::nearbyint on the host: the same value for every float of
// magnitude below 2^24 taken with a stride through the bit patterns (every one near the small
// integers and their halves), for the ties k + 0.5, the floats beside them, the limit of its
// shortcut (2^23) and the non-finite values.
TEST(Int8SymmetricTest, RoundHalfEvenIsNearbyint) {
  const auto same = [](float v) {
    const float want = std::nearbyint(v);
    const float got = RoundHalfEven(v);
    return (std::isnan(want) && std::isnan(got)) || want == got;
  };
  const auto from_bits = [](uint32_t bits) {
    float v;
    std::memcpy(&v, &bits, sizeof(v));
    return v;
  };
  int64_t checked = 0;
  for (uint32_t bits = 0; bits <= 0x4B800000u; bits += bits < 0x43800000u ? 61u : 4099u) {  // up to 2^24
    for (const float v : {from_bits(bits), -from_bits(bits)}) {
      ASSERT_TRUE(same(v)) << v;
      ++checked;
    }
  }
  for (int k = -300; k <= 300; ++k) {
    const float tie = static_cast<float>(k) + 0.5f;
    for (const float v : {tie, std::nextafter(tie, 1e9f), std::nextafter(tie, -1e9f)}) ASSERT_TRUE(same(v)) << v;
  }
  for (const float v : {4194303.5f, 4194304.5f, 6291456.5f, 8388607.5f, 8388608.0f, 8388609.0f, 1e30f,
                        std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    ASSERT_TRUE(same(v)) << v;
    ASSERT_TRUE(same(-v)) << -v;
  }
  EXPECT_GT(checked, 1000000);
}

TEST(Int8SymmetricTest, RowCodesAreWithinHalfAStepAndReachTheEnds) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> uniform(-4.0f, 4.0f);
  for (int n : {1, 3, 17, 1001}) {
    std::vector<float> x(n);
    for (float& v : x) v = uniform(rng);
    x[n / 2] = -8.5f;  // the row's largest magnitude, negative
    std::vector<int8_t> q(n);
    const float scale = QuantizeRowSymmetricInt8([&](int64_t i) { return x[i]; }, n, q.data());
    EXPECT_EQ(scale, 8.5f / 127.0f);
    EXPECT_EQ(q[n / 2], -127);
    for (int i = 0; i < n; ++i) {
      // x / scale is rounded once in float before rounding to an integer: half a step plus that.
      EXPECT_LE(std::fabs(x[i] - static_cast<double>(scale) * q[i]), scale * (0.5 + 1e-5)) << "n " << n << " i " << i;
    }
  }
  std::vector<int8_t> q(5, 99);
  const float zeros[5] = {};
  EXPECT_EQ(QuantizeRowSymmetricInt8([&](int64_t i) { return zeros[i]; }, 5, q.data()), 1.0f);
  EXPECT_EQ(q, std::vector<int8_t>(5, 0));
}

// The CPU int8 path quantizes each token by the same definition (the CUDA path's activations
// are held to this host rule bit for bit by qshard_cuda_w8a8_check).
TEST(Int8SymmetricTest, CpuActivationPathUsesTheRule) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(-3.0f, 3.0f);
  std::vector<float> x(77);
  for (float& v : x) v = uniform(rng);
  std::vector<int8_t> cpu(x.size()), rule(x.size());
  const float cpu_scale = kernels::QuantizeRowInt8(x.data(), static_cast<int64_t>(x.size()), cpu.data());
  const float rule_scale = QuantizeRowSymmetricInt8([&](int64_t i) { return x[i]; }, static_cast<int64_t>(x.size()), rule.data());
  EXPECT_EQ(cpu_scale, rule_scale);
  EXPECT_EQ(cpu, rule);
}

TEST(Int8ChannelWeightsTest, RowsQuantizedPerChannelWithZeroPadding) {
  for (const auto& [in, out] : {std::pair<int64_t, int64_t>{5, 3}, {17, 33}, {771, 19}}) {
    std::mt19937 rng(static_cast<uint32_t>(in * out));
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    std::vector<float> weight(in * out);
    for (int64_t o = 0; o < out; ++o) {
      const float magnitude = o == 1 ? 0.0f : 0.01f * static_cast<float>(o + 1);  // channel 1 all zero
      for (int64_t i = 0; i < in; ++i) weight[o * in + i] = magnitude * uniform(rng);
    }
    const int64_t in_p = Int8PaddedWidth(in), out_p = Int8PaddedWidth(out);
    ASSERT_EQ(in_p % 16, 0);
    ASSERT_EQ(out_p % 16, 0);
    std::vector<int8_t> codes(in_p * out_p, 99);  // poisoned: every byte must be written
    std::vector<float> scales(out_p, -1.0f);
    QuantizeWeightsPerChannelInt8(weight.data(), in, out, codes.data(), scales.data());
    for (int64_t o = 0; o < out_p; ++o) {
      if (o >= out) {
        EXPECT_EQ(scales[o], 1.0f) << "padding row " << o;
        for (int64_t i = 0; i < in_p; ++i) ASSERT_EQ(codes[o * in_p + i], 0) << "padding row " << o;
        continue;
      }
      std::vector<int8_t> expected(in);
      EXPECT_EQ(scales[o], kernels::QuantizeRowInt8(weight.data() + o * in, in, expected.data())) << "row " << o;
      for (int64_t i = 0; i < in; ++i) ASSERT_EQ(codes[o * in_p + i], expected[i]) << "row " << o << " input " << i;
      for (int64_t i = in; i < in_p; ++i) ASSERT_EQ(codes[o * in_p + i], 0) << "row " << o << " padding " << i;
    }
    EXPECT_EQ(scales[1], 1.0f);  // the all-zero channel
  }
}

// A random 8-bit layer (out × in, one group) with every zero point at `zero`, packed.
GptqLinearTensors PackedLayer(int64_t out, int64_t in, int32_t zero, uint32_t seed) {
  QuantizedWeight w = testing_support::RandomQuantizedWeight(8, out, in, in, /*act_order=*/false, seed);
  std::fill(w.zeros.begin(), w.zeros.end(), zero);
  auto packed = PackGptq(w);
  EXPECT_TRUE(packed.ok()) << packed.status();
  return *std::move(packed);
}

auto HalfBits = [](uint16_t bits) { return HalfToFloat(bits); };

TEST(Int8ChannelWeightsTest, SymmetricPerChannelGptqConvertsExactly) {
  for (const auto& [in, out] : {std::pair<int64_t, int64_t>{4, 4}, {36, 20}, {1028, 52}}) {
    const GptqLinearTensors packed = PackedLayer(out, in, 128, static_cast<uint32_t>(in + out));
    const GptqPackedView view = PackedView(packed);
    const int64_t in_p = Int8PaddedWidth(in), out_p = Int8PaddedWidth(out);
    std::vector<int8_t> codes(in_p * out_p, 99);
    std::vector<float> scales(out_p, -1.0f);
    ASSERT_EQ(Int8WeightsFromGptq(view, HalfBits, codes.data(), scales.data()), nullptr);
    bool saw_minus_128 = false;
    for (int64_t o = 0; o < out_p; ++o) {
      EXPECT_EQ(scales[o], o < out ? HalfToFloat(view.ScaleBits(0, o)) : 1.0f) << "row " << o;
      for (int64_t i = 0; i < in_p; ++i) {
        const int32_t expected = o < out && i < in ? static_cast<int32_t>(view.Code(i, o)) - view.Zero(0, o) : 0;
        ASSERT_EQ(codes[o * in_p + i], expected) << "row " << o << " input " << i;
        saw_minus_128 |= expected == -128;
      }
    }
    if (in * out > 10000) {
      EXPECT_TRUE(saw_minus_128) << "codes of 0 should reach −128";
    }
  }
}

TEST(Int8ChannelWeightsTest, GptqLayersWithoutThatFormAreRefused) {
  std::vector<int8_t> codes(16 * 64);
  std::vector<float> scales(64);
  // Asymmetric: zero 1, so codes near 255 give q − zero far above 127.
  const GptqLinearTensors asymmetric = PackedLayer(20, 36, 1, 7);
  EXPECT_NE(Int8WeightsFromGptq(PackedView(asymmetric), HalfBits, codes.data(), scales.data()), nullptr);
  // Groups of 12 inputs: three groups.
  QuantizedWeight grouped = testing_support::RandomQuantizedWeight(8, 20, 36, 12, false, 8);
  auto packed_groups = PackGptq(grouped);
  ASSERT_TRUE(packed_groups.ok()) << packed_groups.status();
  EXPECT_NE(Int8WeightsFromGptq(PackedView(*packed_groups), HalfBits, codes.data(), scales.data()), nullptr);
  // 4-bit codes.
  QuantizedWeight four = testing_support::RandomQuantizedWeight(4, 16, 32, 32, false, 9);
  auto packed_four = PackGptq(four);
  ASSERT_TRUE(packed_four.ok()) << packed_four.status();
  EXPECT_NE(Int8WeightsFromGptq(PackedView(*packed_four), HalfBits, codes.data(), scales.data()), nullptr);
}

}  // namespace
}  // namespace qshard::layout
