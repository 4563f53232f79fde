#include "worker/model/kv_cache.h"

#include <algorithm>
#include <cmath>

namespace qshard {

KvCache::KvCache(const ModelConfig& config)
    : kv_dim_(config.num_kv_heads * config.head_dim), layers_(config.num_layers) {}

void KvCache::Append(int layer, const Tensor& k, const Tensor& v) {
  Layer& l = layers_[layer];
  l.keys.insert(l.keys.end(), k.data(), k.data() + k.rows() * kv_dim_);
  l.values.insert(l.values.end(), v.data(), v.data() + v.rows() * kv_dim_);
  l.length += k.rows();
}

Tensor KvCache::Attend(int layer, const Tensor& q, const AttentionShape& shape, float scale, ThreadPool& pool) const {
  const Layer& l = layers_[layer];
  const int64_t rows = q.rows();
  const int64_t d = shape.head_dim;
  const int64_t group = shape.heads / shape.kv_heads;
  Tensor out({rows, shape.heads * d});
  // One (row, head) pair per task: a decoding step has one row, so the heads are the parallelism.
  pool.ParallelFor(rows * shape.heads, [&](int64_t task) {
    const int64_t row = task / shape.heads;
    const int64_t head = task % shape.heads;
    const int64_t visible = l.length - rows + row + 1;
    const float* query = q.row(row) + head * d;
    const int64_t kv_offset = (head / group) * d;
    std::vector<float> probs(visible);
    float max_score = -INFINITY;
    for (int64_t j = 0; j < visible; ++j) {
      const float* key = l.keys.data() + j * kv_dim_ + kv_offset;
      float dot = 0.0f;
      for (int64_t c = 0; c < d; ++c) dot += query[c] * key[c];
      probs[j] = dot * scale;
      max_score = std::max(max_score, probs[j]);
    }
    float sum = 0.0f;
    for (float& p : probs) {
      p = std::exp(p - max_score);
      sum += p;
    }
    float* o = out.row(row) + head * d;
    std::fill(o, o + d, 0.0f);
    for (int64_t j = 0; j < visible; ++j) {
      const float* value = l.values.data() + j * kv_dim_ + kv_offset;
      for (int64_t c = 0; c < d; ++c) o[c] += probs[j] * value[c];
    }
    const float inverse_sum = 1.0f / sum;
    for (int64_t c = 0; c < d; ++c) o[c] *= inverse_sum;
  });
  return out;
}

}  // namespace qshard
