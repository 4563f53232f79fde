#include "worker/model/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "worker/model/vector_math.h"

namespace qshard {
namespace {

// Register tiles: kTileRows query rows at a time against kLanes·kVectors keys (or value
// channels), so each loaded key or value vector serves kTileRows rows. The accumulators are
// GCC/Clang vector-extension values (kTileRows × kVectors of them), which the compiler keeps
// in registers without ISA-specific intrinsics. The tile width is picked per CPU (4-lane SSE,
// 8-lane AVX2, 16-lane AVX-512): each output element is the same sum in the same order
// whatever the width, and the file is built with -ffp-contract=off so that no variant fuses
// a multiply-add the others round twice — every width gives the same bits.
constexpr int64_t kTileRows = 4;
constexpr int64_t kPad = 16;  // buffers are padded to the widest tile
typedef float Vec __attribute__((vector_size(4 * sizeof(float))));  // RowMax, RowSum: fixed order

int64_t RoundUp(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

template <int kLanes>
struct Lanes {
  typedef float V __attribute__((vector_size(kLanes * sizeof(float))));
  // Through references, not return values: a wide vector returned by a function compiled for
  // the baseline would change the ABI (these are always inlined anyway).
  [[gnu::always_inline]] static void Load(V& v, const float* p) { std::memcpy(&v, p, sizeof(v)); }
  [[gnu::always_inline]] static void Store(float* p, const V& v) { std::memcpy(p, &v, sizeof(v)); }
};

Vec Load(const float* p) {
  Vec v;
  Lanes<4>::Load(v, p);
  return v;
}

// scores[r][j] = Σ_c queries[r][c] · keys_t[c][j] for r < kTileRows, j < count (a multiple of
// kLanes·kVectors). keys_t is [d][key_stride], scores [kTileRows][stride].
template <int kLanes, int kVectors>
[[gnu::always_inline]] inline void ScoreTile(const float* queries, const float* keys_t, int64_t d, int64_t key_stride,
                                             int64_t stride, int64_t count, float* scores) {
  using L = Lanes<kLanes>;
  for (int64_t j0 = 0; j0 < count; j0 += kLanes * kVectors) {
    typename L::V acc[kTileRows][kVectors] = {};
    for (int64_t c = 0; c < d; ++c) {
      typename L::V k[kVectors];
      for (int64_t v = 0; v < kVectors; ++v) L::Load(k[v], keys_t + c * key_stride + j0 + v * kLanes);
      for (int64_t r = 0; r < kTileRows; ++r) {
        const float q = queries[r * d + c];
        for (int64_t v = 0; v < kVectors; ++v) acc[r][v] += q * k[v];
      }
    }
    for (int64_t r = 0; r < kTileRows; ++r)
      for (int64_t v = 0; v < kVectors; ++v) L::Store(scores + r * stride + j0 + v * kLanes, acc[r][v]);
  }
}

// out[r][c] = Σ_j probs[r][j] · values[j][c] for r < kTileRows, j < count, c < d_padded (a
// multiple of kLanes·kVectors). probs is [kTileRows][stride], values [.][d_padded], out
// [kTileRows][d_padded].
template <int kLanes, int kVectors>
[[gnu::always_inline]] inline void WeightedSumTile(const float* probs, const float* values, int64_t count,
                                                   int64_t stride, int64_t d_padded, float* out) {
  using L = Lanes<kLanes>;
  for (int64_t c0 = 0; c0 < d_padded; c0 += kLanes * kVectors) {
    typename L::V acc[kTileRows][kVectors] = {};
    for (int64_t j = 0; j < count; ++j) {
      typename L::V val[kVectors];
      for (int64_t v = 0; v < kVectors; ++v) L::Load(val[v], values + j * d_padded + c0 + v * kLanes);
      for (int64_t r = 0; r < kTileRows; ++r) {
        const float p = probs[r * stride + j];
        for (int64_t v = 0; v < kVectors; ++v) acc[r][v] += p * val[v];
      }
    }
    for (int64_t r = 0; r < kTileRows; ++r)
      for (int64_t v = 0; v < kVectors; ++v) L::Store(out + r * d_padded + c0 + v * kLanes, acc[r][v]);
  }
}

// Max and sum of x[0, n) with 4 independent accumulators: a single running value would make
// every step wait for the previous one. Four whatever the tile width, so sums keep their order.
float RowMax(const float* x, int64_t n) {
  float best = x[0];
  int64_t j = 0;
  if (n >= 4) {
    Vec lanes = Load(x);
    for (j = 4; j + 4 <= n; j += 4) {
      const Vec v = Load(x + j);
      lanes = lanes > v ? lanes : v;
    }
    for (int64_t l = 0; l < 4; ++l) best = std::max(best, lanes[l]);
  }
  for (; j < n; ++j) best = std::max(best, x[j]);
  return best;
}

float RowSum(const float* x, int64_t n) {
  Vec lanes = {};
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) lanes += Load(x + j);
  float sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; j < n; ++j) sum += x[j];
  return sum;
}

// out[j] = exp(x[j] − shift) for j < n, the shifted value clamped to the exp's range first.
// Inlined into each tile width's code (vector_exp.h's ExpInPlace computes the same operations
// per element, so the bits are the same as calling it, without a call and a pass per row).
[[gnu::always_inline]] inline void ShiftedExp(const float* x, float shift, int64_t n, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = std::min(std::max(x[j] - shift, -87.3f), 88.3f);
  for (int64_t j = 0; j < n; ++j) out[j] = ExpOfClamped(out[j]);
}

// The softmax of scores[0, visible) into out[0, visible).
[[gnu::always_inline]] inline void CausalSoftmaxRow(const float* scores, int64_t visible, float* out) {
  ShiftedExp(scores, RowMax(scores, visible), visible, out);
  const float inv_sum = 1.0f / RowSum(out, visible);
  for (int64_t j = 0; j < visible; ++j) out[j] *= inv_sum;
}

// One (window, head) pair, gathered into zero-padded local buffers: queries [seq_padded][d]
// (pre-scaled), keys transposed to [d][seq_padded], values [seq_padded][d_padded].
struct HeadInputs {
  int64_t d, d_padded, seq_padded, first_row;
  std::vector<float> queries, keys_t, values;

