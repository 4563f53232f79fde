// A GPTQ layer converted once, at load time, from the checkpoint layout to the CPU kernels' tiled
// layout (kernels/layout/gptq_tiled.h), with scales as fp32 and zero points folded into biases.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/huge_page_allocator.h"
#include "kernels/layout/gptq_packed.h"

namespace qshard::kernels {

struct GptqTiledWeights {
  int bits = 0;
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t groups = 0;
  int64_t tiles = 0;         // ceil(out / kTileColumns)
  int64_t blocks = 0;        // per tile
  int64_t padded_inputs = 0; // blocks · RowsPerBlock(bits)
  // source_input[j]: the checkpoint input at reordered position j, or −1 for padding.
  std::vector<int32_t> source_input;   // [padded_inputs]
  std::vector<int64_t> group_blocks;   // [groups + 1]: group g spans blocks [g_b[g], g_b[g+1])
  // The arrays below are in huge pages (huge_page_allocator.h): every GEMV streams all of them.
  std::vector<uint8_t, HugePageAllocator<uint8_t>> codes;  // [tiles, blocks, kBlockBytes]
  // Per tile and group, for the tile's 16 outputs: W = scale · q + bias, bias = −scale · zero.
  std::vector<float, HugePageAllocator<float>> scale;  // [tiles, groups, kTileColumns]
  std::vector<float, HugePageAllocator<float>> bias;   // [tiles, groups, kTileColumns]
  // [tiles, groups, kTileColumns]: the int8 path subtracts zero · Σa exactly
  std::vector<int32_t, HugePageAllocator<int32_t>> zero;

  int64_t CodeBytes() const { return static_cast<int64_t>(codes.size()); }
};

// Fails (naming the field) on a view that does not hold a valid layer: a shape the layout cannot
// hold, or a g_idx entry outside [0, groups).
absl::StatusOr<GptqTiledWeights> TileGptq(const layout::GptqPackedView& packed);

// xp[t, j] = x[t, source_input[j]] (0 for padding): the activations in the tiled input order.
// xp must hold tokens · padded_inputs floats.
void GatherActivations(const GptqTiledWeights& w, const float* x, int64_t tokens, float* xp);

}  // namespace qshard::kernels
