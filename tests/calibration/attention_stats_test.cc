// AttentionStats against direct float64 computations from explicit attention probabilities on
// a small random GQA block, and the RoPE pull-back against rotation matrices taken from the
// forward pass's own RotaryEmbedding. Summed on a pool, KV groups apart, the bytes are the same.
#include "worker/calibration/attention_stats.h"

#include <cmath>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "gtest/gtest.h"
#include "worker/model/rotary.h"

namespace qshard {
namespace {

ModelConfig SmallLlama() {
  ModelConfig c;
  c.arch = Architecture::kLlama;
  c.hidden_size = 24;
  c.num_heads = 6;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.rope_theta = 500.0;  // low base: large angles even at the short positions used here
  return c;
}

Tensor Random(std::vector<int64_t> shape, std::mt19937& rng, float scale = 1.0f) {
  Tensor t(std::move(shape));
  std::normal_distribution<float> normal(0.0f, scale);
  for (float& v : t.values()) v = normal(rng);
  return t;
}

// Causal softmax of random scores: [batch, heads, seq, seq], zero above the diagonal.
Tensor RandomProbs(int64_t batch, int64_t heads, int64_t seq, std::mt19937& rng) {
  Tensor p({batch, heads, seq, seq});
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int64_t m = 0; m < batch * heads; ++m)
    for (int64_t i = 0; i < seq; ++i) {
      float* row = p.data() + (m * seq + i) * seq;
      double sum = 0.0;
      for (int64_t j = 0; j <= i; ++j) sum += row[j] = std::exp(normal(rng));
      for (int64_t j = 0; j <= i; ++j) row[j] = static_cast<float>(row[j] / sum);
    }
  return p;
}

struct Batch {
  Tensor x, probs, q, k;
  int64_t batch;
};

Batch RandomBatch(const ModelConfig& c, int64_t batch, int64_t seq, std::mt19937& rng) {
  return {Random({batch * seq, c.hidden_size}, rng), RandomProbs(batch, c.num_heads, seq, rng),
          Random({batch * seq, c.num_heads * c.head_dim}, rng), Random({batch * seq, c.num_kv_heads * c.head_dim}, rng),
          batch};
}

void Feed(AttentionStatsCollector& collector, const Batch& b, int64_t seq) {
  collector.OnLinearInput(0, "self_attn.q_proj", b.x);
  collector.OnLinearInput(0, "self_attn.o_proj", Tensor({b.batch * seq, 3}));  // other inputs are ignored
  collector.OnAttention(0, b.probs, b.q, b.k, b.batch, seq);
}

void ExpectNear(const std::vector<double>& actual, const std::vector<double>& expected, double rel, const char* what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double scale = 0.0;
  for (double v : expected) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < actual.size(); ++i) EXPECT_NEAR(actual[i], expected[i], rel * scale) << what << " [" << i << "]";
}

// 2/N Σ over windows, tokens of the group's head rows — straight from the definition in fp64.
struct Reference {
  std::vector<std::vector<double>> values, queries, keys;  // normalized, per kv head
};

Reference DirectStats(const ModelConfig& c, const std::vector<Batch>& batches, int64_t seq) {
  const int64_t d = c.hidden_size, hd = c.head_dim, group = c.num_heads / c.num_kv_heads;
  Reference r;
  r.values.assign(c.num_kv_heads, std::vector<double>(d * d, 0.0));
  r.queries.assign(c.num_kv_heads, std::vector<double>(hd * hd, 0.0));
  r.keys.assign(c.num_kv_heads, std::vector<double>(hd * hd, 0.0));
  int64_t tokens = 0;
  for (const Batch& b : batches) {
    tokens += b.batch * seq;
    for (int64_t w = 0; w < b.batch; ++w)
      for (int64_t h = 0; h < c.num_heads; ++h)
        for (int64_t i = 0; i < seq; ++i) {
          std::vector<double> ax(d, 0.0);  // row i of A_h X
          for (int64_t j = 0; j < seq; ++j) {
            const double a = b.probs.data()[((w * c.num_heads + h) * seq + i) * seq + j];
            for (int64_t e = 0; e < d; ++e) ax[e] += a * b.x.at(w * seq + j, e);
          }
          for (int64_t e = 0; e < d; ++e)
            for (int64_t f = 0; f < d; ++f) r.values[h / group][e * d + f] += ax[e] * ax[f];
          const float* q = b.q.row(w * seq + i) + h * hd;
          for (int64_t e = 0; e < hd; ++e)
            for (int64_t f = 0; f < hd; ++f) r.queries[h / group][e * hd + f] += double(q[e]) * q[f];
        }
    for (int64_t t = 0; t < b.batch * seq; ++t)
      for (int64_t g = 0; g < c.num_kv_heads; ++g) {
        const float* k = b.k.row(t) + g * hd;
        for (int64_t e = 0; e < hd; ++e)
          for (int64_t f = 0; f < hd; ++f) r.keys[g][e * hd + f] += double(k[e]) * k[f];
      }
  }
  for (auto* set : {&r.values, &r.queries})
    for (auto& m : *set)
      for (double& v : m) v *= 2.0 / (tokens * group);  // the mean over the group's heads
  for (auto& m : r.keys)
    for (double& v : m) v *= 2.0 / tokens;
  return r;
}

