// The tile loops of the fp32 and int8-activation GPTQ kernels, written once over a small "ISA"
// traits type S and included by each per-ISA translation unit (gptq_tiles_*.cc), which supplies
// S. Everything is in an anonymous namespace so that each unit keeps its own copies.
//
// S provides: F (fp32 vector), I (int32 vector), kLanes, kVectors (= kTileColumns / kLanes),
// kMaxExactTokens, kPanelTokens (0: no panel kernel), kMaxInt8Tokens,
// LoadI(bytes), SetI(int), And, Srl(n), Add, Sub, Mul (int32 low), Cvt (int32 → fp32), ZeroF, ZeroI,
// SetF, LoadF, Fma, AddF, MulF, StoreF(p, v, n) (first n lanes), and for int8: W (prepared weights),
// Prep(I) and Dot(acc, W, quad, pair_even, pair_odd) = acc + Σ of 4 u8 × s8 products per lane
// (quad is an lvalue in the activations, so that a Dot may read it as a memory operand).
// Optionally Permute(I index, F table) = table[index & 15] per lane (AVX-512 vpermps), which
// the fp32 kernel then uses to decode codes of up to 4 bits.
#pragma once

#include <cstdint>
#include <utility>

#include "kernels/cpu/gptq_kernel_args.h"
#include "kernels/layout/gptq_tiled.h"

namespace qshard::kernels::internal {
namespace {

inline int64_t MinI64(int64_t a, int64_t b) { return a < b ? a : b; }

// Byte-repeated mask of one field of the container width (all bits for 8-bit codes).
constexpr int32_t FieldMask(int bits) {
  return bits == 8 ? -1 : static_cast<int32_t>(0x01010101u * ((1u << bits) - 1u));
}

// Asks for the codes kAhead bytes ahead of the block being read (locality 3: into L1, 2: into
// L2). A tile's blocks are contiguous and tiles follow each other, so this runs ahead across tile
// ends too; the hardware prefetchers alone leave the 1-token GEMV ~15 % slower at 12288²
// (weights from DRAM). A prefetch never faults, so the address may pass the end of the codes.
inline constexpr uintptr_t kPrefetchBytes = 2048;
template <uintptr_t kAhead = kPrefetchBytes, int kLocality = 3>
inline void PrefetchCodes(const uint8_t* codes) {
  __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(codes) + kAhead), 0, kLocality);
}

// Whether S decodes kBits-bit codes by a 16-entry table lookup: vpermps reads only the low 4 bits
// of each index, so one lookup does the mask and the int → fp32 conversion (3 vector ops per
// 16 weights instead of 4: shift, lookup, FMA).
template <class S, int kBits>
constexpr bool kTableDecode =
    layout::ContainerBits(kBits) <= 4 && requires(typename S::I i, typename S::F f) { S::Permute(i, f); };

// table[i] = i & (2^kBits − 1): the code in the low container bits of i, as fp32.
template <class S, int kBits>
typename S::F CodeTable() {
  alignas(64) float table[16];
  for (int i = 0; i < 16; ++i) table[i] = static_cast<float>(i & ((1 << kBits) - 1));
  return S::LoadF(table);
}

template <class S>
void StoreTile(const typename S::F (&acc)[S::kVectors], float* y, int64_t columns) {
  for (int v = 0; v < S::kVectors; ++v) {
    const int64_t n = columns - v * S::kLanes;
    if (n <= 0) break;
    S::StoreF(y + v * S::kLanes, acc[v], n < S::kLanes ? static_cast<int>(n) : S::kLanes);
  }
}

