// Rotary position embedding (RoPE) in the Hugging Face "rotate_half" layout: dimension i of a
// head pairs with dimension i + head_dim/2. Frequencies are computed in float32 the way
// LlamaRotaryEmbedding does, so the rotated values match the reference bit for bit in most places.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace qshard {

class RotaryEmbedding {
 public:
  RotaryEmbedding(int64_t head_dim, double theta);

  // Rotates x [batch*seq, heads*head_dim] in place; row t of each window of `seq` rows is at
  // position first_position + t.
  void Apply(Tensor& x, int64_t heads, int64_t batch, int64_t seq, int64_t first_position = 0) const;

 private:
  int64_t head_dim_;
  std::vector<float> inv_freq_;  // [head_dim / 2]
};

}  // namespace qshard
