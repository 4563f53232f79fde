// Plain views that the public entry points (gptq_cpu_gemm.cc) hand to the per-ISA translation
// units. Those are compiled with -mavx2 / -mavx512*, so they see no std containers: an inline
// function they instantiated could be picked by the linker for portable code and fault there.
#pragma once

#include <cstdint>

namespace qshard::kernels::internal {

struct TiledView {
  int bits = 0;
  int64_t groups = 0;
  int64_t blocks = 0;
  int64_t padded_inputs = 0;
  int64_t out_features = 0;
  const int64_t* group_blocks = nullptr;
  const uint8_t* codes = nullptr;
  const float* scale = nullptr;
  const float* bias = nullptr;
  const int32_t* zero = nullptr;
};

// Tokens per call of each variant's fp32 kernels (what their registers hold, gptq_isa_*.h):
// decoding codes in registers (ExactTile), and, on AVX2 from kPanelMinTokens tokens on,
// multiplying a tile dequantized once into a panel (PanelTile), which holds no per-group sums
// and so takes more tokens. AVX2's decode (shift, mask, convert per 8 weights) costs as much as
// its 3 tokens' FMAs; on AVX-512 a panel was no faster than ExactTile (docs/kernels.md).
inline constexpr int kExactTokensGeneric = 4;
inline constexpr int kExactTokensAvx2 = 3;
inline constexpr int kExactTokensAvx512 = 16;
inline constexpr int kPanelTokensAvx2 = 6;
inline constexpr int64_t kPanelMinTokens = 16;

// Fp32 activations gathered into the tiled input order, in blocks of the variant's tokens per
// call: the element of input j and token b0 + t, in the block of `width` tokens that starts at
// token b0, is x[b0 · padded_inputs + j · width + t]; the last block holds the rest. So a call
// reads its tokens' activations through one pointer at constant offsets (row-major, each token a
// pointer of its own: GCC 12 spilled them and the AVX-512 loop did two loads per FMA).
struct FloatActView {
  const float* x = nullptr;
  const float* group_sum = nullptr;  // [tokens, groups]: Σ x over the group's inputs
};

// The code width that Int8TilesAvx2 multiplies on 16-bit halves, with the activations' pairs:
// 8-bit codes would saturate vpmaddubsw (2 · 255 · 127 > 32767); narrower ones go straight in.
inline constexpr int kAvx2PairedBits = 8;

// Activations quantized per token to int8 in the tiled input order.
struct Int8ActView {
  const int32_t* quads = nullptr;     // [tokens, padded_inputs / 4]: 4 int8 inputs in each
  const int32_t* pairs = nullptr;     // [tokens, padded_inputs / 2]: (a0|a2<<16, a1|a3<<16) per 4;
                                      // only for Int8TilesAvx2 on 8-bit codes (null otherwise)
  const float* scale = nullptr;       // [tokens]: x ≈ scale · q
  const int32_t* group_sum = nullptr; // [tokens, groups]: Σ q over the group's inputs
};

// y[t, o] for the outputs of tiles [tile_begin, tile_end) and every token. y is [tokens, out].
// `panel`: null, or padded_inputs × kTileColumns floats of the caller's for the panel kernel,
// which the caller chooses (UsesPanels in gptq_cpu_gemm.cc) and lays the activations out for.
using ExactTilesFn = void (*)(const TiledView& w, const FloatActView& a, int64_t tokens, float* y,
                              int64_t tile_begin, int64_t tile_end, float* panel);
using Int8TilesFn = void (*)(const TiledView& w, const Int8ActView& a, int64_t tokens, float* y, int64_t tile_begin,
                             int64_t tile_end);

void ExactTilesGeneric(const TiledView&, const FloatActView&, int64_t, float*, int64_t, int64_t, float*);
void ExactTilesAvx2(const TiledView&, const FloatActView&, int64_t, float*, int64_t, int64_t, float*);
void ExactTilesAvx512(const TiledView&, const FloatActView&, int64_t, float*, int64_t, int64_t, float*);
void Int8TilesGeneric(const TiledView&, const Int8ActView&, int64_t, float*, int64_t, int64_t);
void Int8TilesAvx2(const TiledView&, const Int8ActView&, int64_t, float*, int64_t, int64_t);
void Int8TilesAvxVnni(const TiledView&, const Int8ActView&, int64_t, float*, int64_t, int64_t);
void Int8TilesAvx512Vnni(const TiledView&, const Int8ActView&, int64_t, float*, int64_t, int64_t);

}  // namespace qshard::kernels::internal
