// Device versions of worker/quant/quant_grid.h's min-max grids (GPTQ's Quantizer): fp16-rounded
// scales, zero points rounded half to even and kept ≥ 1 for v1 checkpoints, symmetric grids,
// ±1 for all-zero rows. Same float32 operations in the same order as the CPU, so both fit the
// same grid from the same values; internal to the device solver.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace qshard::gpu {

struct DeviceGridParams {
  int max_code = 15;  // 2^bits − 1
  bool sym = false;
  bool fp16_scales = true;
  bool nonzero_zero_point = true;
};

// RoundScaleToFp16: the nearest fp16, never 0 (2^-24 at least), at most 65504.
__device__ __forceinline__ float StoredScale(const DeviceGridParams& p, float scale) {
  if (!p.fp16_scales) return scale;
  const float rounded = __half2float(__float2half_rn(scale));
  if (!(rounded > 0.0f)) return 5.9604644775390625e-8f;
  return fminf(rounded, 65504.0f);
}

// GridForRange for a range [xmin, xmax] with xmin ≤ 0 ≤ xmax.
__device__ __forceinline__ void GridForRange(const DeviceGridParams& p, float xmin, float xmax, float& scale,
                                             int32_t& zero) {
  if (p.sym) {
    xmax = fmaxf(-xmin, xmax);
    xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  scale = StoredScale(p, (xmax - xmin) / static_cast<float>(p.max_code));
  if (p.sym) {
    zero = (p.max_code + 1) / 2;
    return;
  }
  zero = static_cast<int32_t>(fminf(fmaxf(rintf(-xmin / scale), 0.0f), static_cast<float>(p.max_code)));
  if (zero == 0 && p.nonzero_zero_point) {
    scale = StoredScale(p, xmax / static_cast<float>(p.max_code - 1));
    zero = 1;
  }
}

// QuantizeToCode: clamp(round_half_even(x / step) + zero, 0, max_code).
__device__ __forceinline__ int32_t QuantizeToCode(float x, float step, int32_t zero, int32_t max_code) {
  const float q = rintf(x / step) + static_cast<float>(zero);
  return static_cast<int32_t>(fminf(fmaxf(q, 0.0f), static_cast<float>(max_code)));
}

__device__ __forceinline__ float DequantizeCode(int32_t code, float step, int32_t zero) {
  return step * static_cast<float>(code - zero);
}

}  // namespace qshard::gpu
