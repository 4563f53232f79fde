// vector_math.h's exp and log against float64 libm, in ulps of the float result, over their
// whole input ranges (random inputs across every binade, the range ends, exact powers of two).
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "worker/model/vector_math.h"

namespace qshard {
namespace {

// |got − want| in units of the float spacing at want.
double Ulps(float got, double want) {
  const float rounded = static_cast<float>(want);
  const double ulp = std::nextafter(std::fabs(rounded), std::numeric_limits<float>::infinity()) - std::fabs(rounded);
  return std::fabs(static_cast<double>(got) - want) / ulp;
}

TEST(VectorMathTest, ExpWithinOneUlpOverItsRange) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-87.3f, 88.3f);
  std::vector<float> inputs = {-87.3f, 88.3f, 0.0f, -0.0f, 1e-7f, -1e-7f, 0.5f, -0.5f, 1.0f, std::log(2.0f)};
  for (int i = 0; i < 20000; ++i) inputs.push_back(uniform(rng));
  double worst = 0.0;
  for (const float x : inputs) worst = std::max(worst, Ulps(ExpOfClamped(x), std::exp(static_cast<double>(x))));
  EXPECT_LE(worst, 1.0);
}

TEST(VectorMathTest, LogWithinTwoUlpOverNormalFloats) {
  std::mt19937 rng(12);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  std::uniform_int_distribution<int> exponent(-125, 127);
  std::vector<float> inputs = {std::numeric_limits<float>::min(), std::numeric_limits<float>::max(), 1.0f,
                               0.70710677f, 0.70710683f, 1.41421354f, 0.5f, 2.0f, 7.8886091e-31f};
  for (int e = -126; e <= 127; e += 7) inputs.push_back(std::ldexp(1.0f, e));
  for (int i = 0; i < 20000; ++i) inputs.push_back(std::ldexp(mantissa(rng), exponent(rng)));
  // Near 1 the result is tiny and its ulp too: compare there against the absolute error of a
  // float argument (half an ulp of 1, relative), as logf's own accuracy is stated.
  double worst = 0.0;
  for (const float x : inputs) {
    const double want = std::log(static_cast<double>(x));
    if (std::fabs(want) < 1e-3) {
      EXPECT_NEAR(LogOfNormal(x), want, 1e-9) << x;
      continue;
    }
    worst = std::max(worst, Ulps(LogOfNormal(x), want));
  }
  EXPECT_LE(worst, 2.0);
  EXPECT_EQ(LogOfNormal(1.0f), 0.0f);
}

// A power as AdaRound's regularizer forms it, exp(b·ln t), against pow in float64.
TEST(VectorMathTest, PowerThroughExpOfLogKeepsRelativeAccuracy) {
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> base(1e-4f, 1.0f), power(1.0f, 19.0f);
  for (int i = 0; i < 5000; ++i) {
    const float t = base(rng), b = power(rng);
    const double want = std::pow(static_cast<double>(t), static_cast<double>(b));
    if (want < 1e-30) continue;
    const float got = ExpOfClamped(std::max(b * LogOfNormal(t), -87.3f));
    EXPECT_NEAR(got / want, 1.0, 2e-5) << t << "^" << b;
  }
}

}  // namespace
}  // namespace qshard
