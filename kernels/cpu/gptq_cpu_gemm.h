// The CPU GPTQ matrix products y = x · Wᵀ on tiled weights (gptq_tiled_weights.h), by
// activation type and ISA variant, threaded over tiles of output channels:
//   fp32 activations ("exact", w<b>a32): codes dequantized in registers, fp32 FMAs; equals the
//     dequantized layer up to float rounding.
//   int8 activations (w<b>a8): each token quantized on the fly to int8 with one scale
//     (max |x| / 127), exact int32 sums of code × activation per group, scaled in fp32. The
//     sums stay below 2^31 for groups of up to 66,000 inputs (255 · 127 · 66,000), more than any
//     per-channel layer of the models qshard targets (49,152).
//   per-tensor static activations (FlattenQuant's w<b>a8 / w<b>a4, GptqGemmStatic): the same
//     int8 tile kernels, with every token quantized by one scale fixed at calibration. With
//     4-bit activations (±7, held in int8 lanes: x86 has no 4-bit multiply) and 4-bit codes this
//     is the W4A4 product, int4 × int4 → int32, exact.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "core/thread_pool.h"
#include "kernels/cpu/gptq_kernel_args.h"
#include "kernels/cpu/gptq_tiled_weights.h"
#include "kernels/cpu/int8_activations.h"

namespace qshard::kernels {

enum class GptqActivations { kFp32, kInt8 };
// kAvxVnni: AVX2 with the VEX vpdpbusd (AVX-VNNI); kAvx512Vnni: AVX-512 with VNNI.
enum class CpuVariant { kGeneric, kAvx2, kAvx512, kAvxVnni, kAvx512Vnni };

const char* CpuVariantName(CpuVariant variant);  // generic, avx2, avx512, avxvnni, vnni
// The variants implemented for an activation type (whether or not this CPU has them).
std::vector<CpuVariant> GptqVariants(GptqActivations activations);
bool CpuHasVariant(CpuVariant variant);
// The fastest implemented variant this CPU has.
CpuVariant BestGptqVariant(GptqActivations activations);

// OK when `variant` is implemented for `activations` and this CPU has it.
absl::Status CheckGptqVariant(GptqActivations activations, CpuVariant variant);

// x [tokens, in], y [tokens, out]. pool may be null (runs on the calling thread). Fails on a
// variant that CheckGptqVariant rejects.
absl::Status GptqGemm(const GptqTiledWeights& w, const float* x, int64_t tokens, float* y,
                      GptqActivations activations, CpuVariant variant, ThreadPool* pool);
// GptqGemm for a pair CheckGptqVariant accepted (callers that check once at load time).
void GptqGemmChecked(const GptqTiledWeights& w, const float* x, int64_t tokens, float* y,
                     GptqActivations activations, CpuVariant variant, ThreadPool* pool);

// OK when quant.bits is 4 or 8 and quant.scale is finite and positive.
absl::Status CheckStaticActivationQuant(const StaticActivationQuant& quant);
// y = dequant(x quantized per tensor by `quant`) · Wᵀ on the int8-activation kernel `variant`
// (GptqVariants(kInt8)). Fails on a bad `quant` or a variant CheckGptqVariant rejects.
absl::Status GptqGemmStatic(const GptqTiledWeights& w, const float* x, int64_t tokens, float* y,
                            const StaticActivationQuant& quant, CpuVariant variant, ThreadPool* pool);
// GptqGemmStatic for arguments already checked (callers that check once at load time).
void GptqGemmStaticChecked(const GptqTiledWeights& w, const float* x, int64_t tokens, float* y,
                           const StaticActivationQuant& quant, CpuVariant variant, ThreadPool* pool);

namespace internal {
// The int8 path of GptqGemm (quant null) or GptqGemmStatic on the tile kernel `tiles`, which the
// caller has checked this CPU can run: the variants' kernels, and in the tests a kernel that is
// no variant (the AVX-VNNI kernel's EVEX twin, tests/kernels/gptq_vnni256_evex_twin.h).
void GptqGemmInt8With(Int8TilesFn tiles, const GptqTiledWeights& w, const float* x, int64_t tokens, float* y,
                      const StaticActivationQuant* quant, ThreadPool* pool);
}  // namespace internal

}  // namespace qshard::kernels