// kTokens tokens × one tile of the fp32 path. Per group g, with codes converted to fp32 in
// registers: y += scale · Σ q·x + bias · Σ x (bias = −scale · zero), so each weight costs one
// FMA per token and the dequantizing multiply-add is paid once per group, not per weight.
// With few tokens, rows alternate between kChains partial sums so that consecutive FMAs do not
// wait on each other (one chain would be bound by the FMA latency, not its throughput).
template <class S, int kBits, int kTokens>
void ExactTile(const TiledView& w, int64_t tile, const FloatActView& a, int64_t t0, float* y) {
  using F = typename S::F;
  using I = typename S::I;
  constexpr int kRows = layout::RowsPerBlock(kBits);
  constexpr int kV = S::kVectors;
  constexpr int kChains = kTokens * kV >= 4 ? 1 : 4 / (kTokens * kV);
  static_assert(kRows % kChains == 0, "every chain gets the same rows of a block");
  const I mask = S::SetI(static_cast<int32_t>((1u << kBits) - 1u));
  F table{};
  if constexpr (kTableDecode<S, kBits>) table = CodeTable<S, kBits>();
  const float* xp = a.x + t0 * w.padded_inputs;  // this call's block (FloatActView): kTokens wide
  F acc[kTokens][kV];
  for (int t = 0; t < kTokens; ++t)
    for (int v = 0; v < kV; ++v) acc[t][v] = S::ZeroF();
  for (int64_t g = 0; g < w.groups; ++g) {
    const int64_t b0 = w.group_blocks[g], b1 = w.group_blocks[g + 1];
    if (b0 == b1) continue;
    F part[kChains][kTokens][kV];
    for (int c = 0; c < kChains; ++c)
      for (int t = 0; t < kTokens; ++t)
        for (int v = 0; v < kV; ++v) part[c][t][v] = S::ZeroF();
    for (int64_t block = b0; block < b1; ++block) {
      const uint8_t* codes = w.codes + (tile * w.blocks + block) * layout::kBlockBytes;
      PrefetchCodes(codes);
      PrefetchCodes<8192, 2>(codes);  // the fp32 loop is slower per byte: 4 % less at 12288² with this
      I lanes[kV];
      for (int v = 0; v < kV; ++v) lanes[v] = S::LoadI(codes + v * S::kLanes * layout::kLaneBytes);
      const float* x = xp + block * kRows * kTokens;
#pragma GCC unroll 16
      for (int r = 0; r < kRows; ++r) {
        for (int v = 0; v < kV; ++v) {
          const I shifted = S::Srl(lanes[v], layout::RowShift(kBits, r));
          F q;
          if constexpr (kTableDecode<S, kBits>) {
            q = S::Permute(shifted, table);
          } else {
            q = S::Cvt(S::And(shifted, mask));
          }
          for (int t = 0; t < kTokens; ++t)
            part[r % kChains][t][v] = S::Fma(q, S::SetF(x[r * kTokens + t]), part[r % kChains][t][v]);
        }
      }
    }
    const int64_t at = (tile * w.groups + g) * layout::kTileColumns;
    for (int v = 0; v < kV; ++v) {
      const F s = S::LoadF(w.scale + at + v * S::kLanes);
      const F b = S::LoadF(w.bias + at + v * S::kLanes);
      for (int t = 0; t < kTokens; ++t) {
        F sum = part[0][t][v];
        for (int c = 1; c < kChains; ++c) sum = S::AddF(sum, part[c][t][v]);
        acc[t][v] = S::Fma(sum, s, S::Fma(b, S::SetF(a.group_sum[(t0 + t) * w.groups + g]), acc[t][v]));
      }
    }
  }
  const int64_t columns = MinI64(layout::kTileColumns, w.out_features - tile * layout::kTileColumns);
  for (int t = 0; t < kTokens; ++t)
    StoreTile<S>(acc[t], y + (t0 + t) * w.out_features + tile * layout::kTileColumns, columns);
}

