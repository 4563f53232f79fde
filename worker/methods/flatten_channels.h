// FlattenQuant's channel splitting (anchors.md §1.5, docs/flattenquant.md): an input channel c
// whose calibration max |x_c| exceeds the threshold T becomes k_c = ⌈max|x_c| / T⌉ channels
// x_c / k_c, and the weight's input column c is repeated k_c times, so W x = W' x' exactly while
// max |x'| ≤ T. This file holds the threshold, the split and what it does to the statistics and
// to the weight; the method (flattenquant_method.h) chooses the bits.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "worker/calibration/hessian.h"
#include "worker/quant/quantized_weight.h"

namespace qshard {

// --flatten-threshold: "off" (no split), "auto" (AutoFlattenThreshold) or a positive number.
struct FlattenThreshold {
  enum class Kind { kOff, kAuto, kValue };
  Kind kind = Kind::kAuto;
  double value = 0.0;  // kValue only
};
absl::StatusOr<FlattenThreshold> ParseFlattenThreshold(std::string_view text);

// `auto` lets the split add at most this fraction of a layer's input width (so of its
// multiply-adds): the paper calls the flattening overhead negligible.
inline constexpr double kAutoAddedWidth = 0.125;

// The smallest T at which the split adds at most ⌊kAutoAddedWidth · K⌋ channels: the flattest
// input that budget buys. abs_max [K] are the channels' calibration max |x|; all zero gives 1.
double AutoFlattenThreshold(std::span<const float> abs_max);

// T for these statistics (+∞ for kOff).
double ResolveFlattenThreshold(const FlattenThreshold& threshold, std::span<const float> abs_max);

// The input channel of each flattened column (QuantizedWeight::input_channel's form):
// channel c repeated max(1, ⌈abs_max[c] / T⌉) times, in channel order.
std::vector<int32_t> SplitChannels(std::span<const float> abs_max, double threshold);

// Splits further, one copy at a time of the channel whose copies are largest (max|x_c| / k_c),
// until the width is a multiple of `unit`: the checkpoint layout packs 32/bits inputs per word,
// so a flattened width needs no padding column, and the range only falls.
void RoundSplitUp(std::span<const float> abs_max, int64_t unit, std::vector<int32_t>& input_channel);

// The statistics of the flattened input x'_j = x_{c(j)} / k_{c(j)}, derived exactly from the
// unflattened ones: Σ x' x'ᵀ [j, l] = Σ x xᵀ [c(j), c(l)] / (k_c(j) k_c(l)),
// max|x'_j| = max|x_c(j)| / k_c(j), same token count.
HessianSum FlattenStatistics(const HessianSum& stats, const std::vector<int32_t>& input_channel);

// W' [out, K']: W'[:, j] = W[:, c(j)].
Tensor FlattenWeight(const Tensor& weight, const std::vector<int32_t>& input_channel);

// x' [tokens, K'] from x [tokens, K]: x'[t, j] = x[t, c(j)] / k_c(j).
void FlattenActivations(const float* x, int64_t tokens, int64_t in, const std::vector<int32_t>& input_channel,
                        std::span<const int32_t> copies, float* flat);

}  // namespace qshard
