// The float64 attention statistics that qshard_cuda_attention_stats_check holds the device to
// (kernels/cuda/attention_stats_reference.h) must be the CPU collector's math, and its
// tolerances must hold for float32 products: the CPU's AttentionStatsCollector (the worker's
// aespa statistics) on the check's shapes, window lengths and random inputs, two windows each,
// against the reference. Runs on the CPU only.
#include "kernels/cuda/attention_stats_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>
#include <vector>

#include "core/model_config.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "gtest/gtest.h"
#include "worker/calibration/attention_stats.h"
#include "worker/model/attention.h"

namespace qshard::gpu {
namespace {

ModelConfig ConfigOf(const AttentionStatsDims& d) {
  ModelConfig c;
  c.hidden_size = d.hidden;
  c.num_heads = d.heads;
  c.num_kv_heads = d.kv_heads;
  c.head_dim = d.head_dim;
  return c;
}

// The CPU collector fed as the worker feeds it: the attention input, then the probabilities
// CausalSoftmaxProbabilities forms from q and k.
void AddCpuWindow(const AttentionStatsDims& d, const AttentionStatsWindow& w, int64_t tokens, ThreadPool& pool,
                  AttentionStatsCollector& collector) {
  const Tensor x({tokens, d.hidden}, w.x), q({tokens, d.heads * d.head_dim}, w.q),
      k({tokens, d.kv_heads * d.head_dim}, w.k);
  collector.OnLinearInput(0, "self_attn.q_proj", x);
  Tensor probabilities;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.head_dim)));
  CausalSoftmaxProbabilities(q, k, {1, tokens, d.heads, d.kv_heads, d.head_dim}, scale, pool, probabilities);
  collector.OnAttention(0, probabilities, q, k, 1, tokens);
}

TEST(AttentionStatsReferenceTest, TheCpuCollectorIsWithinTheCheckTolerancesOfTheReference) {
  ThreadPool pool(1);
  uint64_t seed = 7;
  for (const AttentionStatsCase& c : AttentionStatsCheckCases()) {
    const AttentionStatsDims& d = c.dims;
    for (int64_t tokens : c.tokens) {
      AttentionStatsCollector collector(0, ConfigOf(d), &pool);
      ReferenceAttentionStats reference = EmptyReferenceStats(d);
      for (int window = 0; window < 2; ++window) {
        const AttentionStatsWindow w = RandomAttentionStatsWindow(d, tokens, seed++);
        AddCpuWindow(d, w, tokens, pool, collector);
        AddReferenceWindow(d, w.x.data(), w.q.data(), w.k.data(), tokens, reference);
      }
      const AttentionStats cpu = collector.Take();
      ASSERT_EQ(cpu.values.size(), static_cast<size_t>(d.kv_heads));
      SumDeviation worst;
      for (int64_t g = 0; g < d.kv_heads; ++g) {
        EXPECT_EQ(cpu.values[g].tokens, reference.value_tokens);
        EXPECT_EQ(cpu.queries[g].tokens, reference.query_tokens);
        EXPECT_EQ(cpu.keys[g].tokens, reference.key_tokens);
        for (const auto& [sum, ref, dim] : {std::tuple{&cpu.values[g], &reference.values[g], d.hidden},
                                            std::tuple{&cpu.queries[g], &reference.queries[g], d.head_dim},
                                            std::tuple{&cpu.keys[g], &reference.keys[g], d.head_dim}}) {
          const SumDeviation dev = CompareSum(sum->sum.data(), *ref, dim);
          EXPECT_TRUE(WithinStatsTolerance(dev)) << c.name << ", " << tokens << " tokens, head " << g << ": "
                                                 << dev.worst_scaled << ", " << dev.relative_frobenius;
          worst.worst_scaled = std::max(worst.worst_scaled, dev.worst_scaled);
          worst.relative_frobenius = std::max(worst.relative_frobenius, dev.relative_frobenius);
        }
      }
      std::printf("%s, %lld tokens: worst %.2e of sqrt(R_ii R_jj), relative Frobenius %.2e\n", c.name,
                  static_cast<long long>(tokens), worst.worst_scaled, worst.relative_frobenius);
    }
  }
}

TEST(AttentionStatsReferenceTest, TheTolerancesCatchAKeyHeadReadByTheWrongQueryHead) {
  // GQA 2:1: the reference fed k with its two key/value heads swapped, as a head mapping bug
  // would read them.
  const AttentionStatsCase c = AttentionStatsCheckCases()[2];
  const AttentionStatsDims& d = c.dims;
  const int64_t tokens = 129;
  ThreadPool pool(1);
  AttentionStatsCollector collector(0, ConfigOf(d), &pool);
  const AttentionStatsWindow w = RandomAttentionStatsWindow(d, tokens, 3);
  AddCpuWindow(d, w, tokens, pool, collector);
  std::vector<float> swapped = w.k;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t e = 0; e < d.head_dim; ++e)
      std::swap(swapped[t * d.kv_heads * d.head_dim + e], swapped[t * d.kv_heads * d.head_dim + d.head_dim + e]);
  ReferenceAttentionStats reference = EmptyReferenceStats(d);
  AddReferenceWindow(d, w.x.data(), w.q.data(), swapped.data(), tokens, reference);
  const AttentionStats cpu = collector.Take();
  EXPECT_FALSE(WithinStatsTolerance(CompareSum(cpu.values[0].sum.data(), reference.values[0], d.hidden)));
}

}  // namespace
}  // namespace qshard::gpu
