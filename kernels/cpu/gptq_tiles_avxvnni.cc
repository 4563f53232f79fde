// The int8-activation tiled kernel on AVX-VNNI (compiled with -mavx2 -mfma -mavxvnni): the
// 256-bit VNNI traits (gptq_isa_vnni256.h) with the VEX-encoded vpdpbusd.
#include "kernels/cpu/gptq_isa_vnni256.h"
#include "kernels/cpu/gptq_kernel_args.h"
#include "kernels/cpu/gptq_tile_kernels.h"

namespace qshard::kernels::internal {
namespace {

struct VexDpbusd {
  static __m256i Run(__m256i acc, __m256i u8, __m256i s8) { return _mm256_dpbusd_avx_epi32(acc, u8, s8); }
};

}  // namespace

void Int8TilesAvxVnni(const TiledView& w, const Int8ActView& a, int64_t tokens, float* y, int64_t tile_begin,
                      int64_t tile_end) {
  Int8Tiles<Vnni256<VexDpbusd>>(w, a, tokens, y, tile_begin, tile_end);
}

}  // namespace qshard::kernels::internal
