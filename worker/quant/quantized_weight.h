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
  // FlattenQuant (docs/flattenquant.md): the layer input each column reads, non-decreasing from
  // 0 and covering every layer input. An input read by k columns is split into k equal parts
  // x/k (so its weight column is repeated k times). Empty: column c reads input c.
  std::vector<int32_t> input_channel;
  // Activations quantized per tensor to act_bits (4 or 8) with step act_scale; 0: float.
  int act_bits = 0;
  float act_scale = 0.0f;

  int64_t groups() const { return scales.rank() == 2 ? scales.dim(0) : 0; }
  // Shapes and ranges consistent; the error names the field at fault.
  absl::Status Validate() const;
  float Dequantize(int64_t row, int64_t col) const;
  Tensor Dequantized() const;  // [rows, cols]
  int64_t layer_cols() const;  // in_features of the layer: cols less the split copies
  // The layer weight [rows, layer_cols()] this stands for under float activations:
  // Dequantized() with the columns of each split input summed and divided by their number.
  Tensor LayerWeight() const;
};

// OK when input_channel holds `cols` values, non-decreasing from 0 by steps of 0 or 1.
absl::Status ValidateInputChannels(const std::vector<int32_t>& input_channel, int64_t cols);

// How many columns read each layer input, for an input_channel map (non-decreasing from 0).
std::vector<int32_t> CopiesPerChannel(const std::vector<int32_t>& input_channel);

}  // namespace qshard
