// fp16 / bf16 conversions: known encodings (subnormals, ties, overflow, inf, nan), then every
// half value and random floats against a round-to-nearest-even reference computed in double.
#include "core/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace qshard {
namespace {

float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(DTypeTest, NamesAndSizes) {
  EXPECT_EQ(ParseDType("BF16"), DType::kBF16);
  EXPECT_EQ(ParseDType("I32"), DType::kI32);
  EXPECT_FALSE(ParseDType("F8_E4M3").has_value());
  EXPECT_FALSE(ParseDType("f32").has_value());
  EXPECT_EQ(DTypeName(DType::kF16), "F16");
  EXPECT_EQ(DTypeSize(DType::kF64), 8);
  EXPECT_EQ(DTypeSize(DType::kBool), 1);
  EXPECT_TRUE(IsFloating(DType::kBF16));
  EXPECT_FALSE(IsFloating(DType::kI32));
}

TEST(DTypeTest, HalfKnownEncodings) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);                  // largest half
  EXPECT_EQ(FloatToHalf(65519.996f), 0x7BFF);                // just below the overflow tie
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);                  // tie with 65536 rounds to even: inf
  EXPECT_EQ(FloatToHalf(1e6f), 0x7C00);
  EXPECT_EQ(FloatToHalf(inf), 0x7C00);
  EXPECT_EQ(FloatToHalf(-inf), 0xFC00);
  const uint16_t nan = FloatToHalf(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  // A NaN whose payload sits only in the low float bits must stay NaN, not become inf.
  EXPECT_NE(FloatToHalf(FromBits(0x7F800001)) & 0x03FF, 0);
  // Ties round to even in the normal range, including a carry into the exponent.
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(FloatToHalf(2.0f - std::ldexp(1.0f, -11)), 0x4000);
  // Subnormals: 2^-24 is the smallest; halfway cases round to even.
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25) * 1.0001f), 0x0001);
  EXPECT_EQ(FloatToHalf(3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(FloatToHalf(-1023 * std::ldexp(1.0f, -24)), 0x83FF);  // largest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -14)), 0x0400);          // smallest normal
  EXPECT_EQ(FloatToHalf(1e-8f), 0x0000);
  EXPECT_EQ(FloatToHalf(-1e-8f), 0x8000);

  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x83FF), -1023 * std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(HalfToFloat(0xFC00), -inf);
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
}

TEST(DTypeTest, EveryHalfConvertsToItsValue) {
  // All 65536 encodings through the tensor conversion (the vectorized loop) and one at a time,
  // against sign · mantissa · 2^exponent built with ldexp; NaNs keep their payload bits.
  std::vector<uint16_t> halves(65536);
  for (uint32_t h = 0; h < 65536; ++h) halves[h] = static_cast<uint16_t>(h);
  std::vector<float> converted(halves.size());
  ConvertToFloat(DType::kF16, halves.data(), static_cast<int64_t>(halves.size()), converted.data());
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    float expected;
    if (exponent == 31) {
      const uint32_t bits = ((h & 0x8000) << 16) | 0x7f800000 | (mantissa << 13);
      std::memcpy(&expected, &bits, 4);
    } else {
      expected = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -24)
                               : std::ldexp(static_cast<float>(1024 + mantissa), static_cast<int>(exponent) - 25);
      if (h & 0x8000) expected = -expected;
    }
    uint32_t got_bits, one_bits, expected_bits;
    const float one = HalfToFloat(static_cast<uint16_t>(h));
    std::memcpy(&got_bits, &converted[h], 4);
    std::memcpy(&one_bits, &one, 4);
    std::memcpy(&expected_bits, &expected, 4);
    ASSERT_EQ(got_bits, expected_bits) << std::hex << h;
    ASSERT_EQ(one_bits, expected_bits) << std::hex << h;
  }
}

TEST(DTypeTest, BFloat16KnownEncodings) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBFloat16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBFloat16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);      // tie to even
  EXPECT_EQ(FloatToBFloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);  // tie to even (up)
  EXPECT_EQ(FloatToBFloat16(std::numeric_limits<float>::max()), 0x7F80);  // rounds to inf
  EXPECT_EQ(FloatToBFloat16(-inf), 0xFF80);
  EXPECT_EQ(FloatToBFloat16(FromBits(0x00010000)), 0x0001);  // float subnormal stays subnormal
  EXPECT_EQ(FloatToBFloat16(FromBits(0x00018000)), 0x0002);  // subnormal tie to even
  const uint16_t nan = FloatToBFloat16(FromBits(0x7F800001));
  EXPECT_EQ(nan & 0x7F80, 0x7F80);
  EXPECT_NE(nan & 0x007F, 0);
  EXPECT_EQ(BFloat16ToFloat(0x4049), 3.140625f);
  EXPECT_EQ(BFloat16ToFloat(0xFF80), -inf);
}

// The representable value nearest to `x` among `candidates` (sorted), ties to the even code.
template <typename Decode>
uint16_t NearestEven(double x, uint16_t below, uint16_t above, Decode decode) {
  const double d_below = std::abs(x - decode(below));
  const double d_above = std::abs(decode(above) - x);
  if (d_below != d_above) return d_below < d_above ? below : above;
  return (below & 1) == 0 ? below : above;
}

