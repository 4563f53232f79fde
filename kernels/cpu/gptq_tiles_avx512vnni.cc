// The int8-activation tiled kernel on AVX-512 VNNI (compiled with -mavx512vnni besides the
// AVX-512 flags): vpdpbusd adds the four u8 code × s8 activation products of each lane.
#include "kernels/cpu/gptq_isa_avx512.h"
#include "kernels/cpu/gptq_kernel_args.h"
#include "kernels/cpu/gptq_tile_kernels.h"

namespace qshard::kernels::internal {
namespace {

struct Avx512Vnni : Avx512 {
  using W = __m512i;
  static W Prep(I w) { return w; }
  static I Dot(I acc, W w, int32_t packed, int32_t, int32_t) {
    return _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(packed));
  }
};

}  // namespace

void Int8TilesAvx512Vnni(const TiledView& w, const Int8ActView& a, int64_t tokens, float* y, int64_t tile_begin,
                         int64_t tile_end) {
  Int8Tiles<Avx512Vnni>(w, a, tokens, y, tile_begin, tile_end);
}

}  // namespace qshard::kernels::internal
