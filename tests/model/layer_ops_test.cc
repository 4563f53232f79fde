// The building blocks of a layer against direct float64 computations on random inputs of
// awkward sizes: norms, linear layers, RoPE (HF rotate_half), causal GQA attention and the
// key/value cache's attention.
#include <algorithm>
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "worker/model/attention.h"
#include "worker/model/kv_cache.h"
#include "worker/model/layer_ops.h"
#include "worker/model/rotary.h"
#include "worker/model/vector_exp.h"

namespace qshard {
namespace {

Tensor RandomTensor(std::vector<int64_t> shape, std::mt19937& rng, float scale = 1.0f, float offset = 0.0f) {
  Tensor t(std::move(shape));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : t.values()) v = offset + scale * normal(rng);
  return t;
}

double MaxAbsDiff(const Tensor& a, const std::vector<double>& b) {
  double m = 0.0;
  for (int64_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

TEST(LayerOpsTest, RmsNormMatchesDefinition) {
  std::mt19937 rng(1);
  const Tensor x = RandomTensor({7, 33}, rng, 3.0f);
  const Tensor w = RandomTensor({33}, rng, 0.2f, 1.0f);
  const Tensor y = RmsNorm(x, w, 1e-6);
  std::vector<double> expected(x.size());
  for (int64_t r = 0; r < 7; ++r) {
    double ms = 0.0;
    for (int64_t i = 0; i < 33; ++i) ms += static_cast<double>(x.at(r, i)) * x.at(r, i) / 33.0;
    for (int64_t i = 0; i < 33; ++i) expected[r * 33 + i] = x.at(r, i) / std::sqrt(ms + 1e-6) * w[i];
  }
  EXPECT_LT(MaxAbsDiff(y, expected), 1e-5);
}

TEST(LayerOpsTest, LayerNormMatchesDefinitionWithOutlierChannel) {
  std::mt19937 rng(2);
  Tensor x = RandomTensor({5, 29}, rng, 1.0f, 40.0f);  // a large mean stresses the variance
  for (int64_t r = 0; r < 5; ++r) x.at(r, 3) = 500.0f;
  const Tensor w = RandomTensor({29}, rng, 0.2f, 1.0f);
  const Tensor b = RandomTensor({29}, rng, 0.1f);
  const Tensor y = LayerNorm(x, w, b, 1e-5);
  std::vector<double> expected(x.size());
  for (int64_t r = 0; r < 5; ++r) {
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < 29; ++i) mean += x.at(r, i) / 29.0;
    for (int64_t i = 0; i < 29; ++i) var += (x.at(r, i) - mean) * (x.at(r, i) - mean) / 29.0;
    for (int64_t i = 0; i < 29; ++i) expected[r * 29 + i] = (x.at(r, i) - mean) / std::sqrt(var + 1e-5) * w[i] + b[i];
  }
  EXPECT_LT(MaxAbsDiff(y, expected), 1e-5);
}

TEST(LayerOpsTest, LinearWithAndWithoutBias) {
  std::mt19937 rng(3);
  Linear linear{RandomTensor({13, 19}, rng), RandomTensor({13}, rng), nullptr};
  for (const int64_t tokens : {11, 1}) {  // a GEMM, and one token's GEMV
    const Tensor x = RandomTensor({tokens, 19}, rng);
    for (bool bias : {false, true}) {
      Linear l = linear;
      if (!bias) l.bias = Tensor();
      const Tensor y = ApplyLinear(x, l);
      ASSERT_EQ(y.shape(), (std::vector<int64_t>{tokens, 13}));
      std::vector<double> expected(tokens * 13);
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t o = 0; o < 13; ++o) {
          double s = bias ? linear.bias[o] : 0.0;
          for (int64_t i = 0; i < 19; ++i) s += static_cast<double>(x.at(t, i)) * linear.weight.at(o, i);
          expected[t * 13 + o] = s;
        }
      EXPECT_LT(MaxAbsDiff(y, expected), 1e-4) << "bias " << bias << ", tokens " << tokens;
    }
  }
}

TEST(LayerOpsTest, Activations) {
  Tensor gate({1, 3}, {-2.0f, 0.0f, 3.0f});
  const Tensor up({1, 3}, {1.5f, 7.0f, -0.5f});
  SiluMultiplyInPlace(gate, up);
  EXPECT_NEAR(gate[0], -2.0 / (1.0 + std::exp(2.0)) * 1.5, 1e-6);
  EXPECT_EQ(gate[1], 0.0f);
  EXPECT_NEAR(gate[2], 3.0 / (1.0 + std::exp(-3.0)) * -0.5, 1e-6);
  Tensor x({1, 3}, {-1.0f, 0.5f, 0.0f});
  ReluInPlace(x);
  EXPECT_EQ(x.values(), (std::vector<float>{0.0f, 0.5f, 0.0f}));
}

TEST(VectorExpTest, WithinOneUlpOfLibmAndClamped) {
  std::vector<float> x;
  for (float v = -87.0f; v < 88.0f; v += 0.0137f) x.push_back(v);
  x.push_back(-1000.0f);
  x.push_back(1000.0f);
  std::vector<float> y = x;
  ExpInPlace(y.data(), static_cast<int64_t>(y.size()));
  double worst_ulp = 0.0;
  for (size_t i = 0; i + 2 < x.size(); ++i) {
    const float e = std::exp(x[i]);
    worst_ulp = std::max(worst_ulp, static_cast<double>(std::fabs(y[i] - e) / (std::nextafter(e, INFINITY) - e)));
  }
  EXPECT_LE(worst_ulp, 2.0);
  EXPECT_GE(y[y.size() - 2], 0.0f);
  EXPECT_LT(y[y.size() - 2], 1e-37f);
  EXPECT_TRUE(std::isfinite(y.back()));
  EXPECT_GT(y.back(), 1e38f);
}

TEST(RotaryTest, RotatesHalvesByPosition) {
  std::mt19937 rng(4);
  const int64_t batch = 2, seq = 9, heads = 3, d = 12, first = 5;
  const double theta = 500.0;
  const Tensor x = RandomTensor({batch * seq, heads * d}, rng);
  Tensor y = x;
  RotaryEmbedding(d, theta).Apply(y, heads, batch, seq, first);
  std::vector<double> expected(x.size());
  for (int64_t t = 0; t < batch * seq; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < d; ++i) {
        const int64_t pair = i < d / 2 ? i + d / 2 : i - d / 2;
        const double angle = (first + t % seq) / std::pow(theta, 2.0 * (i % (d / 2)) / d);
        const double rotated = i < d / 2 ? -x.at(t, h * d + pair) : x.at(t, h * d + pair);
        expected[t * heads * d + h * d + i] = x.at(t, h * d + i) * std::cos(angle) + rotated * std::sin(angle);
      }
  EXPECT_LT(MaxAbsDiff(y, expected), 1e-5);
}

// Naive causal GQA attention in float64: out [batch*seq, heads*d], probs [batch, heads, seq, seq].
void ReferenceAttention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& s, double scale,
                        std::vector<double>& out, std::vector<double>& probs) {
  const int64_t d = s.head_dim;
  out.assign(s.batch * s.seq * s.heads * d, 0.0);
  probs.assign(s.batch * s.heads * s.seq * s.seq, 0.0);
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / (s.heads / s.kv_heads);
      for (int64_t i = 0; i < s.seq; ++i) {
        std::vector<double> score(i + 1);
        double max_score = -1e300, sum = 0.0;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0.0;
          for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(q.at(b * s.seq + i, h * d + c)) * k.at(b * s.seq + j, g * d + c);
          score[j] = dot * scale;
          max_score = std::max(max_score, score[j]);
        }
        for (double& e : score) sum += (e = std::exp(e - max_score));
        for (int64_t j = 0; j <= i; ++j) {
          const double p = score[j] / sum;
          probs[((b * s.heads + h) * s.seq + i) * s.seq + j] = p;
          for (int64_t c = 0; c < d; ++c) out[(b * s.seq + i) * s.heads * d + h * d + c] += p * v.at(b * s.seq + j, g * d + c);
        }
      }
    }
}

