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

namespace {

// Codes of up to 4 bits (W2/W3/W4) as unsigned bytes straight into vpmaddubsw: a pair's
// products 15·127 + 15·127 = 3810 cannot saturate its int16 sum, and vpmaddwd by ones adds the
// pairs into the lane's int32. Three instructions per token and vector instead of two vpmaddwd
// and two adds, and no split of the codes into 16-bit halves (nor the activations into pairs).
struct Avx2Narrow : Avx2 {
  using W = __m256i;
  static W Prep(I w) { return w; }
  static I Dot(I acc, W w, int32_t quad, int32_t, int32_t) {
    const __m256i pairs = _mm256_maddubs_epi16(w, _mm256_set1_epi32(quad));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
};

}  // namespace

void Int8TilesAvx2(const TiledView& w, const Int8ActView& a, int64_t tokens, float* y, int64_t tile_begin,
                   int64_t tile_end) {
  if (w.bits == kAvx2PairedBits) {
    Int8Tiles<Avx2>(w, a, tokens, y, tile_begin, tile_end);
  } else {
    Int8Tiles<Avx2Narrow>(w, a, tokens, y, tile_begin, tile_end);
  }
}

}  // namespace qshard::kernels::internal
