// The W8A8 weight layout (CUDA, cuBLASLt int8): a linear layer y = x · Wᵀ, W[out, in], stored
// as symmetric int8 codes with one fp32 scale per output channel, W[o, i] ≈ scales[o] · codes[o, i],
// made once at load time from float weights by the rule of int8_symmetric.h, or converted
// exactly from a GPTQ layer that already has that form (8 bits, one group, every q − zero in
// int8's range: what --bits 8 --sym --group-size -1 writes).
//
//   codes   int8 [out_padded, in_padded]  row-major (row o holds output o's inputs), zero padding
//   scales  fp32 [out_padded]             1 in the padding rows
// Both widths are padded to multiples of kInt8PaddedMultiple: cuBLASLt's int8 (IMMA) kernels on
// the regular (non-COL32) ordering need m, k and every leading dimension to be multiples of 4
// and 4-byte aligned pointers; 16 elements make every row start 16-byte aligned, which its
// faster kernels want, for at most 15 zero columns and rows.
#pragma once

#include <cstdint>

#include "kernels/layout/gptq_packed.h"
#include "kernels/layout/int8_symmetric.h"

namespace qshard::layout {

inline constexpr int64_t kInt8PaddedMultiple = 16;

QSHARD_INT8_FN constexpr int64_t Int8PaddedWidth(int64_t width) {
  return (width + kInt8PaddedMultiple - 1) / kInt8PaddedMultiple * kInt8PaddedMultiple;
}
static_assert(Int8PaddedWidth(1) == 16 && Int8PaddedWidth(16) == 16 && Int8PaddedWidth(4100) == 4112,
              "widths round up to whole multiples of 16");

// weight: row-major float [out, in]; codes: [Int8PaddedWidth(out), Int8PaddedWidth(in)],
// scales: [Int8PaddedWidth(out)], both written entirely (padding included).
inline void QuantizeWeightsPerChannelInt8(const float* weight, int64_t in, int64_t out, int8_t* codes, float* scales) {
  const int64_t in_padded = Int8PaddedWidth(in);
  const int64_t out_padded = Int8PaddedWidth(out);
  for (int64_t o = 0; o < out_padded; ++o) {
    int8_t* row = codes + o * in_padded;
    const float* source = weight + o * in;
    scales[o] = o < out ? QuantizeRowSymmetricInt8([source](int64_t i) { return source[i]; }, in, row) : 1.0f;
    for (int64_t i = o < out ? in : 0; i < in_padded; ++i) row[i] = 0;
  }
}

// The exact conversion of a GPTQ layer: codes[o, i] = q(i, o) − zero(o), scales[o] = the fp16
// scale as fp32, so scales[o] · codes[o, i] is the checkpoint's dequantized weight exactly.
// `half_to_float(uint16_t bits)` converts the scales (this header has no fp16 code of its own:
// core/dtype.h's on the CPU, cuda_fp16.h's in the CUDA build). Returns nullptr, or why the
// layer has no such form (then codes and scales are unspecified).
template <typename HalfToFloat>
const char* Int8WeightsFromGptq(const GptqPackedView& w, HalfToFloat half_to_float, int8_t* codes, float* scales) {
  if (w.bits != 8) return "W8A8 from GPTQ needs 8-bit codes";
  if (w.groups != 1) return "W8A8 from GPTQ needs one group per output channel (--group-size -1)";
  const int64_t in_padded = Int8PaddedWidth(w.in_features);
  const int64_t out_padded = Int8PaddedWidth(w.out_features);
  for (int64_t o = 0; o < out_padded; ++o) {
    int8_t* row = codes + o * in_padded;
    for (int64_t i = 0; i < in_padded; ++i) row[i] = 0;
    if (o >= w.out_features) {
      scales[o] = 1.0f;
      continue;
    }
    const int32_t zero = w.Zero(0, o);
    for (int64_t i = 0; i < w.in_features; ++i) {
      const int32_t code = static_cast<int32_t>(w.Code(i, o)) - zero;
      if (code < -128 || code > 127) return "a GPTQ code minus its zero point is outside int8 (asymmetric grid)";
      row[i] = static_cast<int8_t>(code);
    }
    scales[o] = half_to_float(w.ScaleBits(0, o));
  }
  return nullptr;
}

}  // namespace qshard::layout