// mean_p R_pᵀ C R_p with R_p's columns read off the forward pass: rotating unit vector e_c at
// position p gives column c of R_p.
std::vector<double> DensePullBack(const std::vector<double>& cov, const ModelConfig& c, int64_t seq) {
  const int64_t hd = c.head_dim;
  RotaryEmbedding rotary(hd, c.rope_theta);
  std::vector<double> g(hd * hd, 0.0);
  for (int64_t p = 0; p < seq; ++p) {
    std::vector<double> r(hd * hd);  // R_p row-major
    for (int64_t col = 0; col < hd; ++col) {
      Tensor unit({seq, hd});
      unit.at(p, col) = 1.0f;
      rotary.Apply(unit, /*heads=*/1, /*batch=*/1, seq);
      for (int64_t row = 0; row < hd; ++row) r[row * hd + col] = unit.at(p, row);
    }
    for (int64_t a = 0; a < hd; ++a)
      for (int64_t b = 0; b < hd; ++b) {
        double sum = 0.0;
        for (int64_t k = 0; k < hd; ++k)
          for (int64_t l = 0; l < hd; ++l) sum += r[k * hd + a] * cov[k * hd + l] * r[l * hd + b];
        g[a * hd + b] += sum / seq;
      }
  }
  return g;
}

TEST(AttentionStatsTest, SumsMatchDirectComputationAndIgnoreBatching) {
  const ModelConfig c = SmallLlama();
  const int64_t seq = 11;
  std::mt19937 rng(7);
  const std::vector<Batch> batches = {RandomBatch(c, 2, seq, rng), RandomBatch(c, 1, seq, rng)};

  AttentionStatsCollector collector(0, c);
  for (const Batch& b : batches) Feed(collector, b, seq);
  collector.OnAttention(1, batches[0].probs, batches[0].q, batches[0].k, 2, seq);  // another layer: ignored
  const AttentionStats stats = collector.Take();
  ASSERT_EQ(stats.values.size(), 2u);
  EXPECT_EQ(stats.seq, seq);
  EXPECT_EQ(stats.values[0].tokens, 3 * seq * 3);  // windows × seq × heads per group

  const Reference ref = DirectStats(c, batches, seq);
  for (int64_t g = 0; g < c.num_kv_heads; ++g) {
    ExpectNear(stats.values[g].Normalized(), ref.values[g], 1e-5, "values");
    ExpectNear(stats.queries[g].Normalized(), ref.queries[g], 1e-5, "queries");
    ExpectNear(stats.keys[g].Normalized(), ref.keys[g], 1e-5, "keys");
  }

  // The same windows one per collector, merged in window order: the same bytes.
  AttentionStats merged;
  for (const Batch& b : batches)
    for (int64_t w = 0; w < b.batch; ++w) {
      Batch one{Tensor({seq, c.hidden_size}), Tensor({1, c.num_heads, seq, seq}),
                Tensor({seq, c.num_heads * c.head_dim}), Tensor({seq, c.num_kv_heads * c.head_dim}), 1};
      std::copy_n(b.x.row(w * seq), seq * c.hidden_size, one.x.data());
      std::copy_n(b.probs.data() + w * c.num_heads * seq * seq, c.num_heads * seq * seq, one.probs.data());
      std::copy_n(b.q.row(w * seq), one.q.size(), one.q.data());
      std::copy_n(b.k.row(w * seq), one.k.size(), one.k.data());
      AttentionStatsCollector single(0, c);
      Feed(single, one, seq);
      if (merged.values.empty()) merged = single.Take();
      else ASSERT_TRUE(merged.Merge(single.Take()).ok());
    }
  for (int64_t g = 0; g < c.num_kv_heads; ++g) {
    EXPECT_EQ(merged.values[g].sum, stats.values[g].sum);
    EXPECT_EQ(merged.queries[g].sum, stats.queries[g].sum);
    EXPECT_EQ(merged.keys[g].sum, stats.keys[g].sum);
  }
  AttentionStats other = AttentionStats::For(c, seq + 1);
  EXPECT_FALSE(merged.Merge(other).ok());

  // The attention hook without the batch's input (or with another window length) adds nothing.
  AttentionStatsCollector orphan(0, c);
  orphan.OnAttention(0, batches[0].probs, batches[0].q, batches[0].k, 2, seq);
  EXPECT_TRUE(orphan.Take().values.empty());
}

