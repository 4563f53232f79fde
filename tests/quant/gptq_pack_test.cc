#include "worker/quant/gptq_pack.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/quant/random_quantized_weight.h"
#include "worker/quant/quant_grid.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;

QuantizedWeight RandomWeight(int bits, int64_t rows, int64_t cols, int64_t group_size, uint32_t seed) {
  return testing_support::RandomQuantizedWeight(bits, rows, cols, group_size, /*act_order=*/true, seed);
}

TEST(GptqPackTest, RoundTripsEveryBitWidthOnAwkwardLegalShapes) {
  struct Shape {
    int bits;
    int64_t out, in, group_size;
  };
  // Smallest legal multiples (32 / gcd(32, bits)) times odd factors; groups that do not divide in.
  const Shape shapes[] = {{2, 48, 80, 24}, {3, 96, 160, 50}, {3, 32, 32, 32}, {4, 24, 56, 17},
                          {8, 12, 20, 7},  {8, 4, 4, 4},     {4, 8, 8, 1000}};
  uint32_t seed = 1;
  for (const Shape& s : shapes) {
    const QuantizedWeight w = RandomWeight(s.bits, s.out, s.in, s.group_size, seed++);
    auto packed = PackGptq(w);
    ASSERT_TRUE(packed.ok()) << packed.status();
    EXPECT_EQ(packed->qweight.size(), static_cast<size_t>(s.in * s.bits / 32 * s.out));
    EXPECT_EQ(packed->qzeros.size(), static_cast<size_t>(w.groups() * (s.out * s.bits / 32)));
    auto unpacked = UnpackGptq(*packed);
    ASSERT_TRUE(unpacked.ok()) << unpacked.status();
    EXPECT_EQ(unpacked->codes, w.codes) << s.bits;
    EXPECT_EQ(unpacked->zeros, w.zeros) << s.bits;
    EXPECT_EQ(unpacked->g_idx, w.g_idx) << s.bits;
    EXPECT_EQ(unpacked->scales.values(), w.scales.values()) << s.bits;
    EXPECT_EQ(unpacked->Dequantized().values(), w.Dequantized().values()) << s.bits;
  }
}

// qweight column `o` of a [in, out] code matrix that holds `values` for that column.
QuantizedWeight SingleColumnWeight(int bits, const std::vector<int32_t>& values, int64_t out) {
  QuantizedWeight w;
  w.bits = bits;
  w.rows = out;
  w.cols = static_cast<int64_t>(values.size());
  w.codes.assign(w.rows * w.cols, 0);
  std::copy(values.begin(), values.end(), w.codes.begin());  // output row 0
  w.scales = Tensor({1, out}, std::vector<float>(out, 1.0f));
  w.zeros.assign(out, 1);
  w.g_idx.assign(w.cols, 0);
  return w;
}

TEST(GptqPackTest, FourBitValuesFillWordsFromTheLowNibble) {
  std::vector<int32_t> values = {0, 1, 2, 3, 4, 5, 6, 7, 15, 14, 13, 12, 11, 10, 9, 8};
  auto packed = PackGptq(SingleColumnWeight(4, values, 8));
  ASSERT_TRUE(packed.ok()) << packed.status();
  // qweight is [in / 8, out]: output 0 is column 0 of each packed row.
  EXPECT_EQ(static_cast<uint32_t>(packed->qweight[0 * 8]), 0x76543210u);
  EXPECT_EQ(static_cast<uint32_t>(packed->qweight[1 * 8]), 0x89abcdefu);
  EXPECT_EQ(packed->qweight[1], 0);  // output 1 is all zero codes
}

TEST(GptqPackTest, ThreeBitValuesStraddleWordBoundariesLikeAutoGptq) {
  // 32 values → 3 words; value k occupies bits [3k, 3k + 3) of the 96-bit little-endian stream.
  std::vector<int32_t> values(64);
  std::mt19937 rng(9);
  for (int32_t& v : values) v = static_cast<int32_t>(rng() % 8);
  auto packed = PackGptq(SingleColumnWeight(3, values, 32));
  ASSERT_TRUE(packed.ok()) << packed.status();
  for (int unit = 0; unit < 2; ++unit) {
    unsigned __int128 stream = 0;
    for (int k = 0; k < 32; ++k) stream |= static_cast<unsigned __int128>(values[unit * 32 + k]) << (3 * k);
    for (int word = 0; word < 3; ++word) {
      EXPECT_EQ(static_cast<uint32_t>(packed->qweight[(unit * 3 + word) * 32]),
                static_cast<uint32_t>(stream >> (32 * word)))
          << "unit " << unit << " word " << word;
    }
  }
  // AutoGPTQ's explicit rule: value 10 puts its low 2 bits at 30..31 of word 0, its top bit at bit 0 of word 1.
  const uint32_t w0 = static_cast<uint32_t>(packed->qweight[0]), w1 = static_cast<uint32_t>(packed->qweight[32]);
  EXPECT_EQ(static_cast<int32_t>((w0 >> 30) | ((w1 & 1u) << 2)), values[10]);
}

