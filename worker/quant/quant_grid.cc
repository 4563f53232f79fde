#include "worker/quant/quant_grid.h"

#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/dtype.h"

namespace qshard {
namespace {

constexpr float kSmallestFp16 = 5.9604644775390625e-8f;  // 2^-24, the smallest subnormal
constexpr float kLargestFp16 = 65504.0f;

float StoredScale(const GridOptions& options, float scale) {
  return options.fp16_scales ? RoundScaleToFp16(scale) : scale;
}

}  // namespace

// The reference mirrors only rows with xmin < 0, so an all-nonnegative row keeps [0, xmax]
// with the middle zero point and loses its top half to clipping; every row is mirrored here
// (as anchors.md §1.1 states the rule).
void NormalizeRange(const GridOptions& options, float& xmin, float& xmax) {
  if (options.sym) {
    xmax = std::max(-xmin, xmax);
    xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
}

absl::Status ValidateGridOptions(const GridOptions& options) {
  if (options.bits < 2 || options.bits > 8)
    return absl::InvalidArgumentError(absl::StrCat("bits: ", options.bits, " is outside 2..8"));
  if (options.mse_clip) {
    if (!(options.mse_norm > 0.0))
      return absl::InvalidArgumentError(absl::StrCat("mse_norm: ", options.mse_norm, " must be > 0"));
    if (options.mse_grid < 1)
      return absl::InvalidArgumentError(absl::StrCat("mse_grid: ", options.mse_grid, " must be >= 1"));
    if (!(options.mse_max_shrink > 0.0 && options.mse_max_shrink < 1.0))
      return absl::InvalidArgumentError(
          absl::StrCat("mse_max_shrink: ", options.mse_max_shrink, " must be in (0, 1)"));
  }
  return absl::OkStatus();
}

float RoundScaleToFp16(float scale) {
  const float rounded = HalfToFloat(FloatToHalf(scale));
  if (!(rounded > 0.0f)) return kSmallestFp16;
  return std::min(rounded, kLargestFp16);
}

AffineGrid GridForNormalizedRange(float xmin, float xmax, const GridOptions& options, ZeroRounding rounding) {
  const int32_t max_code = MaxCode(options.bits);
  AffineGrid grid;
  grid.scale = StoredScale(options, (xmax - xmin) / static_cast<float>(max_code));
  if (options.sym) {
    grid.zero = (max_code + 1) / 2;
    return grid;
  }
  const float unrounded = -xmin / grid.scale;
  const float zero = rounding == ZeroRounding::kNearest ? std::nearbyint(unrounded)
                     : rounding == ZeroRounding::kFloor ? std::floor(unrounded)
                                                        : std::ceil(unrounded);
  grid.zero = static_cast<int32_t>(std::clamp(zero, 0.0f, static_cast<float>(max_code)));
  if (grid.zero == 0 && options.nonzero_zero_point) {
    // −xmin < scale/2 here, so [−scale', (maxq−1)·scale'] still covers [xmin, xmax].
    grid.scale = StoredScale(options, xmax / static_cast<float>(max_code - 1));
    grid.zero = 1;
  }
  return grid;
}

AffineGrid GridForRange(float xmin, float xmax, const GridOptions& options) {
  NormalizeRange(options, xmin, xmax);
  return GridForNormalizedRange(xmin, xmax, options, ZeroRounding::kNearest);
}

void FitGrids(const GridOptions& options, const float* values, int64_t rows, int64_t count,
              int64_t stride, float* scales, int32_t* zeros) {
  // find_params: xmin = min(min w, 0), xmax = max(max w, 0).
  std::vector<float> xmin(rows, 0.0f), xmax(rows, 0.0f);
  for (int64_t k = 0; k < count; ++k) {
    const float* v = values + k * stride;
    for (int64_t r = 0; r < rows; ++r) {
      xmin[r] = std::min(xmin[r], v[r]);
      xmax[r] = std::max(xmax[r], v[r]);
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    NormalizeRange(options, xmin[r], xmax[r]);
    const AffineGrid grid = GridForRange(xmin[r], xmax[r], options);
    scales[r] = grid.scale;
    zeros[r] = grid.zero;
  }
  if (!options.mse_clip) return;

  // Candidate i = 0 is the min-max grid itself, and only a strictly lower error replaces the
  // incumbent, so the search is never worse than min-max in its own norm.
  const int32_t max_code = MaxCode(options.bits);
  const float norm = static_cast<float>(options.mse_norm);
  const int candidates = static_cast<int>(options.mse_max_shrink * options.mse_grid);
  std::vector<double> best(rows, std::numeric_limits<double>::infinity()), err(rows);
  std::vector<AffineGrid> trial(rows);
  for (int i = 0; i < candidates; ++i) {
    const float p = static_cast<float>(1.0 - static_cast<double>(i) / options.mse_grid);
    for (int64_t r = 0; r < rows; ++r) trial[r] = GridForRange(p * xmin[r], p * xmax[r], options);
    std::fill(err.begin(), err.end(), 0.0);
    for (int64_t k = 0; k < count; ++k) {
      const float* v = values + k * stride;
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t code = QuantizeToCode(v[r], trial[r].scale, trial[r].zero, max_code);
        const float diff = DequantizeCode(code, trial[r].scale, trial[r].zero) - v[r];
        err[r] += std::pow(std::fabs(diff), norm);
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      if (err[r] < best[r]) {
        best[r] = err[r];
        scales[r] = trial[r].scale;
        zeros[r] = trial[r].zero;
      }
    }
  }
}

AffineGrid FitGrid(const GridOptions& options, const float* values, int64_t count) {
  AffineGrid grid;
  FitGrids(options, values, /*rows=*/1, count, /*stride=*/1, &grid.scale, &grid.zero);
  return grid;
}

void FitGroupGrids(const GridOptions& options, const float* wt, int64_t in, int64_t out,
                   int64_t group_size, float* scales, int32_t* zeros, int64_t grid_stride) {
  const int64_t size = group_size > 0 ? group_size : in;
  for (int64_t begin = 0, group = 0; begin < in; begin += size, ++group) {
    FitGrids(options, wt + begin * out, out, std::min(size, in - begin), out,
             scales + group * grid_stride, zeros + group * grid_stride);
  }
}

void QuantizeToGrids(const float* x, int64_t n, const float* scales, const int32_t* zeros,
                     float step_multiplier, int32_t max_code, int32_t* codes, float* values) {
  for (int64_t i = 0; i < n; ++i) {
    const float step = scales[i] * step_multiplier;
    codes[i] = QuantizeToCode(x[i], step, zeros[i], max_code);
    values[i] = DequantizeCode(codes[i], step, zeros[i]);
  }
}

}  // namespace qshard
