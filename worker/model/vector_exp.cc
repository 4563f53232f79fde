#include "worker/model/vector_exp.h"

#include <algorithm>
#include <bit>

#include "core/vector_clones.h"

namespace qshard {

// Cloned per vector width and built with -ffp-contract=off (worker/CMakeLists.txt): every clone
// computes the same operations element by element, so all round alike.
QSHARD_VECTOR_CLONES void ExpInPlace(float* x, int64_t n) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // ln 2 split so that k·kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  const int32_t magic_bits = std::bit_cast<int32_t>(kRoundMagic);
  // Clamping in its own pass: in the same loop GCC threads the constant clamp values through
  // the polynomial, and the resulting branches block vectorization.
  for (int64_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i], -87.3f), 88.3f);
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float shifted = v * kLog2e + kRoundMagic;
    const float k = shifted - kRoundMagic;
    const int32_t exponent = std::bit_cast<int32_t>(shifted) - magic_bits;
    const float r = (v - k * kLn2Hi) - k * kLn2Lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float exp_r = p * r * r + r + 1.0f;
    x[i] = exp_r * std::bit_cast<float>((exponent + 127) << 23);
  }
}

}  // namespace qshard
