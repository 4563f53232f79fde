// The float64 reference of attention_stats_reference.h: plain loops, nothing shared with the
// device code or worker/calibration.
#include "kernels/cuda/attention_stats_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "kernels/cuda/layer_forward_reference.h"

namespace qshard::gpu {
namespace {

// sum [dim²] += Σ_t v_t v_tᵀ for v [tokens, dim] with rows `ld` apart.
void AddOuterProducts(const double* v, int64_t tokens, int64_t dim, int64_t ld, std::vector<double>& sum) {
  for (int64_t t = 0; t < tokens; ++t) {
    const double* row = v + t * ld;
    for (int64_t i = 0; i < dim; ++i)
      for (int64_t j = 0; j < dim; ++j) sum[i * dim + j] += row[i] * row[j];
  }
}

}  // namespace

ReferenceAttentionStats EmptyReferenceStats(const AttentionStatsDims& d) {
  ReferenceAttentionStats stats;
  stats.values.assign(d.kv_heads, std::vector<double>(d.hidden * d.hidden, 0.0));
  stats.queries.assign(d.kv_heads, std::vector<double>(d.head_dim * d.head_dim, 0.0));
  stats.keys.assign(d.kv_heads, std::vector<double>(d.head_dim * d.head_dim, 0.0));
  return stats;
}

void AddReferenceWindow(const AttentionStatsDims& d, const float* x, const float* q, const float* k, int64_t tokens,
                        ReferenceAttentionStats& stats) {
  const int64_t hd = d.head_dim, q_width = d.heads * hd, kv_width = d.kv_heads * hd, group = d.heads / d.kv_heads;
  const std::vector<double> xs(x, x + tokens * d.hidden), qs(q, q + tokens * q_width), ks(k, k + tokens * kv_width);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> probabilities(tokens), mixed(tokens * d.hidden);
  for (int64_t h = 0; h < d.heads; ++h) {
    const int64_t g = h / group;
    std::fill(mixed.begin(), mixed.end(), 0.0);
    for (int64_t i = 0; i < tokens; ++i) {
      CausalProbabilitiesRow(qs.data() + i * q_width + h * hd, ks.data() + g * hd, kv_width, hd, i, scale,
                             probabilities.data());
      for (int64_t j = 0; j <= i; ++j)
        for (int64_t c = 0; c < d.hidden; ++c) mixed[i * d.hidden + c] += probabilities[j] * xs[j * d.hidden + c];
    }
    AddOuterProducts(mixed.data(), tokens, d.hidden, d.hidden, stats.values[g]);
    AddOuterProducts(qs.data() + h * hd, tokens, hd, q_width, stats.queries[g]);
  }
  for (int64_t g = 0; g < d.kv_heads; ++g) AddOuterProducts(ks.data() + g * hd, tokens, hd, kv_width, stats.keys[g]);
  stats.value_tokens += group * tokens;
  stats.query_tokens += group * tokens;
  stats.key_tokens += tokens;
}

SumDeviation CompareSum(const double* sum, const std::vector<double>& reference, int64_t dim) {
  SumDeviation d;
  double reference_sq = 0.0, error_sq = 0.0;
  for (int64_t i = 0; i < dim; ++i) {
    for (int64_t j = 0; j < dim; ++j) {
      const double r = reference[i * dim + j];
      const double error = std::isfinite(sum[i * dim + j]) ? std::fabs(sum[i * dim + j] - r)
                                                           : std::numeric_limits<double>::infinity();
      const double bound = std::sqrt(reference[i * dim + i] * reference[j * dim + j]);
      d.worst_scaled = std::max(d.worst_scaled, bound > 0.0 ? error / bound
                                                            : (error == 0.0 ? 0.0 : std::numeric_limits<double>::infinity()));
      reference_sq += r * r;
      error_sq += error * error;
    }
  }
  d.relative_frobenius = reference_sq > 0.0 ? std::sqrt(error_sq / reference_sq) : (error_sq == 0.0 ? 0.0 : INFINITY);
  return d;
}

std::vector<AttentionStatsCase> AttentionStatsCheckCases() {
  return {
      {"opt-like, 5 heads of 40", {200, 5, 5, 40}, {1, 7, 129}},
      {"opt-like, 12 heads of 25", {300, 12, 12, 25}, {300}},
      {"llama-like GQA 2:1, 6 heads of 34 over hidden 204", {204, 6, 3, 34}, {7, 129}},
      {"llama-like GQA 4:1, 12 heads of 16 over hidden 180", {180, 12, 3, 16}, {300}},
      {"llama-sized GQA 2:1, 8 heads of 64", {512, 8, 4, 64}, {640}},
  };
}

AttentionStatsWindow RandomAttentionStatsWindow(const AttentionStatsDims& d, int64_t tokens, uint64_t seed) {
  std::mt19937_64 rng(seed);
  AttentionStatsWindow w;
  w.x = RandomHidden(tokens, d.hidden, rng);
  std::normal_distribution<double> normal(0.0, 1.5);
  w.q.resize(tokens * d.heads * d.head_dim);
  w.k.resize(tokens * d.kv_heads * d.head_dim);
  for (float& v : w.q) v = static_cast<float>(normal(rng));
  for (float& v : w.k) v = static_cast<float>(normal(rng));
  return w;
}

}  // namespace qshard::gpu
