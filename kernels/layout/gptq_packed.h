// The one definition of the packed GPTQ layout (AutoGPTQ, "v1" zero points) of a linear layer
// y = x · Wᵀ, W[out, in]: the packer (worker/quant/gptq_pack), the CPU kernels (kernels/cpu) and
// the CUDA kernels and their host check (kernels/cuda) all index the tensors through this file.
// Plain C++ with no dependencies so that nvcc and the CUDA-only build include it as it is.
//
//   qweight int32 [in · bits / 32, out]  column o is a little-endian bit stream of the codes
//           q(i, o), i = 0 .. in-1, `bits` bits each: code i starts at stream bit i · bits, so
//           3-bit codes straddle words (32 codes per 3 words); stream word w is qweight[w, o].
//   qzeros  int32 [groups, out · bits / 32]  row g is one bit stream of the zero points of all
//           outputs, stored as zero − 1 ("v1"): stored value o starts at stream bit o · bits.
//   scales  fp16  [groups, out]
//   g_idx   int32 [in]  group of each input (i / group_size unless act-order permuted it).
//   W[o, i] = scales[g, o] · (q(i, o) − (stored_zero(g, o) + 1)),  g = g_idx[i].
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QSHARD_LAYOUT_FN __host__ __device__ __forceinline__ constexpr
#else
#define QSHARD_LAYOUT_FN inline constexpr
#endif

namespace qshard::layout {

// Loaders add this to the stored zero point (v1 stores zero − 1).
inline constexpr int kGptqZeroOffset = 1;
inline constexpr int kGptqWordBits = 32;

QSHARD_LAYOUT_FN bool IsGptqBits(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }
// The widths the CUDA fused kernels read (kernels/cuda/gptq_layout.h), here so that code built
// without CUDA can refuse what the device would (a job validating on a device, before it starts).
// Widths that do not divide 32 (3 bits) pack across words and would need their own unpacking.
QSHARD_LAYOUT_FN bool IsCudaKernelGptqBits(int bits) { return bits == 4 || bits == 8; }

// Codes whose bits exactly fill whole words: 32 / gcd(32, bits) codes in bits / gcd words.
QSHARD_LAYOUT_FN int GptqUnitCodes(int bits) { return bits == 3 ? 32 : kGptqWordBits / bits; }
QSHARD_LAYOUT_FN int GptqUnitWords(int bits) { return bits == 3 ? 3 : 1; }
// Codes per word for the widths whose codes never straddle words (2, 4, 8 bits).
QSHARD_LAYOUT_FN int GptqCodesPerWord(int bits) { return kGptqWordBits / bits; }
QSHARD_LAYOUT_FN uint32_t GptqCodeMask(int bits) { return (1u << bits) - 1u; }

// Tensor shapes. Valid only for shapes that GptqShapeFits accepts.
QSHARD_LAYOUT_FN int64_t GptqQweightRows(int64_t in_features, int bits) { return in_features * bits / kGptqWordBits; }
QSHARD_LAYOUT_FN int64_t GptqQzerosCols(int64_t out_features, int bits) { return out_features * bits / kGptqWordBits; }
QSHARD_LAYOUT_FN bool GptqShapeFits(int bits, int64_t in_features, int64_t out_features) {
  return IsGptqBits(bits) && in_features > 0 && out_features > 0 && in_features % GptqUnitCodes(bits) == 0 &&
         out_features % GptqUnitCodes(bits) == 0;
}

// Value `index` of a bit stream of `bits`-bit values whose word w is words[w · stride].
QSHARD_LAYOUT_FN uint32_t GptqReadBits(const uint32_t* words, int64_t stride, int64_t index, int bits) {
  const int64_t bit = index * bits;
  const int64_t word = bit / kGptqWordBits;
  const int shift = static_cast<int>(bit % kGptqWordBits);
  uint32_t value = words[word * stride] >> shift;
  if (shift + bits > kGptqWordBits) value |= words[(word + 1) * stride] << (kGptqWordBits - shift);
  return value & GptqCodeMask(bits);
}
// ORs `value` into a zero-initialised stream at `index`.
QSHARD_LAYOUT_FN void GptqWriteBits(uint32_t* words, int64_t stride, int64_t index, int bits, uint32_t value) {
  const int64_t bit = index * bits;
  const int64_t word = bit / kGptqWordBits;
  const int shift = static_cast<int>(bit % kGptqWordBits);
  words[word * stride] |= value << shift;
  if (shift + bits > kGptqWordBits) words[(word + 1) * stride] |= value >> (kGptqWordBits - shift);
}

// Host pointers to one layer's four tensors (int32 words read as uint32, fp16 as bit patterns).
struct GptqPackedView {
  const uint32_t* qweight = nullptr;
  const uint32_t* qzeros = nullptr;
  const uint16_t* scales = nullptr;
  const int32_t* g_idx = nullptr;
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t groups = 0;
  int bits = 0;

  QSHARD_LAYOUT_FN uint32_t Code(int64_t i, int64_t o) const {
    return GptqReadBits(qweight + o, out_features, i, bits);
  }
  // The true zero point: stored + 1, so in [1, 2^bits].
  QSHARD_LAYOUT_FN int32_t Zero(int64_t group, int64_t o) const {
    return static_cast<int32_t>(GptqReadBits(qzeros + group * GptqQzerosCols(out_features, bits), 1, o, bits)) +
           kGptqZeroOffset;
  }
  QSHARD_LAYOUT_FN uint16_t ScaleBits(int64_t group, int64_t o) const { return scales[group * out_features + o]; }

  // Over tensors stored as checkpoints hold them (int32 words; int32 and uint32 may alias).
  static GptqPackedView Of(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales, const int32_t* g_idx,
                           int64_t in_features, int64_t out_features, int64_t groups, int bits) {
    return {reinterpret_cast<const uint32_t*>(qweight), reinterpret_cast<const uint32_t*>(qzeros), scales, g_idx,
            in_features, out_features, groups, bits};
  }
};

// The smallest whole-word unit of each width, as a block struct (cf. ggml-common.h): the packer
// and the kernels step through qweight columns and qzeros rows in these units.
template <int kBits>
struct GptqUnit {
  static constexpr int kCodes = GptqUnitCodes(kBits);
  uint32_t words[GptqUnitWords(kBits)];
};
static_assert(sizeof(GptqUnit<2>) == 4 && GptqUnit<2>::kCodes == 16, "16 2-bit codes per word");
static_assert(sizeof(GptqUnit<3>) == 12 && GptqUnit<3>::kCodes == 32, "32 3-bit codes per 3 words");
static_assert(sizeof(GptqUnit<4>) == 4 && GptqUnit<4>::kCodes == 8, "8 4-bit codes per word");
static_assert(sizeof(GptqUnit<8>) == 4 && GptqUnit<8>::kCodes == 4, "4 8-bit codes per word");
static_assert(GptqQweightRows(4096, 4) == 512 && GptqQzerosCols(4096, 3) == 384, "rows of whole words");
static_assert(sizeof(uint16_t) == 2, "scales are fp16 bit patterns");

}  // namespace qshard::layout
