#include "kernels/cpu/gptq_tiled_weights.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "kernels/layout/gptq_tiled.h"

namespace qshard::kernels {
namespace {

absl::Status CheckPacked(const layout::GptqPackedView& p) {
  if (!layout::GptqShapeFits(p.bits, p.in_features, p.out_features))
    return absl::InvalidArgumentError(absl::StrCat("GPTQ layer [in ", p.in_features, ", out ", p.out_features,
                                                   ", ", p.bits, " bits]: not a shape the packed layout holds"));
  if (p.groups < 1) return absl::InvalidArgumentError(absl::StrCat("scales: ", p.groups, " groups"));
  for (int64_t i = 0; i < p.in_features; ++i)
    if (p.g_idx[i] < 0 || p.g_idx[i] >= p.groups)
      return absl::InvalidArgumentError(
          absl::StrCat("g_idx[", i, "] = ", p.g_idx[i], " is outside [0, ", p.groups, ")"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GptqTiledWeights> TileGptq(const layout::GptqPackedView& p) {
  if (absl::Status status = CheckPacked(p); !status.ok()) return status;
  GptqTiledWeights w;
  w.bits = p.bits;
  w.in_features = p.in_features;
  w.out_features = p.out_features;
  w.groups = p.groups;
  w.tiles = (p.out_features + layout::kTileColumns - 1) / layout::kTileColumns;
  const int rows = layout::RowsPerBlock(p.bits);

  // Inputs sorted by group (stable, so without act-order the order is unchanged), each group's
  // run padded to whole blocks.
  std::vector<int32_t> order(p.in_features);
  for (int64_t i = 0; i < p.in_features; ++i) order[i] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&p](int32_t a, int32_t b) { return p.g_idx[a] < p.g_idx[b]; });
  w.group_blocks.assign(p.groups + 1, 0);
  for (int64_t k = 0, g = 0; g < p.groups; ++g) {
    const int64_t begin = k;
    while (k < p.in_features && p.g_idx[order[k]] == g) ++k;
    const int64_t blocks = (k - begin + rows - 1) / rows;
    w.group_blocks[g + 1] = w.group_blocks[g] + blocks;
    for (int64_t j = 0; j < blocks * rows; ++j)
      w.source_input.push_back(begin + j < k ? order[begin + j] : -1);
  }
  w.blocks = w.group_blocks[p.groups];
  w.padded_inputs = w.blocks * rows;

  // Input by input inside a tile: one input's codes for the tile's 16 outputs sit side by side
  // in the packed matrix (one cache line), where output by output strode a packed row per input
  // (5 ns a weight: 14 minutes of loading at OPT-175B).
  w.codes.assign(w.tiles * w.blocks * layout::kBlockBytes, 0);
  for (int64_t tile = 0; tile < w.tiles; ++tile) {
    const int64_t first = tile * layout::kTileColumns;
    const int64_t columns = std::min<int64_t>(layout::kTileColumns, p.out_features - first);
    for (int64_t j = 0; j < w.padded_inputs; ++j) {
      const int32_t i = w.source_input[j];
      if (i < 0) continue;
      const int shift = layout::RowShift(p.bits, static_cast<int>(j % rows));
      uint8_t* lanes = &w.codes[(tile * w.blocks + j / rows) * layout::kBlockBytes + shift / 8];
      for (int64_t c = 0; c < columns; ++c)
        lanes[c * layout::kLaneBytes] |= static_cast<uint8_t>(p.Code(i, first + c) << (shift % 8));
    }
  }

  const int64_t params = w.tiles * p.groups * layout::kTileColumns;
  w.scale.assign(params, 0.0f);
  w.bias.assign(params, 0.0f);
  w.zero.assign(params, 0);
  for (int64_t tile = 0; tile < w.tiles; ++tile)
    for (int64_t g = 0; g < p.groups; ++g)
      for (int c = 0; c < layout::kTileColumns; ++c) {
        const int64_t o = tile * layout::kTileColumns + c;
        if (o >= p.out_features) break;
        const int64_t at = (tile * p.groups + g) * layout::kTileColumns + c;
        w.scale[at] = HalfToFloat(p.ScaleBits(g, o));
        w.zero[at] = p.Zero(g, o);
        w.bias[at] = -w.scale[at] * static_cast<float>(w.zero[at]);
      }
  return w;
}

void GatherActivations(const GptqTiledWeights& w, const float* x, int64_t tokens, float* xp) {
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = x + t * w.in_features;
    float* out = xp + t * w.padded_inputs;
    for (int64_t j = 0; j < w.padded_inputs; ++j) {
      const int32_t i = w.source_input[j];
      out[j] = i < 0 ? 0.0f : row[i];
    }
  }
}

}  // namespace qshard::kernels