// One tile dequantized into panel[padded_inputs][kTileColumns]: row j = scale·q + bias of the
// tiled input j (padding rows hold the bias; their activations are 0).
template <class S, int kBits>
void DequantizeTile(const TiledView& w, int64_t tile, float* panel) {
  using F = typename S::F;
  using I = typename S::I;
  constexpr int kRows = layout::RowsPerBlock(kBits);
  constexpr int kV = S::kVectors;
  const I mask = S::SetI(static_cast<int32_t>((1u << kBits) - 1u));
  for (int64_t g = 0; g < w.groups; ++g) {
    const int64_t at = (tile * w.groups + g) * layout::kTileColumns;
    F scale[kV], bias[kV];
    for (int v = 0; v < kV; ++v) {
      scale[v] = S::LoadF(w.scale + at + v * S::kLanes);
      bias[v] = S::LoadF(w.bias + at + v * S::kLanes);
    }
    for (int64_t block = w.group_blocks[g]; block < w.group_blocks[g + 1]; ++block) {
      const uint8_t* codes = w.codes + (tile * w.blocks + block) * layout::kBlockBytes;
      float* rows = panel + block * kRows * layout::kTileColumns;
      for (int v = 0; v < kV; ++v) {
        const I lanes = S::LoadI(codes + v * S::kLanes * layout::kLaneBytes);
        for (int r = 0; r < kRows; ++r) {
          const F q = S::Cvt(S::And(S::Srl(lanes, layout::RowShift(kBits, r)), mask));
          S::StoreF(rows + r * layout::kTileColumns + v * S::kLanes, S::Fma(q, scale[v], bias[v]), S::kLanes);
        }
      }
    }
  }
}

// kTokens tokens × one dequantized tile (DequantizeTile): one FMA per weight and token as in
// ExactTile, without the decode, with the panel read from L1/L2 once per kTokens tokens.
template <class S, int kTokens>
void PanelTile(const TiledView& w, int64_t tile, const float* panel, const FloatActView& a, int64_t t0, float* y) {
  using F = typename S::F;
  constexpr int kV = S::kVectors;
  const float* x = a.x + t0 * w.padded_inputs;  // this call's block (FloatActView): kTokens wide
  F acc[kTokens][kV];
  for (int t = 0; t < kTokens; ++t)
    for (int v = 0; v < kV; ++v) acc[t][v] = S::ZeroF();
  for (int64_t j = 0; j < w.padded_inputs; ++j, x += kTokens) {
    F row[kV];
    for (int v = 0; v < kV; ++v) row[v] = S::LoadF(panel + j * layout::kTileColumns + v * S::kLanes);
    for (int t = 0; t < kTokens; ++t)
      for (int v = 0; v < kV; ++v) acc[t][v] = S::Fma(row[v], S::SetF(x[t]), acc[t][v]);
  }
  const int64_t columns = MinI64(layout::kTileColumns, w.out_features - tile * layout::kTileColumns);
  for (int t = 0; t < kTokens; ++t)
    StoreTile<S>(acc[t], y + (t0 + t) * w.out_features + tile * layout::kTileColumns, columns);
}

template <class S, int kTokens = S::kPanelTokens>
void PanelTokens(const TiledView& w, int64_t tile, const float* panel, const FloatActView& a, int64_t t0,
                 int64_t tokens, float* y) {
  if constexpr (kTokens > 0) {
    for (; tokens >= kTokens; tokens -= kTokens, t0 += kTokens) PanelTile<S, kTokens>(w, tile, panel, a, t0, y);
    PanelTokens<S, kTokens - 1>(w, tile, panel, a, t0, tokens, y);
  }
}

