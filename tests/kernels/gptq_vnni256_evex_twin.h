// The AVX-VNNI int8 tile kernel re-encoded for AVX-512 VNNI + VL (gptq_vnni256_evex_twin.cc);
// call it only where kernels::GetCpuFeatures().HasAvx512Vnni().
#pragma once

#include <cstdint>

#include "kernels/cpu/gptq_kernel_args.h"

namespace qshard::kernels::internal {

void Int8TilesVnni256EvexTwin(const TiledView& w, const Int8ActView& a, int64_t tokens, float* y,
                              int64_t tile_begin, int64_t tile_end);

}  // namespace qshard::kernels::internal
