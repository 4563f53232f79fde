// The bfloat16 products: the plain definition against a float64 reference within bfloat16's
// rounding, and the emulated and the vdpbf16ps paths bit for bit against it (the latter skipped
// where the CPU lacks AVX-512 BF16), on awkward sizes, with subnormal, tie and special inputs.
#include "kernels/cpu/bf16_gemm.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace qshard::kernels {
namespace {

struct Shape {
  int64_t m, k, n;
};
constexpr Shape kShapes[] = {{1, 1, 1}, {3, 2, 15}, {5, 7, 17}, {4, 128, 128}, {33, 129, 100}, {7, 385, 384}, {32, 384, 50}};

std::vector<float> Random(int64_t count, std::mt19937& rng, bool specials) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-30, 30), pick(0, 63);
  std::vector<float> out(count);
  for (float& x : out) {
    x = std::ldexp(normal(rng), exponent(rng));
    if (!specials) continue;
    switch (pick(rng)) {
      case 0: x = std::numeric_limits<float>::denorm_min() * 77.0f; break;  // a subnormal: flushed
      case 1: x = -std::numeric_limits<float>::min() * 0.5f; break;
      case 2: x = std::bit_cast<float>(std::bit_cast<uint32_t>(1.5f) | 0x8000u); break;  // a tie: to even
      case 3: x = std::bit_cast<float>(std::bit_cast<uint32_t>(1.0f) | 0x8000u); break;  // a tie: down to even
      case 4: x = -0.0f; break;
      default: break;
    }
  }
  return out;
}

TEST(Bf16GemmTest, RoundsToNearestEvenAndFlushesSubnormals) {
  EXPECT_EQ(RoundToBf16(1.0f), 0x3f80);
  EXPECT_EQ(RoundToBf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie, even below
  EXPECT_EQ(RoundToBf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie, even above
  EXPECT_EQ(RoundToBf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_EQ(RoundToBf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(RoundToBf16(-std::numeric_limits<float>::denorm_min()), 0x8000);
  EXPECT_EQ(RoundToBf16(std::numeric_limits<float>::max()), 0x7f80);  // overflows to infinity
  EXPECT_EQ(RoundToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
  const uint16_t nan = RoundToBf16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7f80, 0x7f80);
  EXPECT_NE(nan & 0x7f, 0);
}

TEST(Bf16GemmTest, ReferenceIsTheProductWithinBf16Rounding) {
  std::mt19937 rng(7);
  for (const Shape& s : kShapes) {
    const std::vector<float> a = Random(s.m * s.k, rng, false), b = Random(s.k * s.n, rng, false);
    const Bf16Matrix packed(b.data(), s.k, s.n);
    std::vector<float> c(s.m * s.n, std::numeric_limits<float>::quiet_NaN());
    MultiplyBf16Reference(s.m, a.data(), s.k, packed, c.data());
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        double exact = 0.0, magnitude = 0.0;
        for (int64_t r = 0; r < s.k; ++r) {
          exact += static_cast<double>(a[i * s.k + r]) * b[r * s.n + j];
          magnitude += std::fabs(static_cast<double>(a[i * s.k + r]) * b[r * s.n + j]);
        }
        // Each input within 2⁻⁸ relative (8 significant bits), so each product within about
        // 2⁻⁷; float32 sums add at most k·2⁻²⁴ of the magnitude.
        const double bound = magnitude * (std::ldexp(1.0, -7) * 1.01 + s.k * std::ldexp(1.0, -24));
        ASSERT_NEAR(c[i * s.n + j], exact, bound) << s.m << "x" << s.k << "x" << s.n << " at " << i << "," << j;
      }
  }
}

using Multiply = void (*)(int64_t, const float*, int64_t, const Bf16Matrix&, float*);

void ExpectReferenceBits(Multiply multiply) {
  std::mt19937 rng(11);
  for (const Shape& s : kShapes) {
    for (const int64_t lda : {s.k, s.k + 3}) {
      const std::vector<float> a = Random(s.m * lda, rng, true), b = Random(s.k * s.n, rng, true);
      const Bf16Matrix packed(b.data(), s.k, s.n);
      std::vector<float> fast(s.m * s.n, std::numeric_limits<float>::quiet_NaN()), reference = fast;
      multiply(s.m, a.data(), lda, packed, fast.data());
      MultiplyBf16Reference(s.m, a.data(), lda, packed, reference.data());
      for (size_t e = 0; e < fast.size(); ++e)
        ASSERT_EQ(std::bit_cast<uint32_t>(fast[e]), std::bit_cast<uint32_t>(reference[e]))
            << s.m << "x" << s.k << "x" << s.n << " lda " << lda << " element " << e << ": " << fast[e] << " vs "
            << reference[e];
    }
  }
}

// Products and sums that pass through the subnormal range: flushed alike.
void ExpectReferenceFlushing(Multiply multiply) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-75, -50);
  const Shape s{5, 66, 40};
  std::vector<float> a(s.m * s.k), b(s.k * s.n);
  for (float& x : a) x = std::ldexp(normal(rng), exponent(rng));
  for (float& x : b) x = std::ldexp(normal(rng), exponent(rng));
  const Bf16Matrix packed(b.data(), s.k, s.n);
  std::vector<float> fast(s.m * s.n), reference(s.m * s.n);
  multiply(s.m, a.data(), s.k, packed, fast.data());
  MultiplyBf16Reference(s.m, a.data(), s.k, packed, reference.data());
  int nonzero = 0;
  for (size_t e = 0; e < fast.size(); ++e) {
    ASSERT_EQ(std::bit_cast<uint32_t>(fast[e]), std::bit_cast<uint32_t>(reference[e])) << "element " << e;
    nonzero += fast[e] != 0.0f;
  }
  EXPECT_GT(nonzero, 0) << "the inputs should leave some sums in the normal range";
}

TEST(Bf16GemmTest, EmulationGivesTheReferenceBits) {
  ExpectReferenceBits(MultiplyBf16Emulated);
  ExpectReferenceFlushing(MultiplyBf16Emulated);
}

TEST(Bf16GemmTest, Avx512Bf16GivesTheReferenceBits) {
  if (!Bf16Accelerated()) GTEST_SKIP() << "this CPU has no AVX-512 BF16: the vdpbf16ps path is not tested here";
  ExpectReferenceBits(MultiplyBf16);
  ExpectReferenceFlushing(MultiplyBf16);
}

}  // namespace
}  // namespace qshard::kernels
