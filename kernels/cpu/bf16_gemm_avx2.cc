#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/bf16_gemm.h"
#include "kernels/cpu/bf16_gemm_isa.h"

namespace qshard::kernels {
namespace {

constexpr int64_t kRows = 4;  // rows of A per register tile (16 columns each: 8 accumulators)

// Zero of its sign where |x| is below float's smallest normal, else x: the instruction's flush.
[[gnu::always_inline]] inline __m256 Flush(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 tiny = _mm256_cmp_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
  return _mm256_blendv_ps(x, _mm256_and_ps(x, sign), tiny);
}

// C's rows [0, R), columns [j, j + 16) ∩ [0, n): each sum takes the definition's steps, odd
// product then even, one FMA (one rounding) each; kFlush flushes after every step.
template <int R, bool kFlush>
void Tile(const float* rows, int64_t stride, int64_t pairs, const uint32_t* words, int64_t padded_n, int64_t j,
          int64_t n, float* c) {
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const __m256i high_half = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t p = 0; p < pairs; ++p) {
    __m256 high[2], low[2];
    for (int v = 0; v < 2; ++v) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + p * padded_n + j + 8 * v));
      high[v] = _mm256_castsi256_ps(_mm256_and_si256(w, high_half));
      low[v] = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    }
    for (int r = 0; r < R; ++r) {
      const __m256 odd = _mm256_broadcast_ss(rows + r * stride + 2 * p + 1);
      const __m256 even = _mm256_broadcast_ss(rows + r * stride + 2 * p);
      for (int v = 0; v < 2; ++v) {
        acc[r][v] = _mm256_fmadd_ps(odd, high[v], acc[r][v]);
        if constexpr (kFlush) acc[r][v] = Flush(acc[r][v]);
        acc[r][v] = _mm256_fmadd_ps(even, low[v], acc[r][v]);
        if constexpr (kFlush) acc[r][v] = Flush(acc[r][v]);
      }
    }
  }
  for (int v = 0; v < 2; ++v) {
    const int64_t column = j + 8 * v, left = std::min<int64_t>(8, n - column);
    if (left <= 0) break;
    for (int r = 0; r < R; ++r) {
      if (left == 8) {
        _mm256_storeu_ps(c + r * n + column, acc[r][v]);
      } else {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, acc[r][v]);
        std::copy(lanes, lanes + left, c + r * n + column);
      }
    }
  }
}

template <int R, bool kFlush>
void Rows(const float* rows, int64_t stride, const Bf16Matrix& b, float* c) {
  for (int64_t j = 0; j < b.padded_n(); j += 16)
    Tile<R, kFlush>(rows, stride, b.pairs(), b.words(), b.padded_n(), j, b.n(), c);
}

template <bool kFlush>
void Block(int64_t rows_here, const float* rows, int64_t stride, const Bf16Matrix& b, float* c) {
  switch (rows_here) {
    case 4: Rows<4, kFlush>(rows, stride, b, c); break;
    case 3: Rows<3, kFlush>(rows, stride, b, c); break;
    case 2: Rows<2, kFlush>(rows, stride, b, c); break;
    default: Rows<1, kFlush>(rows, stride, b, c); break;
  }
}

}  // namespace

void MultiplyBf16Avx2(int64_t m, const float* a, int64_t lda, const Bf16Matrix& b, float* c) {
  const int64_t k = b.k(), stride = 2 * b.pairs();
  thread_local std::vector<float> rows;
  if (static_cast<int64_t>(rows.size()) < kRows * stride) rows.resize(kRows * stride);
  for (int64_t i = 0; i < m; i += kRows) {
    const int64_t rows_here = std::min(kRows, m - i);
    for (int64_t r = 0; r < rows_here; ++r) {
      float* row = rows.data() + r * stride;
      for (int64_t x = 0; x < k; ++x) row[x] = RoundedToBf16(a[(i + r) * lda + x]);
      if (k % 2 == 1) row[k] = 0.0f;
    }
    // Flushing costs a third of the tile's instructions; it can change a bit only where some
    // product's quantum is below float's normal range (MinExponentField).
    if (MinExponentField(rows.data(), rows_here * stride) + b.min_exponent_field() >= 142) {
      Block<false>(rows_here, rows.data(), stride, b, c + i * b.n());
    } else {
      Block<true>(rows_here, rows.data(), stride, b, c + i * b.n());
    }
  }
}

}  // namespace qshard::kernels
