#include "worker/quant/quantized_weight.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/quant/quant_grid.h"

namespace qshard {

absl::Status QuantizedWeight::Validate() const {
  if (bits < 2 || bits > 8) return absl::InvalidArgumentError(absl::StrCat("bits: ", bits, " is outside 2..8"));
  if (rows <= 0 || cols <= 0)
    return absl::InvalidArgumentError(absl::StrCat("shape [", rows, ",", cols, "] is empty"));
  if (static_cast<int64_t>(codes.size()) != rows * cols)
    return absl::InvalidArgumentError(
        absl::StrCat("codes: ", codes.size(), " values for shape [", rows, ",", cols, "]"));
  if (scales.rank() != 2 || scales.dim(1) != rows || scales.dim(0) < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("scales: shape ", scales.ShapeString(), ", expected [groups,", rows, "]"));
  if (static_cast<int64_t>(zeros.size()) != scales.size())
    return absl::InvalidArgumentError(
        absl::StrCat("zeros: ", zeros.size(), " values, expected ", scales.size()));
  if (static_cast<int64_t>(g_idx.size()) != cols)
    return absl::InvalidArgumentError(absl::StrCat("g_idx: ", g_idx.size(), " values, expected ", cols));
  if (!column_scale.empty() && static_cast<int64_t>(column_scale.size()) != cols)
    return absl::InvalidArgumentError(
        absl::StrCat("column_scale: ", column_scale.size(), " values, expected ", cols));
  const int32_t max_code = MaxCode(bits);
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (codes[i] < 0 || codes[i] > max_code)
      return absl::InvalidArgumentError(absl::StrCat("codes[", i / cols, ",", i % cols, "] = ", codes[i],
                                                     " is outside 0..", max_code));
  }
  for (int64_t i = 0; i < scales.size(); ++i) {
    if (!std::isfinite(scales[i]) || scales[i] <= 0.0f)
      return absl::InvalidArgumentError(
          absl::StrCat("scales[", i / rows, ",", i % rows, "] = ", scales[i], " is not a positive number"));
    if (zeros[i] < 0 || zeros[i] > max_code + 1)
      return absl::InvalidArgumentError(absl::StrCat("zeros[", i / rows, ",", i % rows, "] = ", zeros[i],
                                                     " is outside 0..", max_code + 1));
  }
  for (int64_t c = 0; c < cols; ++c) {
    if (g_idx[c] < 0 || g_idx[c] >= groups())
      return absl::InvalidArgumentError(
          absl::StrCat("g_idx[", c, "] = ", g_idx[c], " is outside 0..", groups() - 1));
    if (!column_scale.empty() && !(std::isfinite(column_scale[c]) && column_scale[c] > 0.0f))
      return absl::InvalidArgumentError(
          absl::StrCat("column_scale[", c, "] = ", column_scale[c], " is not a positive number"));
  }
  if (!input_channel.empty()) QSHARD_RETURN_IF_ERROR(ValidateInputChannels(input_channel, cols));
  if (act_bits != 0 && act_bits != 4 && act_bits != 8)
    return absl::InvalidArgumentError(absl::StrCat("act_bits: ", act_bits, " is not 0, 4 or 8"));
  if (act_bits != 0 && !(std::isfinite(act_scale) && act_scale > 0.0f))
    return absl::InvalidArgumentError(absl::StrCat("act_scale: ", act_scale, " is not a positive number"));
  return absl::OkStatus();
}

float QuantizedWeight::Dequantize(int64_t row, int64_t col) const {
  const int64_t group = g_idx[col];
  const float multiplier = column_scale.empty() ? 1.0f : column_scale[col];
  return DequantizeCode(codes[row * cols + col], scales.at(group, row) * multiplier,
                        zeros[group * rows + row]);
}

Tensor QuantizedWeight::Dequantized() const {
  // Dequantize(r, c) for every element, a row at a time with the row's grids gathered first:
  // the same float operations in the same order, without the strided grid reads per element.
  Tensor out({rows, cols});
  const int64_t group_count = groups();
  std::vector<float> step(group_count);
  std::vector<int32_t> zero(group_count);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < group_count; ++g) {
      step[g] = scales.at(g, r);
      zero[g] = zeros[g * rows + r];
    }
    const int32_t* code = codes.data() + r * cols;
    float* value = out.row(r);
    if (column_scale.empty()) {
      for (int64_t c = 0; c < cols; ++c) value[c] = DequantizeCode(code[c], step[g_idx[c]], zero[g_idx[c]]);
    } else {
      for (int64_t c = 0; c < cols; ++c)
        value[c] = DequantizeCode(code[c], step[g_idx[c]] * column_scale[c], zero[g_idx[c]]);
    }
  }
  return out;
}

absl::Status ValidateInputChannels(const std::vector<int32_t>& input_channel, int64_t cols) {
  if (static_cast<int64_t>(input_channel.size()) != cols)
    return absl::InvalidArgumentError(absl::StrCat("input_channel: ", input_channel.size(), " values, expected ", cols));
  for (int64_t c = 0; c < cols; ++c) {
    const int32_t previous = c == 0 ? -1 : input_channel[c - 1];
    if (input_channel[c] != previous && input_channel[c] != previous + 1)
      return absl::InvalidArgumentError(absl::StrCat("input_channel[", c, "] = ", input_channel[c],
                                                     " does not follow ", previous, " (equal or one more)"));
  }
  return absl::OkStatus();
}

std::vector<int32_t> CopiesPerChannel(const std::vector<int32_t>& input_channel) {
  std::vector<int32_t> copies(input_channel.empty() ? 0 : input_channel.back() + 1, 0);
  for (int32_t c : input_channel) ++copies[c];
  return copies;
}

int64_t QuantizedWeight::layer_cols() const { return input_channel.empty() ? cols : input_channel.back() + 1; }

Tensor QuantizedWeight::LayerWeight() const {
  Tensor flat = Dequantized();
  if (input_channel.empty()) return flat;
  const int64_t in = layer_cols();
  const std::vector<int32_t> copies = CopiesPerChannel(input_channel);
  Tensor out({rows, in});
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out.at(r, input_channel[c]) += flat.at(r, c);
    for (int64_t i = 0; i < in; ++i) out.at(r, i) /= static_cast<float>(copies[i]);
  }
  return out;
}

}  // namespace qshard
