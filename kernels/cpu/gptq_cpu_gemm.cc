#include "kernels/cpu/gptq_cpu_gemm.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/large_buffers.h"
#include "core/status.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gptq_kernel_args.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/layout/gptq_tiled.h"

namespace qshard::kernels {
namespace {

internal::TiledView ViewOf(const GptqTiledWeights& w) {
  internal::TiledView v;
  v.bits = w.bits;
  v.groups = w.groups;
  v.blocks = w.blocks;
  v.padded_inputs = w.padded_inputs;
  v.out_features = w.out_features;
  v.group_blocks = w.group_blocks.data();
  v.codes = w.codes.data();
  v.scale = w.scale.data();
  v.bias = w.bias.data();
  v.zero = w.zero.data();
  return v;
}

// The activations of one call in the int8 kernels' form (int8_activations.h, gptq_kernel_args.h).
struct Int8Activations {
  std::vector<int32_t> quads;
  std::vector<int32_t> pairs;
  std::vector<float> scale;
  std::vector<int32_t> group_sum;
};

// out[g] = Σ row[j] over group g's inputs (in the tiled order, padding included: it is 0).
template <class T, class Sum>
void SumGroups(const GptqTiledWeights& w, const T* row, Sum* out) {
  const int rows = layout::RowsPerBlock(w.bits);
  for (int64_t g = 0; g < w.groups; ++g) {
    Sum sum = 0;
    for (int64_t j = w.group_blocks[g] * rows; j < w.group_blocks[g + 1] * rows; ++j) sum += row[j];
    out[g] = sum;
  }
}

int32_t PackPair(int8_t lo, int8_t hi) {
  return static_cast<int32_t>(static_cast<uint16_t>(lo) | (static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16));
}

// Per token (quant null) or with one per-tensor scale (int8_activations.h), tokens spread over
// the pool (at 512 tokens × 12288 inputs this took a fifth of the W4A8 GEMM on one thread), with
// the 16-bit pairs only when `pairs` (the AVX2 kernel's: twice the bytes of the codes).
Int8Activations QuantizeActivations(const GptqTiledWeights& w, const float* x, int64_t tokens,
                                    const StaticActivationQuant* quant, bool pairs, ThreadPool* pool) {
  const int64_t n = w.padded_inputs;
  Int8Activations a;
  a.quads.resize(tokens * n / layout::kLaneBytes);
  if (pairs) a.pairs.resize(tokens * n / 2);
  a.scale.resize(tokens);
  a.group_sum.assign(tokens * w.groups, 0);
  ForChunks(tokens, pool, [&](int64_t first, int64_t end) {
    std::vector<float> gathered(n);
    for (int64_t t = first; t < end; ++t) {
      GatherActivations(w, x + t * w.in_features, 1, gathered.data());
      int8_t* q = reinterpret_cast<int8_t*>(a.quads.data() + t * n / layout::kLaneBytes);
      if (quant == nullptr) {
        a.scale[t] = QuantizeRowInt8(gathered.data(), n, q);
      } else {
        QuantizeRowStatic(gathered.data(), n, *quant, q);
        a.scale[t] = quant->scale;
      }
      for (int64_t j = 0; pairs && j < n; j += 4) {
        a.pairs[(t * n + j) / 2] = PackPair(q[j], q[j + 2]);
        a.pairs[(t * n + j) / 2 + 1] = PackPair(q[j + 1], q[j + 3]);
      }
      SumGroups(w, q, a.group_sum.data() + t * w.groups);
    }
  });
  return a;
}

// Runs fn(tile_begin, tile_end) over all tiles, a few chunks per thread so that threads that
// finish early take more.
template <class Fn>
void ForTileChunks(int64_t tiles, ThreadPool* pool, const Fn& fn) {
  if (pool == nullptr || pool->threads() == 1 || tiles == 1) {
    fn(int64_t{0}, tiles);
    return;
  }
  const int64_t chunks = std::min<int64_t>(tiles, pool->threads() * 32);
  const int64_t per_chunk = (tiles + chunks - 1) / chunks;
  pool->ParallelFor((tiles + per_chunk - 1) / per_chunk, [&](int64_t chunk) {
    fn(chunk * per_chunk, std::min(tiles, (chunk + 1) * per_chunk));
  });
}

// The fp32 kernel's tokens per call for `tokens` tokens, which sets its activations' blocks
// (FloatActView), and whether it multiplies panels (gptq_kernel_args.h).
bool UsesPanels(CpuVariant v, int64_t tokens) { return v == CpuVariant::kAvx2 && tokens >= internal::kPanelMinTokens; }

int ExactTokensPerCall(CpuVariant v, int64_t tokens) {
  switch (v) {
    case CpuVariant::kAvx2: return UsesPanels(v, tokens) ? internal::kPanelTokensAvx2 : internal::kExactTokensAvx2;
    case CpuVariant::kAvx512: return internal::kExactTokensAvx512;
    case CpuVariant::kGeneric:
    case CpuVariant::kAvxVnni:  // no fp32 kernel (ExactFn)
    case CpuVariant::kAvx512Vnni: break;
  }
  return internal::kExactTokensGeneric;
}

// x [tokens, in] gathered into the tiled order in blocks of `block` tokens (FloatActView), and
// each token's group sums.
void GatherFloatActivations(const GptqTiledWeights& w, const float* x, int64_t tokens, int block, float* xp,
                            float* group_sum) {
  std::vector<float> row(w.padded_inputs);
  for (int64_t t = 0; t < tokens; ++t) {
    GatherActivations(w, x + t * w.in_features, 1, row.data());
    SumGroups(w, row.data(), group_sum + t * w.groups);
    const int64_t b0 = t / block * block, width = std::min<int64_t>(block, tokens - b0);
    float* out = xp + b0 * w.padded_inputs + (t - b0);
    for (int64_t j = 0; j < w.padded_inputs; ++j) out[j * width] = row[j];
  }
}

internal::ExactTilesFn ExactFn(CpuVariant v) {
  switch (v) {
    case CpuVariant::kGeneric: return internal::ExactTilesGeneric;
    case CpuVariant::kAvx2: return internal::ExactTilesAvx2;
    case CpuVariant::kAvx512: return internal::ExactTilesAvx512;
    case CpuVariant::kAvxVnni:
    case CpuVariant::kAvx512Vnni: return nullptr;
  }
  return nullptr;
}

internal::Int8TilesFn Int8Fn(CpuVariant v) {
  switch (v) {
    case CpuVariant::kGeneric: return internal::Int8TilesGeneric;
    case CpuVariant::kAvx2: return internal::Int8TilesAvx2;
    case CpuVariant::kAvx512: return nullptr;
    case CpuVariant::kAvxVnni: return internal::Int8TilesAvxVnni;
    case CpuVariant::kAvx512Vnni: return internal::Int8TilesAvx512Vnni;
  }
  return nullptr;
}

}  // namespace

const char* CpuVariantName(CpuVariant variant) {
  switch (variant) {
    case CpuVariant::kGeneric: return "generic";
    case CpuVariant::kAvx2: return "avx2";
    case CpuVariant::kAvx512: return "avx512";
    case CpuVariant::kAvxVnni: return "avxvnni";
    case CpuVariant::kAvx512Vnni: return "vnni";
  }
  return "unknown";
}

std::vector<CpuVariant> GptqVariants(GptqActivations activations) {
  if (activations == GptqActivations::kFp32) return {CpuVariant::kGeneric, CpuVariant::kAvx2, CpuVariant::kAvx512};
  return {CpuVariant::kGeneric, CpuVariant::kAvx2, CpuVariant::kAvxVnni, CpuVariant::kAvx512Vnni};
}

bool CpuHasVariant(CpuVariant variant) {
  const CpuFeatures& f = GetCpuFeatures();
  switch (variant) {
    case CpuVariant::kGeneric: return true;
    case CpuVariant::kAvx2: return f.HasAvx2Fma();
    case CpuVariant::kAvx512: return f.HasAvx512();
    case CpuVariant::kAvxVnni: return f.HasAvxVnni();
    case CpuVariant::kAvx512Vnni: return f.HasAvx512Vnni();
  }
  return false;
}

CpuVariant BestGptqVariant(GptqActivations activations) {
  CpuVariant best = CpuVariant::kGeneric;
  for (CpuVariant v : GptqVariants(activations))
    if (CpuHasVariant(v)) best = v;  // listed slowest first
  return best;
}

absl::Status CheckGptqVariant(GptqActivations activations, CpuVariant variant) {
  const bool fp32 = activations == GptqActivations::kFp32;
  if (fp32 ? ExactFn(variant) == nullptr : Int8Fn(variant) == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("kernel variant ", CpuVariantName(variant), " has no ",
                                                   fp32 ? "fp32" : "int8", "-activation GPTQ kernel"));
  if (!CpuHasVariant(variant))
    return absl::FailedPreconditionError(absl::StrCat("kernel variant ", CpuVariantName(variant),
                                                      ": this CPU lacks it (has ", GetCpuFeatures().ToString(), ")"));
  return absl::OkStatus();
}

absl::Status GptqGemm(const GptqTiledWeights& w, const float* x, int64_t tokens, float* y,
                      GptqActivations activations, CpuVariant variant, ThreadPool* pool) {
  QSHARD_RETURN_IF_ERROR(CheckGptqVariant(activations, variant));
  GptqGemmChecked(w, x, tokens, y, activations, variant, pool);
  return absl::OkStatus();
}

void GptqGemmChecked(const GptqTiledWeights& w, const float* x, int64_t tokens, float* y,
                     GptqActivations activations, CpuVariant variant, ThreadPool* pool) {
  if (tokens <= 0) return;
  const internal::TiledView view = ViewOf(w);
  if (activations == GptqActivations::kFp32) {
    const internal::ExactTilesFn exact = ExactFn(variant);
    std::vector<float> xp(tokens * w.padded_inputs), group_sum(tokens * w.groups);
    GatherFloatActivations(w, x, tokens, ExactTokensPerCall(variant, tokens), xp.data(), group_sum.data());
    const internal::FloatActView act{xp.data(), group_sum.data()};
    const size_t panel_floats = UsesPanels(variant, tokens) ? w.padded_inputs * layout::kTileColumns : 0;
    ForTileChunks(w.tiles, pool, [&](int64_t begin, int64_t end) {
      UninitializedVector<float> panel(panel_floats);
      exact(view, act, tokens, y, begin, end, panel.data());
    });
    return;
  }
  internal::GptqGemmInt8With(Int8Fn(variant), w, x, tokens, y, nullptr, pool);
}

absl::Status GptqGemmStatic(const GptqTiledWeights& w, const float* x, int64_t tokens, float* y,
                            const StaticActivationQuant& quant, CpuVariant variant, ThreadPool* pool) {
  QSHARD_RETURN_IF_ERROR(CheckStaticActivationQuant(quant));
  QSHARD_RETURN_IF_ERROR(CheckGptqVariant(GptqActivations::kInt8, variant));
  GptqGemmStaticChecked(w, x, tokens, y, quant, variant, pool);
  return absl::OkStatus();
}

void GptqGemmStaticChecked(const GptqTiledWeights& w, const float* x, int64_t tokens, float* y,
                           const StaticActivationQuant& quant, CpuVariant variant, ThreadPool* pool) {
  if (tokens > 0) internal::GptqGemmInt8With(Int8Fn(variant), w, x, tokens, y, &quant, pool);
}

absl::Status CheckStaticActivationQuant(const StaticActivationQuant& quant) {
  if (quant.bits != 4 && quant.bits != 8)
    return absl::InvalidArgumentError(absl::StrCat("activation bits ", quant.bits, " is not 4 or 8"));
  if (!(quant.scale > 0.0f) || !std::isfinite(quant.scale))
    return absl::InvalidArgumentError(absl::StrCat("activation scale ", quant.scale, " is not finite and > 0"));
  return absl::OkStatus();
}

namespace internal {

void GptqGemmInt8With(Int8TilesFn tiles, const GptqTiledWeights& w, const float* x, int64_t tokens, float* y,
                      const StaticActivationQuant* quant, ThreadPool* pool) {
  const bool pairs = tiles == Int8TilesAvx2 && w.bits == kAvx2PairedBits;  // what that kernel multiplies by
  const Int8Activations a = QuantizeActivations(w, x, tokens, quant, pairs, pool);
  Int8ActView act;
  act.quads = a.quads.data();
  act.pairs = a.pairs.data();
  act.scale = a.scale.data();
  act.group_sum = a.group_sum.data();
  const TiledView view = ViewOf(w);
  ForTileChunks(w.tiles, pool, [&](int64_t begin, int64_t end) { tiles(view, act, tokens, y, begin, end); });
}

}  // namespace internal

}  // namespace qshard::kernels
