// Device views of one quantized linear layer in the GPTQ checkpoint layout (defined once in
// kernels/layout/gptq_packed.h), and the shape checks the CUDA kernels share.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "kernels/cuda/cuda_status.h"
#include "kernels/layout/gptq_packed.h"

namespace qshard::gpu {

// Device pointers to one layer y = x · Wᵀ with W[out, in] quantized to `bits` bits, in the
// layout of gptq_packed.h; with 4 or 8 bits, word (r, o) of qweight holds inputs r*P .. r*P+P-1
// of output o, P = layout::GptqCodesPerWord(bits).
struct GptqMatrixView {
  const int32_t* qweight = nullptr;
  const int32_t* qzeros = nullptr;
  const __half* scales = nullptr;
  const int32_t* g_idx = nullptr;
  int in_features = 0;
  int out_features = 0;
  int bits = 0;
  int groups = 0;
};

// Bit widths the kernels read (layout::IsCudaKernelGptqBits, a subset of layout::IsGptqBits).
inline bool IsSupportedGptqBits(int bits) { return layout::IsGptqBits(bits) && layout::IsCudaKernelGptqBits(bits); }

// Checks the shape fields of `w` (not the pointers): a supported width, inputs and outputs that
// fill whole words, outputs in multiples of 4 (each thread reads four columns as one 16-byte
// vector), at least one group, and sizes whose element counts fit in 32-bit indices.
inline CudaStatus ValidateGptqShape(const GptqMatrixView& w) {
  const std::string where = "GPTQ matrix [in " + std::to_string(w.in_features) + ", out " +
                            std::to_string(w.out_features) + ", " + std::to_string(w.bits) +
                            " bits, " + std::to_string(w.groups) + " groups]: ";
  if (!IsSupportedGptqBits(w.bits)) return CudaStatus::Error(where + "bits must be 4 or 8");
  const int pack = layout::GptqCodesPerWord(w.bits);
  if (w.in_features <= 0 || w.out_features <= 0) {
    return CudaStatus::Error(where + "in and out must be positive");
  }
  if (w.in_features % pack != 0) {
    return CudaStatus::Error(where + "in must be a multiple of " + std::to_string(pack) +
                             " (qweight packs that many inputs per int32)");
  }
  if (w.out_features % pack != 0 || w.out_features % 4 != 0) {
    return CudaStatus::Error(where + "out must be a multiple of " + std::to_string(pack < 4 ? 4 : pack) +
                             " (qzeros packing and 16-byte column vectors)");
  }
  if (w.groups <= 0 || w.groups > w.in_features) {
    return CudaStatus::Error(where + "groups must be between 1 and in");
  }
  if (static_cast<int64_t>(w.in_features) * w.out_features > INT32_MAX) {
    return CudaStatus::Error(where + "in * out exceeds 2^31 - 1 elements");
  }
  return CudaStatus();
}

// Checks a host copy of g_idx: every entry must name a group in [0, groups). Loaders call this
// once per layer; the kernels only clamp indices so that a bad entry cannot read out of bounds.
inline CudaStatus ValidateGIdx(const int32_t* g_idx, int in_features, int groups) {
  for (int i = 0; i < in_features; ++i) {
    if (g_idx[i] < 0 || g_idx[i] >= groups) {
      return CudaStatus::Error("g_idx[" + std::to_string(i) + "] = " + std::to_string(g_idx[i]) +
                               " is outside [0, " + std::to_string(groups) + ")");
    }
  }
  return CudaStatus();
}

}  // namespace qshard::gpu
