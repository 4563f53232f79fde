// Device bytes of kernels/cuda's working memory, for planning it: the layer forward's scratch
// (LayerForwardScratch, layer_forward.h) and aespa's attention statistics (DeviceAttentionStats,
// attention_stats_device.h). Plain C++, without the CUDA headers, built in every build
// (qshard_cuda_memory): the worker's CUDA glue bounds a layer with these, and `qshard plan
// --device-memory` computes the same bound in a build without CUDA.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/layer_architecture.h"

namespace qshard::gpu {

// The attention of a window of `tokens` through a layer of `arch`.
inline AttentionDims AttentionDimsOf(const LayerArchitecture& arch, int64_t tokens) {
  return {tokens, arch.heads, arch.kv_heads, arch.head_dim};
}

// Floats of each of LayerForwardScratch's buffers for a window of `tokens`, in the order it
// declares them (its Reserve allocates these).
struct LayerForwardScratchSizes {
  int64_t groups[kLayerGroupCount];
  int64_t q, kv, up, scores, rope;
};
LayerForwardScratchSizes LayerForwardScratchSizesOf(const LayerArchitecture& arch, int64_t tokens);

// Device bytes the scratch holds for `tokens` (for planning memory).
size_t LayerForwardScratchBytes(const LayerArchitecture& arch, int64_t tokens);

struct AttentionStatsDims {
  int64_t hidden = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
};

// Device bytes DeviceAttentionStats holds for windows of `tokens` with `value_heads` values' sums
// (dims.kv_heads when not sliced): those sums value_heads·(8·hidden² + 4·hidden) (the bulk: 8.4 GB
// at OPT-13B, 116 GB at OPT-175B), every head's queries' and keys' 2·kv_heads·(8·head_dim² +
// 4·head_dim), the window products' scratch 4·(hidden² + head_dim²), one head's probabilities
// 4·T², A_h X 4·T·hidden and a q/k slice 4·T·head_dim.
size_t DeviceAttentionStatsBytes(const AttentionStatsDims& dims, int64_t tokens, int64_t value_heads);

}  // namespace qshard::gpu
