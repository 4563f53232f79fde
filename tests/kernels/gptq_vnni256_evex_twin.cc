// The AVX-VNNI kernel's twin for the tests (compiled with the AVX-512 VNNI + VL flags): the same
// 256-bit traits (kernels/cpu/gptq_isa_vnni256.h) with the EVEX encoding of vpdpbusd, which
// computes the same sums. A CPU without AVX-VNNI (the Zen 4 machines here) cannot run the VEX
// kernel, but runs this one wherever it has AVX-512 VNNI, so the kernel's tile logic is tested
// there and only its instruction encoding waits for an AVX-VNNI CPU.
#include "tests/kernels/gptq_vnni256_evex_twin.h"

#include "kernels/cpu/gptq_isa_vnni256.h"
#include "kernels/cpu/gptq_tile_kernels.h"

namespace qshard::kernels::internal {
namespace {

struct EvexDpbusd {
  static __m256i Run(__m256i acc, __m256i u8, __m256i s8) { return _mm256_dpbusd_epi32(acc, u8, s8); }
};

}  // namespace

void Int8TilesVnni256EvexTwin(const TiledView& w, const Int8ActView& a, int64_t tokens, float* y,
                              int64_t tile_begin, int64_t tile_end) {
  Int8Tiles<Vnni256<EvexDpbusd>>(w, a, tokens, y, tile_begin, tile_end);
}

}  // namespace qshard::kernels::internal
