// The key/value cache of incremental decoding: per layer, the keys (after RoPE for LLaMA) and
// values of every position run so far, and the attention of new queries over them. One
// sequence (batch 1); positions are appended in order, one or more at a time.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model_config.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "worker/model/attention.h"

namespace qshard {

class KvCache {
 public:
  explicit KvCache(const ModelConfig& config);

  // Positions held for `layer`. Between whole-model steps every layer holds the same number.
  int64_t length(int layer) const { return layers_[layer].length; }
  // Appends k and v [new positions, kv_heads*head_dim] to `layer`.
  void Append(int layer, const Tensor& k, const Tensor& v);
  // Attention of q [rows, heads*head_dim], the queries of the last `rows` positions appended to
  // `layer`: row i (at position length - rows + i) sees the keys of positions 0..its own.
  // Query head h reads kv head h / (heads / kv_heads), as CausalSelfAttention does.
  Tensor Attend(int layer, const Tensor& q, const AttentionShape& shape, float scale, ThreadPool& pool) const;

 private:
  struct Layer {
    std::vector<float> keys;    // [length, kv_dim]
    std::vector<float> values;  // [length, kv_dim]
    int64_t length = 0;
  };
  int64_t kv_dim_;
  std::vector<Layer> layers_;
};

}  // namespace qshard
