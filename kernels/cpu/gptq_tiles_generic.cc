// The tiled kernels in portable scalar C++ (one "lane" per output): the fallback for CPUs
// without AVX2, and the same arithmetic as the SIMD units one lane at a time.
#include <cstdint>

#include "kernels/cpu/gptq_kernel_args.h"
#include "kernels/cpu/gptq_tile_kernels.h"

namespace qshard::kernels::internal {
namespace {

struct Scalar {
  using F = float;
  using I = int32_t;
  using W = int32_t;
  static constexpr int kLanes = 1;
  static constexpr int kVectors = layout::kTileColumns;
  static constexpr int kMaxExactTokens = kExactTokensGeneric;
  static constexpr int kPanelTokens = 0;
  static constexpr int kMaxInt8Tokens = 4;
  static I LoadI(const uint8_t* p) {
    I v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
  }
  static I SetI(int32_t v) { return v; }
  static I ZeroI() { return 0; }
  static I And(I a, I b) { return a & b; }
  static I Srl(I a, int n) { return static_cast<I>(static_cast<uint32_t>(a) >> n); }
  static I Add(I a, I b) { return a + b; }
  static I Sub(I a, I b) { return a - b; }
  static I Mul(I a, I b) { return a * b; }
  static F Cvt(I a) { return static_cast<F>(a); }
  static F ZeroF() { return 0.0f; }
  static F SetF(float v) { return v; }
  static F LoadF(const float* p) { return *p; }
  static F Fma(F a, F b, F c) { return a * b + c; }
  static F AddF(F a, F b) { return a + b; }
  static F MulF(F a, F b) { return a * b; }
  static void StoreF(float* p, F v, int) { *p = v; }
  static W Prep(I w) { return w; }
  static I Dot(I acc, W w, int32_t packed, int32_t, int32_t) {
    for (int k = 0; k < 4; ++k)
      acc += static_cast<int32_t>((static_cast<uint32_t>(w) >> (8 * k)) & 0xffu) *
             static_cast<int8_t>(static_cast<uint32_t>(packed) >> (8 * k));
    return acc;
  }
};

}  // namespace

void ExactTilesGeneric(const TiledView& w, const FloatActView& a, int64_t tokens, float* y, int64_t tile_begin,
                       int64_t tile_end, float* panel) {
  ExactTiles<Scalar>(w, a, tokens, y, tile_begin, tile_end, panel);
}

void Int8TilesGeneric(const TiledView& w, const Int8ActView& a, int64_t tokens, float* y, int64_t tile_begin,
                      int64_t tile_end) {
  Int8Tiles<Scalar>(w, a, tokens, y, tile_begin, tile_end);
}

}  // namespace qshard::kernels::internal
