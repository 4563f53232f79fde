// The device attention's plan (kernels/cuda/attention_plan.h: the strided-batched GEMMs'
// leading dimensions, strides and offsets, the query blocks, the softmax steps) executed on the
// CPU with plain loops, as cuBLAS and the softmax kernel define them, against a naive causal
// attention with grouped-query heads: the index arithmetic the device code runs, checked
// without a GPU. Every access is bounds-checked against the buffers' sizes.
#include "kernels/cuda/attention_plan.h"

#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace qshard::gpu {

void PrintTo(const AttentionDims& d, std::ostream* os) {
  *os << d.tokens << " tokens, " << d.heads << " over " << d.kv_heads << " heads of " << d.head_dim;
}

namespace {

struct Buffers {
  std::vector<float> q, k, v, scores, out;
  std::vector<float>& of(AttentionBuffer buffer) {
    switch (buffer) {
      case AttentionBuffer::kQ: return q;
      case AttentionBuffer::kK: return k;
      case AttentionBuffer::kV: return v;
      case AttentionBuffer::kScores: return scores;
      case AttentionBuffer::kOut: break;
    }
    return out;
  }
};

// Element (row, col) of a column-major operand at batch index b; fails the test when out of range.
float& At(Buffers& buffers, const GemmOperand& o, int64_t b, int64_t row, int64_t col) {
  std::vector<float>& buffer = buffers.of(o.buffer);
  const int64_t index = o.offset + b * o.stride + col * o.ld + row;
  EXPECT_TRUE(index >= 0 && index < static_cast<int64_t>(buffer.size())) << "index " << index;
  static float dummy = 0.0f;
  return index >= 0 && index < static_cast<int64_t>(buffer.size()) ? buffer[index] : dummy;
}

// cublasSgemmStridedBatched with beta = 0, in float64 sums.
void RunGemm(const StridedGemm& g, Buffers& buffers) {
  ASSERT_GE(g.a.ld, g.transpose_a ? g.k : g.m);
  ASSERT_GE(g.b.ld, g.k);
  ASSERT_GE(g.c.ld, g.m);
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double sum = 0.0;
        for (int64_t p = 0; p < g.k; ++p)
          sum += static_cast<double>(g.transpose_a ? At(buffers, g.a, b, p, i) : At(buffers, g.a, b, i, p)) *
                 At(buffers, g.b, b, p, j);
        At(buffers, g.c, b, i, j) = static_cast<float>(g.alpha * sum);
      }
}

// The softmax kernel's contract (SoftmaxStep).
void RunSoftmax(const SoftmaxStep& s, int64_t heads, std::vector<float>& scores) {
  ASSERT_LE(heads * s.rows * s.keys, static_cast<int64_t>(scores.size()));
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < s.rows; ++i) {
      float* row = scores.data() + (h * s.rows + i) * s.keys;
      const int64_t visible = s.first_row + i + 1;
      ASSERT_LE(visible, s.keys);
      double largest = -INFINITY, sum = 0.0;
      for (int64_t j = 0; j < visible; ++j) largest = std::max<double>(largest, row[j]);
      for (int64_t j = 0; j < visible; ++j) sum += std::exp(row[j] - largest);
      for (int64_t j = 0; j < visible; ++j) row[j] = static_cast<float>(std::exp(row[j] - largest) / sum);
      for (int64_t j = visible; j < s.keys; ++j) row[j] = 0.0f;
    }
}

class AttentionPlan : public ::testing::TestWithParam<AttentionDims> {};

TEST_P(AttentionPlan, ExecutedOnTheCpuMatchesNaiveCausalAttention) {
  const AttentionDims d = GetParam();
  const int64_t hd = d.head_dim, q_width = d.heads * hd, kv_width = d.kv_heads * hd;
  std::mt19937_64 rng(static_cast<uint64_t>(d.tokens * 100 + d.heads));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Buffers buffers{std::vector<float>(d.tokens * q_width), std::vector<float>(d.tokens * kv_width),
                  std::vector<float>(d.tokens * kv_width), std::vector<float>(AttentionScratchFloats(d), NAN),
                  std::vector<float>(d.tokens * q_width, NAN)};
  for (auto* x : {&buffers.q, &buffers.k, &buffers.v})
    for (float& value : *x) value = normal(rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (const AttentionBlockPlan& block : PlanCausalAttention(d, scale)) {
    for (const StridedGemm& g : block.scores) RunGemm(g, buffers);
    RunSoftmax(block.softmax, d.heads, buffers.scores);
    for (const StridedGemm& g : block.values) RunGemm(g, buffers);
  }

  double worst = 0.0;
  for (int64_t h = 0; h < d.heads; ++h) {
    const int64_t kv = h / (d.heads / d.kv_heads);
    for (int64_t i = 0; i < d.tokens; ++i) {
      std::vector<double> p(i + 1);
      double largest = -INFINITY, sum = 0.0;
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0.0;
        for (int64_t c = 0; c < hd; ++c)
          dot += static_cast<double>(buffers.q[i * q_width + h * hd + c]) * buffers.k[j * kv_width + kv * hd + c];
        p[j] = dot * scale;
        largest = std::max(largest, p[j]);
      }
      for (double& value : p) sum += value = std::exp(value - largest);
      for (int64_t c = 0; c < hd; ++c) {
        double expected = 0.0;
        for (int64_t j = 0; j <= i; ++j) expected += p[j] / sum * buffers.v[j * kv_width + kv * hd + c];
        const double error = std::fabs(buffers.out[i * q_width + h * hd + c] - expected);
        worst = std::isfinite(error) ? std::max(worst, error) : INFINITY;
      }
    }
  }
  EXPECT_LT(worst, 1e-5);  // float32 storage of scores and output; a wrong index is O(1) off
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionPlan,
                         ::testing::Values(AttentionDims{1, 5, 5, 16}, AttentionDims{7, 6, 3, 34},
                                           AttentionDims{129, 12, 3, 16}, AttentionDims{257, 4, 2, 8},
                                           AttentionDims{300, 8, 1, 10}),
                         [](const ::testing::TestParamInfo<AttentionDims>& info) {
                           const AttentionDims& d = info.param;
                           return std::to_string(d.tokens) + "_tokens_" + std::to_string(d.heads) + "_over_" +
                                  std::to_string(d.kv_heads) + "_heads_of_" + std::to_string(d.head_dim);
                         });

TEST(AttentionPlan, ExecutesAboutTheCausalFlopsAtLongWindows) {
  const AttentionDims d{2048, 32, 8, 128};
  // 16 blocks of 128 rows: Σ_b 128·128·b = 128²·136 query-key pairs against 2048·2049/2.
  EXPECT_NEAR(ExecutedAttentionFlops(d) / CausalAttentionFlops(d), 128.0 * 128.0 * 136.0 / (2048.0 * 2049.0 / 2.0),
              1e-12);
}

}  // namespace
}  // namespace qshard::gpu