// kTokens tokens × one tile of the int8 path: per group, exact int32 sums Σ q·a, minus
// zero · Σ a, then scaled and added in fp32; the token's activation scale is applied last.
// With few tokens the dot products rotate over kChains sums (fields, then blocks taken kStep at
// a time), for the same reason as the fp32 kernel's chains.
template <class S, int kBits, int kTokens>
void Int8Tile(const TiledView& w, int64_t tile, const Int8ActView& a, int64_t t0, float* y) {
  using F = typename S::F;
  using I = typename S::I;
  using W = typename S::W;
  constexpr int kFields = layout::FieldsPerByte(kBits);
  constexpr int kV = S::kVectors;
  constexpr int kChains = kTokens * kV >= 4 ? 1 : 4 / (kTokens * kV);
  constexpr int kStep = kChains > kFields ? kChains / kFields : 1;
  const I mask = S::SetI(FieldMask(kBits));
  const int64_t quads_per_token = w.padded_inputs / layout::kLaneBytes;
  F acc[kTokens][kV];
  for (int t = 0; t < kTokens; ++t)
    for (int v = 0; v < kV; ++v) acc[t][v] = S::ZeroF();
  I sums[kChains][kTokens][kV];
  const auto accumulate_block = [&]<int kSub>(int64_t block) {
    const uint8_t* codes = w.codes + (tile * w.blocks + block) * layout::kBlockBytes;
    PrefetchCodes(codes);
    I lanes[kV];
    for (int v = 0; v < kV; ++v) lanes[v] = S::LoadI(codes + v * S::kLanes * layout::kLaneBytes);
#pragma GCC unroll 4
    for (int f = 0; f < kFields; ++f) {
      W weights[kV];
      for (int v = 0; v < kV; ++v)
        weights[v] = S::Prep(kBits == 8 ? lanes[v] : S::And(S::Srl(lanes[v], f * kBits), mask));
      const int64_t quad = block * kFields + f;
      const int chain = (kSub * kFields + f) % kChains;
      for (int t = 0; t < kTokens; ++t) {
        const int64_t token = t0 + t;
        const int64_t at = token * quads_per_token + quad;
        const int32_t* pairs = a.pairs + at * 2;
        for (int v = 0; v < kV; ++v)
          sums[chain][t][v] = S::Dot(sums[chain][t][v], weights[v], a.quads[at], pairs[0], pairs[1]);
      }
    }
  };
  for (int64_t g = 0; g < w.groups; ++g) {
    const int64_t b0 = w.group_blocks[g], b1 = w.group_blocks[g + 1];
    if (b0 == b1) continue;
    for (int c = 0; c < kChains; ++c)
      for (int t = 0; t < kTokens; ++t)
        for (int v = 0; v < kV; ++v) sums[c][t][v] = S::ZeroI();
    int64_t block = b0;
    for (; block + kStep <= b1; block += kStep)
      [&]<int... kSub>(std::integer_sequence<int, kSub...>) {
        (accumulate_block.template operator()<kSub>(block + kSub), ...);
      }(std::make_integer_sequence<int, kStep>());
    for (; block < b1; ++block) accumulate_block.template operator()<0>(block);
    const int64_t at = (tile * w.groups + g) * layout::kTileColumns;
    for (int v = 0; v < kV; ++v) {
      const F s = S::LoadF(w.scale + at + v * S::kLanes);
      const I zero = S::LoadI(reinterpret_cast<const uint8_t*>(w.zero + at + v * S::kLanes));
      for (int t = 0; t < kTokens; ++t) {
        I total = sums[0][t][v];
        for (int c = 1; c < kChains; ++c) total = S::Add(total, sums[c][t][v]);
        const I exact = S::Sub(total, S::Mul(zero, S::SetI(a.group_sum[(t0 + t) * w.groups + g])));
        acc[t][v] = S::Fma(S::Cvt(exact), s, acc[t][v]);
      }
    }
  }
  const int64_t columns = MinI64(layout::kTileColumns, w.out_features - tile * layout::kTileColumns);
  for (int t = 0; t < kTokens; ++t) {
    const F scale = S::SetF(a.scale[t0 + t]);
    for (int v = 0; v < kV; ++v) acc[t][v] = S::MulF(acc[t][v], scale);
    StoreTile<S>(acc[t], y + (t0 + t) * w.out_features + tile * layout::kTileColumns, columns);
  }
}

