#include "kernels/cpu/bf16_gemm.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "kernels/cpu/bf16_gemm_isa.h"
#include "kernels/cpu/cpu_features.h"

namespace qshard::kernels {
namespace {

[[gnu::always_inline]] inline float FlushSubnormal(float x) {
  return std::fabs(x) < std::numeric_limits<float>::min() ? std::copysign(0.0f, x) : x;
}

// A value's exponent field, 255 for zeros (subnormals are flushed), infinities and NaN: what
// MinExponentField takes the smallest of.
int NormalExponentField(float value) {
  const int field = static_cast<int>((std::bit_cast<uint32_t>(value) >> 23) & 0xffu);
  return field == 0 ? 255 : field;
}

float FromBf16(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

// A's row i rounded to bfloat16 (as floats), padded with a zero to an even length.
void RoundRow(const float* a, int64_t k, float* row) {
  for (int64_t r = 0; r < k; ++r) row[r] = RoundedToBf16(a[r]);
  if (k % 2 == 1) row[k] = 0.0f;
}

}  // namespace

int MinExponentField(const float* bf16_values, int64_t count) {
  int smallest = 255;
  for (int64_t i = 0; i < count; ++i) smallest = std::min(smallest, NormalExponentField(bf16_values[i]));
  return smallest;
}

Bf16Matrix::Bf16Matrix(const float* b, int64_t k, int64_t n)
    : k_(k), n_(n), padded_n_((n + 15) / 16 * 16), words_(pairs() * padded_n_, 0) {
  for (int64_t r = 0; r < k; ++r)
    for (int64_t j = 0; j < n; ++j) {
      const float value = RoundedToBf16(b[r * n + j]);
      min_exponent_field_ = std::min(min_exponent_field_, NormalExponentField(value));
      words_[r / 2 * padded_n_ + j] |= static_cast<uint32_t>(RoundToBf16(value)) << (r % 2 * 16);
    }
}

void MultiplyBf16Reference(int64_t m, const float* a, int64_t lda, const Bf16Matrix& b, float* c) {
  const int64_t k = b.k(), n = b.n(), pairs = b.pairs();
  std::vector<float> row(2 * pairs);
  for (int64_t i = 0; i < m; ++i) {
    RoundRow(a + i * lda, k, row.data());
    for (int64_t j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int64_t p = 0; p < pairs; ++p) {
        const uint32_t word = b.words()[p * b.padded_n() + j];
        // fmaf: the exact product added with one rounding, as the instruction does.
        sum = FlushSubnormal(std::fmaf(row[2 * p + 1], FromBf16(static_cast<uint16_t>(word >> 16)), sum));
        sum = FlushSubnormal(std::fmaf(row[2 * p], FromBf16(static_cast<uint16_t>(word)), sum));
      }
      c[i * n + j] = sum;
    }
  }
}

void MultiplyBf16Emulated(int64_t m, const float* a, int64_t lda, const Bf16Matrix& b, float* c) {
  static const bool fma = GetCpuFeatures().HasAvx2Fma();
  if (fma) {
    MultiplyBf16Avx2(m, a, lda, b, c);
  } else {
    MultiplyBf16Reference(m, a, lda, b, c);
  }
}

bool Bf16Accelerated() { return GetCpuFeatures().HasAvx512Bf16(); }

void MultiplyBf16(int64_t m, const float* a, int64_t lda, const Bf16Matrix& b, float* c) {
  static const bool accelerated = Bf16Accelerated();
  if (accelerated) {
    MultiplyBf16Avx512(m, a, lda, b, c);
  } else {
    MultiplyBf16Emulated(m, a, lda, b, c);
  }
}

}  // namespace qshard::kernels
