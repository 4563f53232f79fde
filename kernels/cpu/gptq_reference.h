// Plain reference GPTQ products, read straight from the checkpoint layout one code at a time
// (no tiling, no SIMD): what the tiled kernels are tested against besides the fp64 oracle.
#pragma once

#include <cstdint>

#include "kernels/cpu/int8_activations.h"
#include "kernels/layout/gptq_packed.h"

namespace qshard::kernels {

// y[t, o] = Σ_i x[t, i] · scale · (q − zero), fp32 accumulation. x [tokens, in], y [tokens, out].
void ReferenceGptqGemm(const layout::GptqPackedView& w, const float* x, int64_t tokens, float* y);
// The int8-activation product: x quantized per token (int8_activations.h), then
// y[t, o] = scale_t · Σ_g scale[g, o] · Σ_{i in g} (q − zero) · a_i with exact integer sums.
void ReferenceGptqGemmInt8(const layout::GptqPackedView& w, const float* x, int64_t tokens, float* y);
// The same with every token quantized by one per-tensor scale (FlattenQuant's W8A8 / W4A4).
void ReferenceGptqGemmStatic(const layout::GptqPackedView& w, const float* x, int64_t tokens,
                             const StaticActivationQuant& quant, float* y);

}  // namespace qshard::kernels
