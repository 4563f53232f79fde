#include "kernels/cpu/bf16_gemm_isa.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/bf16_gemm.h"

namespace qshard::kernels {
namespace {

constexpr int64_t kRows = 4;     // rows of A per register tile
constexpr int64_t kVectors = 4;  // 16-column vectors per register tile: 16 accumulators

// A's rows [row, row + rows) as bfloat16 pairs, [rows][pairs] words (the conversion rounds to
// nearest even and flushes subnormal inputs, as RoundToBf16).
void ConvertRows(const float* a, int64_t lda, int64_t rows, int64_t k, int64_t pairs, uint32_t* out) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* src = a + i * lda;
    uint32_t* dst = out + i * pairs;
    int64_t r = 0;
    for (; r + 32 <= k; r += 32) {
      const __m512bh packed = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + r + 16), _mm512_loadu_ps(src + r));
      std::memcpy(dst + r / 2, &packed, sizeof(packed));
    }
    if (r < k) {
      float tail[32] = {};
      std::copy(src + r, src + k, tail);
      const __m512bh packed = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(tail + 16), _mm512_loadu_ps(tail));
      uint32_t words[16];
      std::memcpy(words, &packed, sizeof(packed));
      std::copy(words, words + (pairs - r / 2), dst + r / 2);
    }
  }
}

// C's rows [0, R) and vectors [0, V) from column j: Σ over the pairs, one vdpbf16ps per
// accumulator and pair (the instruction adds the odd product, then the even one).
template <int R, int V>
void Tile(const uint32_t* a_words, int64_t pairs, const uint32_t* b_words, int64_t padded_n, int64_t j, int64_t n,
          float* c) {
  __m512 acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh b[V];
    for (int v = 0; v < V; ++v) b[v] = (__m512bh)_mm512_loadu_si512(b_words + p * padded_n + j + 16 * v);
    for (int r = 0; r < R; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(a_words[r * pairs + p]));
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
    }
  }
  for (int v = 0; v < V; ++v) {
    const int64_t column = j + 16 * v, left = std::min<int64_t>(16, n - column);
    const __mmask16 mask = left >= 16 ? 0xffff : static_cast<__mmask16>((1u << left) - 1);
    for (int r = 0; r < R; ++r) _mm512_mask_storeu_ps(c + r * n + column, mask, acc[r][v]);
  }
}

template <int R>
void Rows(const uint32_t* a_words, int64_t pairs, const Bf16Matrix& b, float* c) {
  const int64_t n = b.n(), padded_n = b.padded_n();
  int64_t j = 0;
  for (; j + 16 * kVectors <= padded_n; j += 16 * kVectors) Tile<R, kVectors>(a_words, pairs, b.words(), padded_n, j, n, c);
  for (; j < padded_n; j += 16) Tile<R, 1>(a_words, pairs, b.words(), padded_n, j, n, c);
}

}  // namespace

void MultiplyBf16Avx512(int64_t m, const float* a, int64_t lda, const Bf16Matrix& b, float* c) {
  const int64_t pairs = b.pairs();
  thread_local std::vector<uint32_t> a_words;
  if (static_cast<int64_t>(a_words.size()) < kRows * pairs) a_words.resize(kRows * pairs);
  for (int64_t i = 0; i < m; i += kRows) {
    const int64_t rows = std::min(kRows, m - i);
    ConvertRows(a + i * lda, lda, rows, b.k(), pairs, a_words.data());
    float* out = c + i * b.n();
    switch (rows) {
      case 4: Rows<4>(a_words.data(), pairs, b, out); break;
      case 3: Rows<3>(a_words.data(), pairs, b, out); break;
      case 2: Rows<2>(a_words.data(), pairs, b, out); break;
      default: Rows<1>(a_words.data(), pairs, b, out); break;
    }
  }
}

}  // namespace qshard::kernels
