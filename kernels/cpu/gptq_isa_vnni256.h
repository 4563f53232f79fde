// The 256-bit VNNI traits of the int8 tiled kernel (gptq_tile_kernels.h): the AVX2 tile of two
// 8-lane vectors, with vpdpbusd adding the four u8 code × s8 activation products of each lane
// in one instruction instead of AVX2's two vpmaddwd on 16-bit halves and two adds. The
// instruction comes in two encodings with the same arithmetic: VEX (AVX-VNNI, CPUs without
// AVX-512) and EVEX (AVX-512 VNNI + VL); `Dpbusd` supplies one, so that the AVX-VNNI kernel
// (gptq_tiles_avxvnni.cc) and its EVEX twin, which the tests run on AVX-512 VNNI CPUs, are one
// source.
#pragma once

#include "kernels/cpu/gptq_isa_avx2.h"

namespace qshard::kernels::internal {
namespace {

template <class Dpbusd>
struct Vnni256 : Avx2 {
  using W = __m256i;
  // 3 tokens: 6 int32 sums, 2 code vectors, their mask and the broadcast activations stay in
  // the 16 ymm registers of the inner loop (AVX-VNNI CPUs have no more).
  static constexpr int kMaxInt8Tokens = 3;
  static W Prep(I w) { return w; }
  static I Dot(I acc, W w, int32_t packed, int32_t, int32_t) { return Dpbusd::Run(acc, w, _mm256_set1_epi32(packed)); }
};

}  // namespace
}  // namespace qshard::kernels::internal