TEST(GptqPackTest, ZerosAreStoredMinusOneAlongTheOutputDimension) {
  QuantizedWeight w = SingleColumnWeight(4, std::vector<int32_t>(8, 0), 16);
  for (int o = 0; o < 16; ++o) w.zeros[o] = o + 1;  // stored as 0..15
  auto packed = PackGptq(w);
  ASSERT_TRUE(packed.ok()) << packed.status();
  ASSERT_EQ(packed->qzeros.size(), 2u);  // [groups = 1, 16 * 4 / 32]
  EXPECT_EQ(static_cast<uint32_t>(packed->qzeros[0]), 0x76543210u);
  EXPECT_EQ(static_cast<uint32_t>(packed->qzeros[1]), 0xfedcba98u);
  EXPECT_EQ(packed->scales, std::vector<uint16_t>(16, 0x3c00));  // fp16 1.0
}

TEST(GptqPackTest, RejectsShapesTheLayoutCannotHold) {
  auto three_bit_in = CheckGptqLayout(3, 48, 64);
  EXPECT_THAT(std::string(three_bit_in.message()), HasSubstr("qweight: in_features = 48"));
  EXPECT_THAT(std::string(three_bit_in.message()), HasSubstr("multiple of 32"));
  auto four_bit_out = CheckGptqLayout(4, 64, 12);
  EXPECT_THAT(std::string(four_bit_out.message()), HasSubstr("qzeros: out_features = 12"));
  EXPECT_THAT(std::string(CheckGptqLayout(5, 64, 64).message()), HasSubstr("2, 3, 4 or 8 bits"));
  EXPECT_TRUE(CheckGptqLayout(2, 16, 16).ok());
  EXPECT_TRUE(CheckGptqLayout(8, 4, 4).ok());

  QuantizedWeight odd = RandomWeight(4, 8, 12, 4, 3);  // 12 · 4 bits is not a whole word
  EXPECT_THAT(std::string(PackGptq(odd).status().message()), HasSubstr("in_features = 12"));
}

TEST(GptqPackTest, RejectsValuesTheLayoutCannotStore) {
  QuantizedWeight w = RandomWeight(4, 8, 16, 8, 4);
  w.zeros[3] = 0;
  EXPECT_THAT(std::string(PackGptq(w).status().message()), HasSubstr("qzeros[0,3]: zero point 0"));

  w = RandomWeight(4, 8, 16, 8, 4);
  w.scales[9] = 0.1f;  // not an fp16 value
  EXPECT_THAT(std::string(PackGptq(w).status().message()), HasSubstr("scales[1,1]"));

  w = RandomWeight(4, 8, 16, 8, 4);
  w.column_scale.assign(16, 1.5f);
  EXPECT_THAT(std::string(PackGptq(w).status().message()), HasSubstr("column_scale"));

  w = RandomWeight(4, 8, 16, 8, 4);
  w.codes[5] = 16;
  EXPECT_THAT(std::string(PackGptq(w).status().message()), HasSubstr("codes[0,5] = 16"));
}

TEST(GptqPackTest, UnpackRejectsInconsistentTensors) {
  auto packed = PackGptq(RandomWeight(4, 8, 16, 8, 5));
  ASSERT_TRUE(packed.ok());
  GptqLinearTensors truncated = *packed;
  truncated.qweight.pop_back();
  EXPECT_THAT(std::string(UnpackGptq(truncated).status().message()), HasSubstr("qweight"));
  GptqLinearTensors bad_group = *packed;
  bad_group.g_idx[2] = 7;
  EXPECT_THAT(std::string(UnpackGptq(bad_group).status().message()), HasSubstr("g_idx[2] = 7"));
  GptqLinearTensors bad_scale = *packed;
  bad_scale.scales[0] = 0x7c00;  // +inf
  EXPECT_THAT(std::string(UnpackGptq(bad_scale).status().message()), HasSubstr("scales[0,0]"));
}

}  // namespace
}  // namespace qshard