TEST(AttentionTest, MatchesNaiveGroupedQueryAttention) {
  std::mt19937 rng(5);
  const AttentionShape s{3, 19, 6, 2, 12};
  const Tensor q = RandomTensor({s.batch * s.seq, s.heads * s.head_dim}, rng, 2.0f);
  const Tensor k = RandomTensor({s.batch * s.seq, s.kv_heads * s.head_dim}, rng, 2.0f);
  const Tensor v = RandomTensor({s.batch * s.seq, s.kv_heads * s.head_dim}, rng);
  const float scale = 1.0f / std::sqrt(12.0f);
  std::vector<double> expected_out, expected_probs;
  ReferenceAttention(q, k, v, s, scale, expected_out, expected_probs);
  ThreadPool pool(3);
  Tensor probs;
  const Tensor out = CausalSelfAttention(q, k, v, s, scale, pool, &probs);
  ASSERT_EQ(probs.shape(), (std::vector<int64_t>{3, 6, 19, 19}));
  EXPECT_LT(MaxAbsDiff(out, expected_out), 1e-5);
  EXPECT_LT(MaxAbsDiff(probs, expected_probs), 1e-6);
  // Without probs, and on one thread, the output is the same to the bit.
  ThreadPool single(1);
  EXPECT_EQ(CausalSelfAttention(q, k, v, s, scale, single).values(), out.values());
}

