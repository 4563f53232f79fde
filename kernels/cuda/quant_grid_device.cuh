// Device versions of worker/quant/quant_grid.h's min-max grids (GPTQ's Quantizer): fp16-rounded
// scales, zero points rounded half to even and kept ≥ 1 for v1 checkpoints, symmetric grids,
// ±1 for all-zero rows, and GPTQ's --mse clipping search. Same float32 operations in the same
// order as the CPU, so both fit the same grid from the same values (the search: see
// MseTerm); internal to the device solver.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace qshard::gpu {

struct DeviceGridParams {
  int max_code = 15;  // 2^bits − 1
  bool sym = false;
  bool fp16_scales = true;
  bool nonzero_zero_point = true;
  // The MSE search (GptqSolveSpec::mse_clip): 0 candidates without it.
  int mse_candidates = 0;
  int mse_grid = 100;
  float mse_norm = 2.4f;  // float, as quant_grid.cc raises to it
};

// a·b rounded once to float32, as the CPU computes it: a float product is exact in float64, so
// this is the IEEE product, and unlike a plain `a * b` nvcc cannot contract it with a following
// addition into an FMA (which would skip the rounding the CPU does).
__device__ __forceinline__ float RoundedProduct(float a, float b) {
  return static_cast<float>(static_cast<double>(a) * static_cast<double>(b));
}

// RoundScaleToFp16: the nearest fp16, never 0 (2^-24 at least), at most 65504.
__device__ __forceinline__ float StoredScale(const DeviceGridParams& p, float scale) {
  if (!p.fp16_scales) return scale;
  const float rounded = __half2float(__float2half_rn(scale));
  if (!(rounded > 0.0f)) return 5.9604644775390625e-8f;
  return fminf(rounded, 65504.0f);
}

// NormalizeRange: mirrored when symmetric, ±1 for an all-zero range.
__device__ __forceinline__ void NormalizeRange(const DeviceGridParams& p, float& xmin, float& xmax) {
  if (p.sym) {
    xmax = fmaxf(-xmin, xmax);
    xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
}

// GridForRange for a range [xmin, xmax] with xmin ≤ 0 ≤ xmax.
__device__ __forceinline__ void GridForRange(const DeviceGridParams& p, float xmin, float xmax, float& scale,
                                             int32_t& zero) {
  NormalizeRange(p, xmin, xmax);
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

// The MSE search's shrink factor of candidate i, 1 − i/grid in float64 rounded once (quant_grid.cc).
__device__ __forceinline__ float MseShrink(const DeviceGridParams& p, int i) {
  return static_cast<float>(1.0 - static_cast<double>(i) / p.mse_grid);
}

// One value's term |q(x) − x|^norm of the search's error, which the caller sums in float64 in
// column order as the CPU does. Everything before the power is the CPU's float32 arithmetic,
// bit for bit; the power cannot be: the CPU's std::pow(float, float) is glibc's powf, which is
// not correctly rounded, and CUDA's powf has a wider error bound still. The term is the float64
// power rounded to float32 (the correctly rounded powf but within float64 noise of a float32
// tie); glibc's powf differs from it by one float32 ulp on about 6 in 10^4 inputs (measured,
// glibc 2.36, norm 2.4). A candidate's sum then moves by a few 10^-11 of itself, so the device
// and the CPU choose differently only between candidates whose errors are that close; exact
// ties keep the earlier candidate on both (strict <).
__device__ __forceinline__ double MseTerm(const DeviceGridParams& p, float x, float scale, int32_t zero) {
  const int32_t code = QuantizeToCode(x, scale, zero, p.max_code);
  const float diff = RoundedProduct(scale, static_cast<float>(code - zero)) - x;
  return static_cast<double>(static_cast<float>(pow(static_cast<double>(fabsf(diff)), static_cast<double>(p.mse_norm))));
}

}  // namespace qshard::gpu
