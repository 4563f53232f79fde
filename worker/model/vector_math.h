// exp and log of one float, written branch-free so that a loop calling them vectorizes (libm's
// expf/logf/powf are a scalar call per element). Same operations at every vector width: a file
// using them is built with -ffp-contract=off so that no clone fuses a multiply-add.
#pragma once

#include <bit>
#include <cstdint>

namespace qshard {

// exp(v) for v in [-87.3, 88.3] (callers clamp; float's normal range). Cephes' expf scheme:
// v = k·ln2 + r, a degree-6 polynomial for exp(r), 2^k from the exponent bits; within 1 ulp of
// expf.
inline float ExpOfClamped(float v) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // ln 2 split so that k·kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  const float shifted = v * kLog2e + kRoundMagic;
  const float k = shifted - kRoundMagic;
  const int32_t exponent = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRoundMagic);
  const float r = (v - k * kLn2Hi) - k * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float exp_r = p * r * r + r + 1.0f;
  return exp_r * std::bit_cast<float>((exponent + 127) << 23);
}

// ln(x) for a positive normal x (no zero, subnormal, infinity or NaN: callers clamp). Cephes'
// logf scheme: x = m·2^e with m in [√½, √2), a degree-8 polynomial for ln(1 + (m − 1)), and
// e·ln2 split in two; within 2 ulp of logf.
inline float LogOfNormal(float x) {
  constexpr float kSqrtHalf = 0.707106781186547524f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  const int32_t bits = std::bit_cast<int32_t>(x);
  // m in [0.5, 1) and x = m·2^e.
  const float m = std::bit_cast<float>((bits & 0x007fffff) | 0x3f000000);
  const int32_t e = ((bits >> 23) & 0xff) - 126;
  const bool low = m < kSqrtHalf;
  const float f = low ? (m + m) - 1.0f : m - 1.0f;
  const float exponent = static_cast<float>(low ? e - 1 : e);
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float y = p * f * z;
  y = y + exponent * kLn2Lo;
  y = y - 0.5f * z;
  return (f + y) + exponent * kLn2Hi;
}

}  // namespace qshard