// The online softmax over several key blocks (64 keys each): windows that end inside a
// block and inside a register tile, GQA, a head size that is not a multiple of the tiles,
// scores large enough that a later block raises the running maximum, and a one-token window.
TEST(AttentionTest, OnlineSoftmaxMatchesNaiveAttentionOverKeyBlocks) {
  std::mt19937 rng(6);
  for (const AttentionShape s : {AttentionShape{2, 150, 6, 3, 12}, AttentionShape{1, 129, 4, 1, 20},
                                 AttentionShape{3, 1, 2, 2, 8}}) {
    const Tensor q = RandomTensor({s.batch * s.seq, s.heads * s.head_dim}, rng, 3.0f);
    Tensor k = RandomTensor({s.batch * s.seq, s.kv_heads * s.head_dim}, rng, 3.0f);
    for (int64_t t = 0; t < s.batch * s.seq; ++t)  // keys growing along the window
      for (int64_t c = 0; c < s.kv_heads * s.head_dim; ++c) k.at(t, c) *= 1.0f + 0.02f * static_cast<float>(t % s.seq);
    const Tensor v = RandomTensor({s.batch * s.seq, s.kv_heads * s.head_dim}, rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
    std::vector<double> expected_out, expected_probs;
    ReferenceAttention(q, k, v, s, scale, expected_out, expected_probs);
    ThreadPool pool(2);
    Tensor probs;
    const Tensor out = CausalSelfAttention(q, k, v, s, scale, pool, &probs);
    EXPECT_LT(MaxAbsDiff(out, expected_out), 2e-5) << s.seq;
    EXPECT_LT(MaxAbsDiff(probs, expected_probs), 1e-5) << s.seq;  // scores up to ~50: ulps of exp()
    EXPECT_EQ(CausalSelfAttention(q, k, v, s, scale, pool).values(), out.values()) << s.seq;
    for (const int lanes : AttentionLaneWidths()) {  // every vector width, the same bits
      Tensor probs_at_width;
      EXPECT_EQ(CausalSelfAttention(q, k, v, s, scale, pool, &probs_at_width, lanes).values(), out.values()) << lanes;
      EXPECT_EQ(probs_at_width.values(), probs.values()) << lanes;
      Tensor alone;  // the probabilities without the output
      CausalSoftmaxProbabilities(q, k, s, scale, pool, alone, lanes);
      EXPECT_EQ(alone.values(), probs.values()) << lanes;
    }
    // A tensor of the right shape is reused as it is: every element is overwritten.
    Tensor reused({s.batch, s.heads, s.seq, s.seq});
    std::fill(reused.values().begin(), reused.values().end(), std::nanf(""));
    const float* storage = reused.data();
    EXPECT_EQ(CausalSelfAttention(q, k, v, s, scale, pool, &reused).values(), out.values());
    EXPECT_EQ(reused.data(), storage);
    EXPECT_EQ(reused.values(), probs.values());
  }
}

// The key/value cache's attention: a window's keys and values appended in pieces (a prompt of
// 13, single tokens, a piece of 3), the queries of each piece against the naive causal GQA
// attention of the whole window at the same positions.
TEST(KvCacheTest, AttendMatchesNaiveAttentionOfTheWholeWindow) {
  std::mt19937 rng(8);
  const AttentionShape s{1, 21, 6, 2, 12};
  const Tensor q = RandomTensor({s.seq, s.heads * s.head_dim}, rng, 2.0f);
  const Tensor k = RandomTensor({s.seq, s.kv_heads * s.head_dim}, rng, 2.0f);
  const Tensor v = RandomTensor({s.seq, s.kv_heads * s.head_dim}, rng);
  const float scale = 1.0f / std::sqrt(12.0f);
  std::vector<double> expected_out, expected_probs;
  ReferenceAttention(q, k, v, s, scale, expected_out, expected_probs);
  ModelConfig config;
  config.num_layers = 2;
  config.num_kv_heads = s.kv_heads;
  config.head_dim = s.head_dim;
  KvCache cache(config);
  ThreadPool pool(2);
  const auto rows = [](const Tensor& t, int64_t begin, int64_t end) {
    return Tensor({end - begin, t.cols()}, std::vector<float>(t.row(begin), t.row(end)));
  };
  const int64_t width = s.heads * s.head_dim;
  int64_t begin = 0;
  for (const int64_t end : {13, 14, 15, 16, 17, 18, 21}) {
    cache.Append(1, rows(k, begin, end), rows(v, begin, end));
    ASSERT_EQ(cache.length(1), end);
    const Tensor out = cache.Attend(1, rows(q, begin, end), s, scale, pool);
    const std::vector<double> expected(expected_out.begin() + begin * width, expected_out.begin() + end * width);
    EXPECT_LT(MaxAbsDiff(out, expected), 1e-5) << "positions " << begin << ".." << end;
    begin = end;
  }
  EXPECT_EQ(cache.length(0), 0);
}

}  // namespace
}  // namespace qshard
