// The AVX2 + FMA traits of the tiled kernels (gptq_tile_kernels.h): a tile is two 8-lane
// vectors. The int8 path multiplies with vpmaddwd on 16-bit halves: vpmaddubsw would saturate
// for 8-bit codes (2 · 255 · 127 > 32767), and the halves keep W4 and W8 one code path.
// Included only by translation units compiled with -mavx2 -mfma (and more).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/gptq_kernel_args.h"
#include "kernels/layout/gptq_tiled.h"

namespace qshard::kernels::internal {
namespace {

struct Avx2 {
  using F = __m256;
  using I = __m256i;
  struct W {
    __m256i even, odd;  // bytes 0, 2 and bytes 1, 3 of each lane as 16-bit values
  };
  static constexpr int kLanes = 8;
  static constexpr int kVectors = layout::kTileColumns / kLanes;
  static constexpr int kMaxExactTokens = kExactTokensAvx2;  // 2 · 3 accumulators + scales, biases, codes: 16 ymm
  static constexpr int kPanelTokens = kPanelTokensAvx2;
  static constexpr int kMaxInt8Tokens = 2;
  static I LoadI(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static I SetI(int32_t v) { return _mm256_set1_epi32(v); }
  static I ZeroI() { return _mm256_setzero_si256(); }
  static I And(I a, I b) { return _mm256_and_si256(a, b); }
  static I Srl(I a, int n) { return _mm256_srli_epi32(a, n); }
  static I Add(I a, I b) { return _mm256_add_epi32(a, b); }
  static I Sub(I a, I b) { return _mm256_sub_epi32(a, b); }
  static I Mul(I a, I b) { return _mm256_mullo_epi32(a, b); }
  static F Cvt(I a) { return _mm256_cvtepi32_ps(a); }
  static F ZeroF() { return _mm256_setzero_ps(); }
  static F SetF(float v) { return _mm256_set1_ps(v); }
  static F LoadF(const float* p) { return _mm256_loadu_ps(p); }
  static F Fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F AddF(F a, F b) { return _mm256_add_ps(a, b); }
  static F MulF(F a, F b) { return _mm256_mul_ps(a, b); }
  static void StoreF(float* p, F v, int n) {
    if (n == kLanes) {
      _mm256_storeu_ps(p, v);
      return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane), v);
  }
  static W Prep(I w) { return {_mm256_and_si256(w, _mm256_set1_epi32(0x00ff00ff)), _mm256_srli_epi16(w, 8)}; }
  static I Dot(I acc, const W& w, int32_t, int32_t pair_even, int32_t pair_odd) {
    const __m256i even = _mm256_madd_epi16(w.even, _mm256_set1_epi32(pair_even));
    const __m256i odd = _mm256_madd_epi16(w.odd, _mm256_set1_epi32(pair_odd));
    return _mm256_add_epi32(acc, _mm256_add_epi32(even, odd));
  }
};

}  // namespace
}  // namespace qshard::kernels::internal
