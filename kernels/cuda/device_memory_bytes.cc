#include "kernels/cuda/device_memory_bytes.h"

namespace qshard::gpu {

LayerForwardScratchSizes LayerForwardScratchSizesOf(const LayerArchitecture& a, int64_t tokens) {
  LayerForwardScratchSizes s{};
  for (int g = 0; g < kLayerGroupCount; ++g) s.groups[g] = tokens * GroupWidth(a, static_cast<LayerGroup>(g));
  s.q = tokens * a.q_width();
  s.kv = tokens * a.kv_width();
  s.up = a.llama() ? tokens * a.ffn : 0;
  s.scores = AttentionScratchFloats(AttentionDimsOf(a, tokens));
  s.rope = a.llama() ? tokens * (a.head_dim / 2) : 0;
  return s;
}

size_t LayerForwardScratchBytes(const LayerArchitecture& a, int64_t tokens) {
  const LayerForwardScratchSizes s = LayerForwardScratchSizesOf(a, tokens);
  int64_t floats = s.q + 2 * s.kv + s.up + s.scores + 2 * s.rope;
  for (int64_t g : s.groups) floats += g;
  return sizeof(float) * static_cast<size_t>(floats);
}

size_t DeviceAttentionStatsBytes(const AttentionStatsDims& d, int64_t tokens, int64_t value_heads) {
  const size_t h = d.hidden, hd = d.head_dim, kv = d.kv_heads, t = tokens, v = value_heads;
  return v * (8 * h * h + 4 * h) + 2 * kv * (8 * hd * hd + 4 * hd) + 4 * (h * h + hd * hd) + 4 * t * t + 4 * t * h +
         4 * t * hd;
}

}  // namespace qshard::gpu
