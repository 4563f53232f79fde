#include "worker/model/attention.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "worker/model/vector_exp.h"

namespace qshard {
namespace {

// Register tiles: kTileRows query rows at a time against kTileCols keys (or value channels),
// so each loaded key or value vector serves kTileRows rows. The accumulators are GCC/Clang
// vector-extension values of one SSE register each (kTileRows × kVectors of them), which the
// compiler keeps in registers without ISA-specific intrinsics.
constexpr int64_t kTileRows = 4;
constexpr int64_t kLanes = 4;
constexpr int64_t kVectors = 2;
constexpr int64_t kTileCols = kLanes * kVectors;
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

int64_t RoundUp(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

Vec Load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

void Store(float* p, const Vec& v) { std::memcpy(p, &v, sizeof(v)); }

// scores[r][j] = Σ_c queries[r][c] · keys_t[c][j] for r < kTileRows, j < count (a multiple of
// kTileCols). keys_t is [d][stride], scores [kTileRows][stride].
void ScoreTile(const float* queries, const float* keys_t, int64_t d, int64_t stride, int64_t count, float* scores) {
  for (int64_t j0 = 0; j0 < count; j0 += kTileCols) {
    Vec acc[kTileRows][kVectors] = {};
    for (int64_t c = 0; c < d; ++c) {
      Vec k[kVectors];
      for (int64_t v = 0; v < kVectors; ++v) k[v] = Load(keys_t + c * stride + j0 + v * kLanes);
      for (int64_t r = 0; r < kTileRows; ++r) {
        const float q = queries[r * d + c];
        for (int64_t v = 0; v < kVectors; ++v) acc[r][v] += q * k[v];
      }
    }
    for (int64_t r = 0; r < kTileRows; ++r)
      for (int64_t v = 0; v < kVectors; ++v) Store(scores + r * stride + j0 + v * kLanes, acc[r][v]);
  }
}

// out[r][c] = Σ_j probs[r][j] · values[j][c] for r < kTileRows, j < count, c < d_padded (a
// multiple of kTileCols). probs is [kTileRows][stride], values [.][d_padded], out [kTileRows][d_padded].
void WeightedSumTile(const float* probs, const float* values, int64_t count, int64_t stride, int64_t d_padded,
                     float* out) {
  for (int64_t c0 = 0; c0 < d_padded; c0 += kTileCols) {
    Vec acc[kTileRows][kVectors] = {};
    for (int64_t j = 0; j < count; ++j) {
      Vec val[kVectors];
      for (int64_t v = 0; v < kVectors; ++v) val[v] = Load(values + j * d_padded + c0 + v * kLanes);
      for (int64_t r = 0; r < kTileRows; ++r) {
        const float p = probs[r * stride + j];
        for (int64_t v = 0; v < kVectors; ++v) acc[r][v] += p * val[v];
      }
    }
    for (int64_t r = 0; r < kTileRows; ++r)
      for (int64_t v = 0; v < kVectors; ++v) Store(out + r * d_padded + c0 + v * kLanes, acc[r][v]);
  }
}

// Max and sum of x[0, n) with kLanes independent accumulators: a single running value would
// make every step wait for the previous one.
float RowMax(const float* x, int64_t n) {
  float best = x[0];
  int64_t j = 0;
  if (n >= kLanes) {
    Vec lanes = Load(x);
    for (j = kLanes; j + kLanes <= n; j += kLanes) {
      const Vec v = Load(x + j);
      lanes = lanes > v ? lanes : v;
    }
    for (int64_t l = 0; l < kLanes; ++l) best = std::max(best, lanes[l]);
  }
  for (; j < n; ++j) best = std::max(best, x[j]);
  return best;
}

float RowSum(const float* x, int64_t n) {
  Vec lanes = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) lanes += Load(x + j);
  float sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; j < n; ++j) sum += x[j];
  return sum;
}

// Softmax of scores[0, visible) in place; entries [visible, count) become 0.
void CausalSoftmaxRow(float* scores, int64_t visible, int64_t count) {
  const float max_score = RowMax(scores, visible);
  for (int64_t j = 0; j < visible; ++j) scores[j] -= max_score;
  ExpInPlace(scores, visible);
  const float inv_sum = 1.0f / RowSum(scores, visible);
  for (int64_t j = 0; j < visible; ++j) scores[j] *= inv_sum;
  std::fill(scores + visible, scores + count, 0.0f);
}

// One (window, head) pair, gathered into zero-padded local buffers: queries [seq_padded][d]
// (pre-scaled), keys transposed to [d][seq_padded], values [seq_padded][d_padded].
void AttendOneHead(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& s, float scale,
                   int64_t window, int64_t head, Tensor& out, float* probs) {
  const int64_t d = s.head_dim;
  const int64_t d_padded = RoundUp(d, kTileCols);
  const int64_t seq_padded = RoundUp(s.seq, std::max(kTileRows, kTileCols));
  const int64_t kv_head = head / (s.heads / s.kv_heads);
  const int64_t first_row = window * s.seq;
  std::vector<float> queries(seq_padded * d, 0.0f), keys_t(d * seq_padded, 0.0f), values(seq_padded * d_padded, 0.0f);
  for (int64_t j = 0; j < s.seq; ++j) {
    const float* qr = q.row(first_row + j) + head * d;
    const float* kr = k.row(first_row + j) + kv_head * d;
    const float* vr = v.row(first_row + j) + kv_head * d;
    for (int64_t c = 0; c < d; ++c) queries[j * d + c] = qr[c] * scale;
    for (int64_t c = 0; c < d; ++c) keys_t[c * seq_padded + j] = kr[c];
    std::copy(vr, vr + d, values.data() + j * d_padded);
  }
  std::vector<float> scores(kTileRows * seq_padded), tile_out(kTileRows * d_padded);
  for (int64_t i0 = 0; i0 < s.seq; i0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, s.seq - i0);
    const int64_t count = RoundUp(i0 + rows, kTileCols);  // keys any row of the tile may see
    ScoreTile(queries.data() + i0 * d, keys_t.data(), d, seq_padded, count, scores.data());
    for (int64_t r = 0; r < kTileRows; ++r) {
      float* row = scores.data() + r * seq_padded;
      if (r < rows) {
        CausalSoftmaxRow(row, i0 + r + 1, count);
      } else {
        std::fill(row, row + count, 0.0f);  // padding rows past the window
      }
    }
    WeightedSumTile(scores.data(), values.data(), count, seq_padded, d_padded, tile_out.data());
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(tile_out.data() + r * d_padded, tile_out.data() + r * d_padded + d, out.row(first_row + i0 + r) + head * d);
      if (probs != nullptr) {
        float* prow = probs + (i0 + r) * s.seq;
        const float* srow = scores.data() + r * seq_padded;
        std::copy(srow, srow + std::min(count, s.seq), prow);
        std::fill(prow + std::min(count, s.seq), prow + s.seq, 0.0f);
      }
    }
  }
}

}  // namespace

Tensor CausalSelfAttention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& shape,
                           float scale, ThreadPool& pool, Tensor* probs) {
  Tensor out({shape.batch * shape.seq, shape.heads * shape.head_dim});
  if (probs != nullptr) *probs = Tensor({shape.batch, shape.heads, shape.seq, shape.seq});
  pool.ParallelFor(shape.batch * shape.heads, [&](int64_t task) {
    const int64_t window = task / shape.heads;
    const int64_t head = task % shape.heads;
    float* head_probs = probs == nullptr ? nullptr : probs->data() + task * shape.seq * shape.seq;
    AttendOneHead(q, k, v, shape, scale, window, head, out, head_probs);
  });
  return out;
}

}  // namespace qshard