// One random batch of 2 windows through a collector, and the sums computed directly.
struct Collected {
  AttentionStats stats;
  Reference reference;
};
Collected CollectTwoWindows(const ModelConfig& c, int64_t seq, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<Batch> batches = {RandomBatch(c, 2, seq, rng)};
  AttentionStatsCollector collector(0, c);
  Feed(collector, batches[0], seq);
  return {collector.Take(), DirectStats(c, batches, seq)};
}

// Windows longer than attention_stats.cc's causal row blocks (64), the last one partial: the
// value sums skip the zeros above the diagonal block by block.
TEST(AttentionStatsTest, LongWindowsInCausalBlocksMatchDirectComputation) {
  const ModelConfig c = SmallLlama();
  const auto [stats, ref] = CollectTwoWindows(c, 150, 9);
  for (int64_t g = 0; g < c.num_kv_heads; ++g) ExpectNear(stats.values[g].Normalized(), ref.values[g], 1e-5, "values");
}

TEST(AttentionStatsTest, SumsOnAPoolAreTheSumsOfOneThread) {
  ModelConfig c = SmallLlama();
  c.num_heads = 9;  // 3 KV groups of 3 on 2 threads
  c.num_kv_heads = 3;
  const int64_t seq = 13;
  std::mt19937 rng(5);
  const std::vector<Batch> batches = {RandomBatch(c, 2, seq, rng), RandomBatch(c, 3, seq, rng)};
  AttentionStatsCollector alone(0, c);
  ThreadPool pool(2);
  AttentionStatsCollector pooled(0, c, &pool);
  for (const Batch& b : batches) {
    Feed(alone, b, seq);
    Feed(pooled, b, seq);
  }
  EXPECT_EQ(pooled.ProbabilitiesScratch(0), pooled.ProbabilitiesScratch(0));  // one tensor across batches
  EXPECT_EQ(pooled.ProbabilitiesScratch(1), nullptr);                         // only for its layer
  const AttentionStats one = alone.Take(), many = pooled.Take();
  ASSERT_EQ(many.values.size(), 3u);
  for (int64_t g = 0; g < c.num_kv_heads; ++g) {
    EXPECT_EQ(many.values[g].sum, one.values[g].sum);
    EXPECT_EQ(many.queries[g].sum, one.queries[g].sum);
    EXPECT_EQ(many.keys[g].sum, one.keys[g].sum);
    EXPECT_EQ(many.values[g].tokens, one.values[g].tokens);
    for (int64_t i = 0; i < c.hidden_size; ++i)  // both triangles
      for (int64_t j = 0; j < i; ++j)
        EXPECT_EQ(many.values[g].sum[i * c.hidden_size + j], many.values[g].sum[j * c.hidden_size + i]);
  }
}

TEST(AttentionStatsTest, CrossWeightingsPullBackThroughTheForwardPassRotation) {
  const ModelConfig c = SmallLlama();
  const int64_t seq = 13;
  const auto [stats, ref] = CollectTwoWindows(c, seq, 11);

  const QueryKeyWeightings w = CrossWeightings(stats, c);
  ASSERT_EQ(w.query.size(), 6u);
  ASSERT_EQ(w.key.size(), 2u);
  for (int64_t h = 0; h < c.num_heads; ++h)  // W_Q is weighted by its kv head's key covariance
    ExpectNear(w.query[h], DensePullBack(ref.keys[h / 3], c, seq), 1e-5, "query weighting");
  for (int64_t g = 0; g < c.num_kv_heads; ++g)  // W_K by its group's mean query covariance
    ExpectNear(w.key[g], DensePullBack(ref.queries[g], c, seq), 1e-5, "key weighting");

  // Without RoPE (OPT) the covariances are used as they are.
  ModelConfig opt = c;
  opt.arch = Architecture::kOpt;
  const QueryKeyWeightings plain = CrossWeightings(stats, opt);
  ExpectNear(plain.query[4], ref.keys[1], 1e-5, "OPT query weighting");
  ExpectNear(plain.key[0], ref.queries[0], 1e-5, "OPT key weighting");
}

}  // namespace
}  // namespace qshard