  // v null: no values (for the probabilities alone).
  HeadInputs(const Tensor& q, const Tensor& k, const Tensor* v, const AttentionShape& s, float scale, int64_t window,
             int64_t head)
      : d(s.head_dim),
        d_padded(RoundUp(d, kPad)),
        seq_padded(RoundUp(s.seq, kPad)),
        first_row(window * s.seq),
        queries(seq_padded * d, 0.0f),
        keys_t(d * seq_padded, 0.0f),
        values(v == nullptr ? 0 : seq_padded * d_padded, 0.0f) {
    const int64_t kv_head = head / (s.heads / s.kv_heads);
    for (int64_t j = 0; j < s.seq; ++j) {
      const float* qr = q.row(first_row + j) + head * d;
      const float* kr = k.row(first_row + j) + kv_head * d;
      for (int64_t c = 0; c < d; ++c) queries[j * d + c] = qr[c] * scale;
      for (int64_t c = 0; c < d; ++c) keys_t[c * seq_padded + j] = kr[c];
      if (v == nullptr) continue;
      const float* vr = v->row(first_row + j) + kv_head * d;
      std::copy(vr, vr + d, values.data() + j * d_padded);
    }
  }
};

// The softmax probabilities of one (window, head) pair, [seq, seq], zero above the diagonal:
// each row's softmax over all the keys it sees, formed whole.
template <int kLanes, int kVectors>
[[gnu::always_inline]] inline void WriteProbabilities(const HeadInputs& in, const AttentionShape& s, float* probs) {
  std::vector<float> scores(kTileRows * in.seq_padded);
  for (int64_t i0 = 0; i0 < s.seq; i0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, s.seq - i0);
    const int64_t count = RoundUp(i0 + rows, kLanes * kVectors);  // keys any row of the tile may see
    ScoreTile<kLanes, kVectors>(in.queries.data() + i0 * in.d, in.keys_t.data(), in.d, in.seq_padded, in.seq_padded,
                                count, scores.data());
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t visible = i0 + r + 1;
      float* prow = probs + (i0 + r) * s.seq;
      CausalSoftmaxRow(scores.data() + r * in.seq_padded, visible, prow);
      std::fill(prow + visible, prow + s.seq, 0.0f);
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
static_assert(kKeyBlock % kPad == 0);

template <int kLanes, int kVectors>
[[gnu::always_inline]] inline void Attend(const HeadInputs& in, const AttentionShape& s, int64_t head, Tensor& out) {
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
      const int64_t count = std::min(kKeyBlock, RoundUp(seen - k0, kLanes * kVectors));  // within seq_padded
      ScoreTile<kLanes, kVectors>(in.queries.data() + i0 * d, in.keys_t.data() + k0, d, in.seq_padded, kKeyBlock, count, scores.data());
      for (int64_t r = 0; r < kTileRows; ++r) {
        float* row = scores.data() + r * kKeyBlock;
        const int64_t visible = r < rows ? std::min(count, i0 + r + 1 - k0) : 0;
        rescale[r] = 1.0f;
        if (visible > 0) {
          const float block_max = std::max(running_max[r], RowMax(row, visible));
          ShiftedExp(row, block_max, visible, row);
          rescale[r] = std::exp(running_max[r] - block_max);  // exactly 0 on the first block
          running_sum[r] = running_sum[r] * rescale[r] + RowSum(row, visible);
          running_max[r] = block_max;
        }
        std::fill(row + std::max<int64_t>(visible, 0), row + count, 0.0f);
      }
      WeightedSumTile<kLanes, kVectors>(scores.data(), in.values.data() + k0 * d_padded, count, kKeyBlock, d_padded, block_out.data());
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

// One (window, head) pair at one tile width; the wider ones compiled for their ISA.
// out null: the probabilities alone.
template <int kLanes, int kVectors>
[[gnu::always_inline]] inline void AttendPair(const HeadInputs& in, const AttentionShape& s, int64_t head, Tensor* out,
                                              float* probs) {
  if (out != nullptr) Attend<kLanes, kVectors>(in, s, head, *out);
  if (probs != nullptr) WriteProbabilities<kLanes, kVectors>(in, s, probs);
}

void AttendPair4(const HeadInputs& in, const AttentionShape& s, int64_t head, Tensor* out, float* probs) {
  AttendPair<4, 2>(in, s, head, out, probs);
}
[[gnu::target("avx2")]] void AttendPair8(const HeadInputs& in, const AttentionShape& s, int64_t head, Tensor* out,
                                         float* probs) {
  AttendPair<8, 2>(in, s, head, out, probs);
}
[[gnu::target("avx512f")]] void AttendPair16(const HeadInputs& in, const AttentionShape& s, int64_t head, Tensor* out,
                                             float* probs) {
  AttendPair<16, 1>(in, s, head, out, probs);
}

// Every (window, head) pair on the pool: its output into out and its probabilities into probs,
// each if not null, at the tile width `lanes` (0: the widest).
void AttendPairs(const Tensor& q, const Tensor& k, const Tensor* v, const AttentionShape& shape, float scale,
                 ThreadPool& pool, Tensor* out, Tensor* probs, int lanes) {
  static const int widest = AttentionLaneWidths().front();
  const auto attend = (lanes == 0 ? widest : lanes) == 16 ? AttendPair16
                      : (lanes == 0 ? widest : lanes) == 8 ? AttendPair8
                                                           : AttendPair4;
  const std::vector<int64_t> probs_shape = {shape.batch, shape.heads, shape.seq, shape.seq};
  if (probs != nullptr && probs->shape() != probs_shape) *probs = Tensor(probs_shape);
  pool.ParallelFor(shape.batch * shape.heads, [&](int64_t task) {
    const int64_t window = task / shape.heads;
    const int64_t head = task % shape.heads;
    const HeadInputs in(q, k, v, shape, scale, window, head);
    attend(in, shape, head, out, probs == nullptr ? nullptr : probs->data() + task * shape.seq * shape.seq);
  });
}

}  // namespace

std::vector<int> AttentionLaneWidths() {
  std::vector<int> widths;
  if (__builtin_cpu_supports("avx512f")) widths.push_back(16);
  if (__builtin_cpu_supports("avx2")) widths.push_back(8);
  widths.push_back(4);
  return widths;
}

Tensor CausalSelfAttention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& shape,
                           float scale, ThreadPool& pool, Tensor* probs, int lanes) {
  Tensor out({shape.batch * shape.seq, shape.heads * shape.head_dim});
  AttendPairs(q, k, &v, shape, scale, pool, &out, probs, lanes);
  return out;
}

void CausalSoftmaxProbabilities(const Tensor& q, const Tensor& k, const AttentionShape& shape, float scale,
                                ThreadPool& pool, Tensor& probs, int lanes) {
  AttendPairs(q, k, nullptr, shape, scale, pool, nullptr, &probs, lanes);
}

}  // namespace qshard
