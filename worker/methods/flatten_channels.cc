#include "worker/methods/flatten_channels.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace qshard {
namespace {

int64_t AddedWidth(std::span<const float> abs_max, double threshold) {
  int64_t added = 0;
  for (float m : abs_max) added += std::max<int64_t>(0, static_cast<int64_t>(std::ceil(m / threshold)) - 1);
  return added;
}

}  // namespace

absl::StatusOr<FlattenThreshold> ParseFlattenThreshold(std::string_view text) {
  if (text == "off") return FlattenThreshold{FlattenThreshold::Kind::kOff, 0.0};
  if (text == "auto") return FlattenThreshold{FlattenThreshold::Kind::kAuto, 0.0};
  double value = 0.0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || !std::isfinite(value) || value <= 0.0)
    return absl::InvalidArgumentError(
        absl::StrCat("'", std::string(text), "' is not off, auto or a positive number"));
  return FlattenThreshold{FlattenThreshold::Kind::kValue, value};
}

double AutoFlattenThreshold(std::span<const float> abs_max) {
  const float largest = abs_max.empty() ? 0.0f : *std::max_element(abs_max.begin(), abs_max.end());
  if (!(largest > 0.0f)) return 1.0;
  const int64_t budget = static_cast<int64_t>(std::floor(kAutoAddedWidth * static_cast<double>(abs_max.size())));
  // The added width only grows as T falls, and stays finite for T > 0: bisect on T. The answer
  // is one of the breakpoints max|x_c| / k; 200 halvings pin it to the nearest double above.
  double lo = 0.0, hi = largest;
  for (int i = 0; i < 200 && lo < hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;
    (AddedWidth(abs_max, mid) <= budget ? hi : lo) = mid;
  }
  return hi;
}

double ResolveFlattenThreshold(const FlattenThreshold& threshold, std::span<const float> abs_max) {
  switch (threshold.kind) {
    case FlattenThreshold::Kind::kOff: return std::numeric_limits<double>::infinity();
    case FlattenThreshold::Kind::kAuto: return AutoFlattenThreshold(abs_max);
    case FlattenThreshold::Kind::kValue: return threshold.value;
  }
  return std::numeric_limits<double>::infinity();
}

std::vector<int32_t> SplitChannels(std::span<const float> abs_max, double threshold) {
  std::vector<int32_t> input_channel;
  input_channel.reserve(abs_max.size());
  for (size_t c = 0; c < abs_max.size(); ++c) {
    const int64_t copies = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(abs_max[c] / threshold)));
    input_channel.insert(input_channel.end(), copies, static_cast<int32_t>(c));
  }
  return input_channel;
}

void RoundSplitUp(std::span<const float> abs_max, int64_t unit, std::vector<int32_t>& input_channel) {
  std::vector<int32_t> copies = CopiesPerChannel(input_channel);
  int64_t width = static_cast<int64_t>(input_channel.size());
  if (width % unit == 0) return;
  for (; width % unit != 0; ++width) {
    size_t widest = 0;
    for (size_t c = 1; c < copies.size(); ++c)
      if (abs_max[c] / copies[c] > abs_max[widest] / copies[widest]) widest = c;
    ++copies[widest];
  }
  input_channel.clear();
  for (size_t c = 0; c < copies.size(); ++c) input_channel.insert(input_channel.end(), copies[c], static_cast<int32_t>(c));
}

HessianSum FlattenStatistics(const HessianSum& stats, const std::vector<int32_t>& input_channel) {
  const std::vector<int32_t> copies = CopiesPerChannel(input_channel);
  const int64_t n = static_cast<int64_t>(input_channel.size());
  HessianSum flat(n);
  flat.tokens = stats.tokens;
  for (int64_t j = 0; j < n; ++j) {
    const int32_t cj = input_channel[j];
    flat.abs_max[j] = stats.abs_max[cj] / static_cast<float>(copies[cj]);
    for (int64_t l = 0; l < n; ++l) {
      const int32_t cl = input_channel[l];
      flat.sum[j * n + l] = stats.sum[cj * stats.dim + cl] / (static_cast<double>(copies[cj]) * copies[cl]);
    }
  }
  return flat;
}

Tensor FlattenWeight(const Tensor& weight, const std::vector<int32_t>& input_channel) {
  const int64_t rows = weight.rows(), n = static_cast<int64_t>(input_channel.size());
  Tensor flat({rows, n});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) flat.at(r, j) = weight.at(r, input_channel[j]);
  return flat;
}

void FlattenActivations(const float* x, int64_t tokens, int64_t in, const std::vector<int32_t>& input_channel,
                        std::span<const int32_t> copies, float* flat) {
  const int64_t n = static_cast<int64_t>(input_channel.size());
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < n; ++j) {
      const int32_t c = input_channel[j];
      flat[t * n + j] = x[t * in + c] / static_cast<float>(copies[c]);
    }
}

}  // namespace qshard
