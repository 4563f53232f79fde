// The integer form of one quantized linear weight W[out, in]: codes plus the grids they index.
// Solvers produce it, the GPTQ packer (gptq_pack.h) stores it and unpacks it back, and
// Dequantized() is the single definition of the real-valued weight it stands for.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "core/tensor.h"

namespace qshard {

struct QuantizedWeight {
  int bits = 0;
  int64_t rows = 0;  // out_features
  int64_t cols = 0;  // in_features
  std::vector<int32_t> codes;  // [rows, cols], each in [0, 2^bits − 1]
  Tensor scales;               // [groups, rows]
  // [groups, rows], true zero points in [0, 2^bits]; 2^bits only arises from unpacking a v1
  // checkpoint whose stored zero − 1 is 2^bits − 1 (loaders add 1 without wrapping).
  std::vector<int32_t> zeros;
  std::vector<int32_t> g_idx;  // [cols]: the group (row of scales/zeros) of each input column
  // Z-Fold's per-input-column step multipliers ζ [cols]: step(r, c) = scales[g_idx[c], r] · ζ[c].
  // Empty means 1. Not part of the GPTQ layout: ζ is folded into the producer before export.
  std::vector<float> column_scale;

  int64_t groups() const { return scales.rank() == 2 ? scales.dim(0) : 0; }
  // Shapes and ranges consistent; the error names the field at fault.
  absl::Status Validate() const;
  float Dequantize(int64_t row, int64_t col) const;
  Tensor Dequantized() const;  // [rows, cols]
};

}  // namespace qshard
