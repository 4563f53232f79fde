// The AVX-512 traits of the tiled kernels (gptq_tile_kernels.h): a tile is one 16-lane vector.
// Included only by the translation units compiled with -mavx512f -mavx512bw -mavx512vl -mfma.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/gptq_kernel_args.h"
#include "kernels/layout/gptq_tiled.h"

namespace qshard::kernels::internal {
namespace {

struct Avx512 {
  using F = __m512;
  using I = __m512i;
  static constexpr int kLanes = 16;
  static constexpr int kVectors = layout::kTileColumns / kLanes;
  static constexpr int kMaxExactTokens = kExactTokensAvx512;
  static constexpr int kPanelTokens = 0;
  static constexpr int kMaxInt8Tokens = 8;
  static I LoadI(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static I SetI(int32_t v) { return _mm512_set1_epi32(v); }
  static I ZeroI() { return _mm512_setzero_si512(); }
  static I And(I a, I b) { return _mm512_and_si512(a, b); }
  static I Srl(I a, int n) { return _mm512_srli_epi32(a, n); }
  static I Add(I a, I b) { return _mm512_add_epi32(a, b); }
  static I Sub(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I Mul(I a, I b) { return _mm512_mullo_epi32(a, b); }
  static F Cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static F ZeroF() { return _mm512_setzero_ps(); }
  static F SetF(float v) { return _mm512_set1_ps(v); }
  static F LoadF(const float* p) { return _mm512_loadu_ps(p); }
  static F Permute(I index, F table) { return _mm512_permutexvar_ps(index, table); }
  static F Fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F AddF(F a, F b) { return _mm512_add_ps(a, b); }
  static F MulF(F a, F b) { return _mm512_mul_ps(a, b); }
  static void StoreF(float* p, F v, int n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
  }
};

}  // namespace
}  // namespace qshard::kernels::internal
