// Uniform affine quantization grids with the semantics of GPTQ's `Quantizer` (anchors.md
// §1.1): code q ∈ [0, 2^bits − 1] stands for scale·(q − zero). Fits one grid per weight row
// (min-max, optionally MSE-clipped) and quantizes values onto it.
//
// Rounding is half to even (std::nearbyint in the default rounding mode, like torch.round),
// not half away from zero (std::round): 2.5 → 2, 3.5 → 4, −2.5 → −2.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/status/status.h"

namespace qshard {

struct GridOptions {
  int bits = 4;      // 2..8
  bool sym = false;  // symmetric: zero fixed at (maxq + 1) / 2
  // GPTQ's --mse: try ranges shrunk by p = 1 − i/grid, i < max_shrink·grid, and keep the one
  // with the lowest Σ|q(x) − x|^norm per row.
  bool mse_clip = false;
  double mse_norm = 2.4;
  int mse_grid = 100;
  double mse_max_shrink = 0.8;
  // Checkpoints store scales as fp16: fit with the fp16-rounded scale so the grid the solver
  // quantizes onto is exactly the one a loader reproduces.
  bool fp16_scales = true;
  // GPTQ v1 checkpoints store zero − 1, and loaders add 1 without wrapping, so an asymmetric
  // zero point of 0 cannot be stored. With this on, a range that would round to zero = 0 is
  // refitted as zero = 1, scale = xmax / (maxq − 1): the same range, one code fewer.
  bool nonzero_zero_point = true;
};

absl::Status ValidateGridOptions(const GridOptions& options);

inline int32_t MaxCode(int bits) { return (1 << bits) - 1; }

// clamp(round_half_even(x / step) + zero, 0, max_code).
inline int32_t QuantizeToCode(float x, float step, int32_t zero, int32_t max_code) {
  const float q = std::nearbyint(x / step) + static_cast<float>(zero);
  return static_cast<int32_t>(std::clamp(q, 0.0f, static_cast<float>(max_code)));
}

// The one definition of a code's value, shared by solvers, unpackers and Z-Fold's column
// multipliers (step = scale · ζ_column).
inline float DequantizeCode(int32_t code, float step, int32_t zero) {
  return step * static_cast<float>(code - zero);
}

// A single row's grid.
struct AffineGrid {
  float scale = 1.0f;
  int32_t zero = 0;
};

// The fp16 value nearest to a positive scale (round to nearest even), never 0: scales below
// the smallest fp16 subnormal (2^-24) become 2^-24, so x / scale stays finite. Scales above
// 65504 are the caller's error (weights are validated to fit fp16 first).
float RoundScaleToFp16(float scale);

// find_params' range adjustments of [xmin, xmax] (xmin ≤ 0 ≤ xmax): mirrored when
// symmetric, ±1 for an all-zero row.
void NormalizeRange(const GridOptions& options, float& xmin, float& xmax);

// How an asymmetric grid's zero point −xmin/scale becomes an integer: GPTQ rounds it to the
// nearest; Z-Fold's search also tries rounding down and up.
enum class ZeroRounding { kNearest, kFloor, kCeil };

// The storable grid (fp16 scale, zero ≥ 1 when required) for a range NormalizeRange has
// adjusted, or a clipped copy of one.
AffineGrid GridForNormalizedRange(float xmin, float xmax, const GridOptions& options, ZeroRounding rounding);

// The grid for the range [xmin, xmax] (xmin ≤ 0 ≤ xmax, as find_params makes it).
AffineGrid GridForRange(float xmin, float xmax, const GridOptions& options);

// Fits one grid per row for `rows` rows of `count` values each; value k of row r is
// values[k * stride + r], i.e. the rows are contiguous for each k — the layout of a block of
// input columns of a weight stored transposed ([in, out]). scales, zeros: [rows].
void FitGrids(const GridOptions& options, const float* values, int64_t rows, int64_t count,
              int64_t stride, float* scales, int32_t* zeros);

// FitGrids for a single row of `count` contiguous values.
AffineGrid FitGrid(const GridOptions& options, const float* values, int64_t count);

// Grids for every group of `group_size` consecutive input columns of a transposed weight
// wt[in, out] (the last group may be shorter); group_size ≤ 0 means one group (per channel).
// Group g's grids go to scales/zeros + g · grid_stride (grid_stride ≥ out: the grids of a
// block of rows inside a [groups, all_rows] table).
void FitGroupGrids(const GridOptions& options, const float* wt, int64_t in, int64_t out,
                   int64_t group_size, float* scales, int32_t* zeros, int64_t grid_stride);

// Quantizes x[i] onto grid (scales[i] · step_multiplier, zeros[i]) for i < n; writes the codes
// and their values. step_multiplier is Z-Fold's ζ of the column (1 for plain grids).
void QuantizeToGrids(const float* x, int64_t n, const float* scales, const int32_t* zeros,
                     float step_multiplier, int32_t max_code, int32_t* codes, float* values);

}  // namespace qshard
