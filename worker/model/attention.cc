#include "worker/model/attention.h"

#include <algorithm>
#include <cmath>
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
// kTileCols). keys_t is [d][key_stride], scores [kTileRows][stride].
void ScoreTile(const float* queries, const float* keys_t, int64_t d, int64_t key_stride, int64_t stride, int64_t count,
               float* scores) {
  for (int64_t j0 = 0; j0 < count; j0 += kTileCols) {
    Vec acc[kTileRows][kVectors] = {};
    for (int64_t c = 0; c < d; ++c) {
      Vec k[kVectors];
      for (int64_t v = 0; v < kVectors; ++v) k[v] = Load(keys_t + c * key_stride + j0 + v * kLanes);
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
struct HeadInputs {
  int64_t d, d_padded, seq_padded, first_row;
  std::vector<float> queries, keys_t, values;

  HeadInputs(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& s, float scale, int64_t window,
             int64_t head)
      : d(s.head_dim),
        d_padded(RoundUp(d, kTileCols)),
        seq_padded(RoundUp(s.seq, std::max(kTileRows, kTileCols))),
        first_row(window * s.seq),
        queries(seq_padded * d, 0.0f),
        keys_t(d * seq_padded, 0.0f),
        values(seq_padded * d_padded, 0.0f) {
    const int64_t kv_head = head / (s.heads / s.kv_heads);
    for (int64_t j = 0; j < s.seq; ++j) {
      const float* qr = q.row(first_row + j) + head * d;
      const float* kr = k.row(first_row + j) + kv_head * d;
      const float* vr = v.row(first_row + j) + kv_head * d;
      for (int64_t c = 0; c < d; ++c) queries[j * d + c] = qr[c] * scale;
      for (int64_t c = 0; c < d; ++c) keys_t[c * seq_padded + j] = kr[c];
      std::copy(vr, vr + d, values.data() + j * d_padded);
    }
  }
};

// The softmax probabilities of one (window, head) pair, [seq, seq], zero above the diagonal:
// each row's softmax over all the keys it sees, formed whole.
void WriteProbabilities(const HeadInputs& in, const AttentionShape& s, float* probs) {
  std::vector<float> scores(kTileRows * in.seq_padded);
  for (int64_t i0 = 0; i0 < s.seq; i0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, s.seq - i0);
    const int64_t count = RoundUp(i0 + rows, kTileCols);  // keys any row of the tile may see
    ScoreTile(in.queries.data() + i0 * in.d, in.keys_t.data(), in.d, in.seq_padded, in.seq_padded, count,
              scores.data());
    for (int64_t r = 0; r < rows; ++r) {
      float* row = scores.data() + r * in.seq_padded;
      CausalSoftmaxRow(row, i0 + r + 1, count);
      float* prow = probs + (i0 + r) * s.seq;
      std::copy(row, row + std::min(count, s.seq), prow);
      std::fill(prow + std::min(count, s.seq), prow + s.seq, 0.0f);
    }
  }
}

// The output of one (window, head) pair by the flash-attention recurrence (Milakov &
// Gimelshein 2018, Dao et al. 2022), with or without probabilities asked for, so that asking
// for them does not change a bit of the output. A tile of kTileRows queries walks the keys it
// sees in blocks of kKeyBlock, up to the diagonal only, keeping per row the running maximum
// m, the running sum l of exp(s − m) and the unnormalized output; a block that raises m
// rescales both by exp(m_old − m_new). Scores live one block at a time, and the output is
// divided by l once at the end.
constexpr int64_t kKeyBlock = 64;
static_assert(kKeyBlock % kTileCols == 0);

void Attend(const HeadInputs& in, const AttentionShape& s, int64_t head, Tensor& out) {
  const int64_t d = in.d, d_padded = in.d_padded;
  std::vector<float> scores(kTileRows * kKeyBlock), block_out(kTileRows * d_padded), acc(kTileRows * d_padded);
  float running_max[kTileRows], running_sum[kTileRows], rescale[kTileRows];
  for (int64_t i0 = 0; i0 < s.seq; i0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, s.seq - i0);
    const int64_t seen = i0 + rows;  // keys [0, seen) are visible to some row of the tile
    std::fill(running_max, running_max + kTileRows, -INFINITY);
    std::fill(running_sum, running_sum + kTileRows, 0.0f);
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t k0 = 0; k0 < seen; k0 += kKeyBlock) {
      const int64_t count = std::min(kKeyBlock, RoundUp(seen - k0, kTileCols));  // within seq_padded
      ScoreTile(in.queries.data() + i0 * d, in.keys_t.data() + k0, d, in.seq_padded, kKeyBlock, count, scores.data());
      for (int64_t r = 0; r < kTileRows; ++r) {
        float* row = scores.data() + r * kKeyBlock;
        const int64_t visible = r < rows ? std::min(count, i0 + r + 1 - k0) : 0;
        rescale[r] = 1.0f;
        if (visible > 0) {
          const float block_max = std::max(running_max[r], RowMax(row, visible));
          for (int64_t j = 0; j < visible; ++j) row[j] -= block_max;
          ExpInPlace(row, visible);
          rescale[r] = std::exp(running_max[r] - block_max);  // exactly 0 on the first block
          running_sum[r] = running_sum[r] * rescale[r] + RowSum(row, visible);
          running_max[r] = block_max;
        }
        std::fill(row + std::max<int64_t>(visible, 0), row + count, 0.0f);
      }
      WeightedSumTile(scores.data(), in.values.data() + k0 * d_padded, count, kKeyBlock, d_padded, block_out.data());
      for (int64_t r = 0; r < kTileRows; ++r)
        for (int64_t c = 0; c < d_padded; ++c)
          acc[r * d_padded + c] = acc[r * d_padded + c] * rescale[r] + block_out[r * d_padded + c];
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float inverse_sum = 1.0f / running_sum[r];
      float* destination = out.row(in.first_row + i0 + r) + head * d;
      for (int64_t c = 0; c < d; ++c) destination[c] = acc[r * d_padded + c] * inverse_sum;
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
    const HeadInputs in(q, k, v, shape, scale, window, head);
    Attend(in, shape, head, out);
    if (probs != nullptr) WriteProbabilities(in, shape, probs->data() + task * shape.seq * shape.seq);
  });
  return out;
}

}  // namespace qshard
