// The tiled kernels on AVX2 + FMA (this file alone is compiled with -mavx2 -mfma; the traits are
// gptq_isa_avx2.h).
#include "kernels/cpu/gptq_isa_avx2.h"
#include "kernels/cpu/gptq_kernel_args.h"
#include "kernels/cpu/gptq_tile_kernels.h"

namespace qshard::kernels::internal {

void ExactTilesAvx2(const TiledView& w, const FloatActView& a, int64_t tokens, float* y, int64_t tile_begin,
                    int64_t tile_end, float* panel) {
  ExactTiles<Avx2>(w, a, tokens, y, tile_begin, tile_end, panel);
}

void Int8TilesAvx2(const TiledView& w, const Int8ActView& a, int64_t tokens, float* y, int64_t tile_begin,
                   int64_t tile_end) {
  Int8Tiles<Avx2>(w, a, tokens, y, tile_begin, tile_end);
}

}  // namespace qshard::kernels::internal