TEST(DTypeTest, EveryHalfRoundTripsAndMidpointsRoundToEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t code = static_cast<uint16_t>(h);
    const float f = HalfToFloat(code);
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), code) << std::hex << h;
    // Midpoint to the next magnitude (exactly representable in float): ties go to the even code.
    const uint16_t next = code + 1;
    if ((code & 0x7FFF) >= 0x7C00) continue;  // inf has no successor
    const double mid = (static_cast<double>(f) + HalfToFloat(next)) / 2;
    ASSERT_EQ(static_cast<double>(static_cast<float>(mid)), mid);
    ASSERT_EQ(FloatToHalf(static_cast<float>(mid)), (code & 1) == 0 ? code : next) << std::hex << h;
  }
}

// Reference rounding of |x| to a 16-bit format whose non-negative codes [0, inf_code] decode to
// increasing magnitudes: bracket by binary search, then pick the nearer code, ties to even.
// Everything at or beyond decode(inf_code) overflows.
template <typename Decode>
uint16_t ReferenceRound(double ax, uint16_t inf_code, Decode decode) {
  uint32_t lo = 0, hi = inf_code;  // decode(lo) <= ax < decode(hi) unless ax >= decode(inf_code)
  if (ax >= decode(inf_code)) return inf_code;
  while (hi - lo > 1) {
    const uint32_t mid = (lo + hi) / 2;
    (decode(static_cast<uint16_t>(mid)) <= ax ? lo : hi) = mid;
  }
  return NearestEven(ax, static_cast<uint16_t>(lo), static_cast<uint16_t>(hi), decode);
}

TEST(DTypeTest, RandomFloatsRoundToNearestEvenHalfAndBFloat16) {
  std::mt19937 rng(7);
  // Exponents from below the half subnormals to beyond its overflow, and for bf16 the full
  // float range including float subnormals (exponent 0).
  std::uniform_int_distribution<uint32_t> mantissa(0, (1u << 23) - 1), half_exponent(90, 160),
      any_exponent(0, 254), sign(0, 1);
  // IEEE rounds as if the exponent were unbounded, so the inf code stands for the next power
  // of two above the largest finite value: ties with it round to inf.
  const auto half = [](uint16_t c) { return c == 0x7C00 ? 65536.0 : static_cast<double>(HalfToFloat(c)); };
  const auto bf16 = [](uint16_t c) { return c == 0x7F80 ? std::ldexp(1.0, 128) : static_cast<double>(BFloat16ToFloat(c)); };
  for (int i = 0; i < 100000; ++i) {
    const uint32_t s = sign(rng);
    const float x = FromBits(s << 31 | half_exponent(rng) << 23 | mantissa(rng));
    ASSERT_EQ(FloatToHalf(x), (s << 15) | ReferenceRound(std::abs(static_cast<double>(x)), 0x7C00, half))
        << x;
    const float y = FromBits(s << 31 | any_exponent(rng) << 23 | mantissa(rng));
    ASSERT_EQ(FloatToBFloat16(y), (s << 15) | ReferenceRound(std::abs(static_cast<double>(y)), 0x7F80, bf16))
        << y;
  }
}

TEST(DTypeTest, ConvertFromFloatInvertsConvertToFloat) {
  const float values[] = {0.0f, -1.5f, 3.140625f, 65504.0f, std::ldexp(1.0f, -24), -7.0f, 1e-3f};
  for (DType dtype : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16}) {
    std::vector<uint8_t> encoded(sizeof(values) / 4 * DTypeSize(dtype));
    ConvertFromFloat(dtype, values, 7, encoded.data());
    float decoded[7];
    ConvertToFloat(dtype, encoded.data(), 7, decoded);
    for (int i = 0; i < 7; ++i) {
      float expected = values[i];
      if (dtype == DType::kF16) expected = HalfToFloat(FloatToHalf(values[i]));
      if (dtype == DType::kBF16) expected = BFloat16ToFloat(FloatToBFloat16(values[i]));
      EXPECT_EQ(Bits(decoded[i]), Bits(expected)) << DTypeName(dtype) << " " << values[i];
    }
  }
}

TEST(DTypeTest, ConvertToFloatReadsIntegersByValue) {
  const int16_t i16[] = {-32768, -1, 0, 32767};
  const int8_t i8[] = {-128, -1, 0, 127};
  const uint8_t u8[] = {0, 1, 200, 255};
  const int64_t i64[] = {-(int64_t{1} << 40), -1, 0, int64_t{1} << 40};
  float out[4];
  ConvertToFloat(DType::kI16, i16, 4, out);
  EXPECT_EQ(std::vector<float>(out, out + 4), (std::vector<float>{-32768, -1, 0, 32767}));
  ConvertToFloat(DType::kI8, i8, 4, out);
  EXPECT_EQ(std::vector<float>(out, out + 4), (std::vector<float>{-128, -1, 0, 127}));
  ConvertToFloat(DType::kU8, u8, 4, out);
  EXPECT_EQ(std::vector<float>(out, out + 4), (std::vector<float>{0, 1, 200, 255}));
  ConvertToFloat(DType::kI64, i64, 4, out);
  EXPECT_EQ(std::vector<float>(out, out + 4), (std::vector<float>{-1099511627776.0f, -1, 0, 1099511627776.0f}));
}

}  // namespace
}  // namespace qshard