// Token blocks of up to S::kMaxExactTokens / kMaxInt8Tokens (what the registers hold), the remainder with the matching smaller instantiation.
template <class S, int kBits, int kTokens = S::kMaxExactTokens>
void ExactTokens(const TiledView& w, int64_t tile, const FloatActView& a, int64_t t0, int64_t tokens, float* y) {
  if constexpr (kTokens > 0) {
    for (; tokens >= kTokens; tokens -= kTokens, t0 += kTokens) ExactTile<S, kBits, kTokens>(w, tile, a, t0, y);
    ExactTokens<S, kBits, kTokens - 1>(w, tile, a, t0, tokens, y);
  }
}

template <class S, int kBits, int kTokens = S::kMaxInt8Tokens>
void Int8Tokens(const TiledView& w, int64_t tile, const Int8ActView& a, int64_t t0, int64_t tokens, float* y) {
  if constexpr (kTokens > 0) {
    for (; tokens >= kTokens; tokens -= kTokens, t0 += kTokens) Int8Tile<S, kBits, kTokens>(w, tile, a, t0, y);
    Int8Tokens<S, kBits, kTokens - 1>(w, tile, a, t0, tokens, y);
  }
}

// fn.template operator()<container bits>(tile) for tiles [tile_begin, tile_end).
template <class Fn>
void ForTilesByWidth(const TiledView& w, int64_t tile_begin, int64_t tile_end, const Fn& fn) {
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    switch (layout::ContainerBits(w.bits)) {
      case 2: fn.template operator()<2>(tile); break;
      case 4: fn.template operator()<4>(tile); break;
      default: fn.template operator()<8>(tile); break;
    }
  }
}

// Activations up to this size stay in L2 (2 MB a core on the machines here) beside a tile's codes.
inline constexpr int64_t kL2ActivationBytes = int64_t{1} << 20;

// Without panels: while all tokens' activations fit in L2, tiles outer, so each tile's codes are
// read once for every token; past that, token blocks outer and tiles inner, so one block's
// activations (786 KB at 16 tokens × 12288 inputs) stay in L2 across the tiles, where tiles outer
// would read every token's (25 MB at 512 tokens) from memory once per tile. Token blocks outer
// at 16 tokens, on AVX2 (3 tokens a block), read the codes 6 times and were 40 % slower
// (docs/kernels.md, "Token blocks outer").
template <class S>
void ExactTiles(const TiledView& w, const FloatActView& a, int64_t tokens, float* y, int64_t tile_begin,
                int64_t tile_end, float* panel) {
  const bool panels = S::kPanelTokens != 0 && panel != nullptr;
  if (!panels && tokens * w.padded_inputs * static_cast<int64_t>(sizeof(float)) > kL2ActivationBytes) {
    for (int64_t t0 = 0; t0 < tokens; t0 += S::kMaxExactTokens)
      ForTilesByWidth(w, tile_begin, tile_end, [&]<int kBits>(int64_t tile) {
        ExactTokens<S, kBits>(w, tile, a, t0, MinI64(S::kMaxExactTokens, tokens - t0), y);
      });
    return;
  }
  ForTilesByWidth(w, tile_begin, tile_end, [&]<int kBits>(int64_t tile) {
    if (!panels) {
      ExactTokens<S, kBits>(w, tile, a, 0, tokens, y);
      return;
    }
    DequantizeTile<S, kBits>(w, tile, panel);
    PanelTokens<S>(w, tile, panel, a, 0, tokens, y);
  });
}

template <class S>
void Int8Tiles(const TiledView& w, const Int8ActView& a, int64_t tokens, float* y, int64_t tile_begin,
               int64_t tile_end) {
  ForTilesByWidth(w, tile_begin, tile_end,
                  [&]<int kBits>(int64_t tile) { Int8Tokens<S, kBits>(w, tile, a, 0, tokens, y); });
}

}  // namespace
}  // namespace qshard::kernels::internal
