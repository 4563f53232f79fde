// The fp32-activation tiled kernel on AVX-512 (F, BW, VL; this file alone is compiled with those
// flags): one 16-lane vector per tile, up to 8 tokens per pass over the codes.
#include "kernels/cpu/gptq_isa_avx512.h"
#include "kernels/cpu/gptq_kernel_args.h"
#include "kernels/cpu/gptq_tile_kernels.h"

namespace qshard::kernels::internal {

void ExactTilesAvx512(const TiledView& w, const FloatActView& a, int64_t tokens, float* y, int64_t tile_begin,
                      int64_t tile_end, float* panel) {
  ExactTiles<Avx512>(w, a, tokens, y, tile_begin, tile_end, panel);
}

}  // namespace qshard::kernels::internal
