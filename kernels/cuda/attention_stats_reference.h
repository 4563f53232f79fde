// A float64 host reference of aespa's attention statistics (attention_stats_device.h), written
// with plain loops from the definitions (worker/calibration/attention_stats.h), for
// qshard_cuda_attention_stats_check to hold the device to; the comparison and its tolerances.
// tests/cuda/attention_stats_reference_test.cc holds the CPU's collector to the same reference
// and tolerances, so that the reference is the worker's math before any GPU runs it.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cuda/attention_stats_device.h"

namespace qshard::gpu {

// Per key/value head: Σ (A_h X)ᵀ(A_h X) over its query heads [hidden²], Σ q_h q_hᵀ and
// Σ k kᵀ [head_dim²], full squares, and the tokens each took.
struct ReferenceAttentionStats {
  std::vector<std::vector<double>> values, queries, keys;
  int64_t value_tokens = 0, query_tokens = 0, key_tokens = 0;  // per head (all heads alike)
};

ReferenceAttentionStats EmptyReferenceStats(const AttentionStatsDims& dims);

// Adds one window (x [tokens, hidden], q [tokens, heads·head_dim], k [tokens, kv_heads·head_dim],
// float32, row-major), every operation in float64: scores q·k/sqrt(head_dim), causal softmax,
// A_h X, the outer products.
void AddReferenceWindow(const AttentionStatsDims& dims, const float* x, const float* q, const float* k,
                        int64_t tokens, ReferenceAttentionStats& stats);

// How far a float64 sum [dim²] made with float32 products is from the reference: the largest
// |S_ij − R_ij| / sqrt(R_ii·R_jj), and the relative Frobenius error.
struct SumDeviation {
  double worst_scaled = 0.0;
  double relative_frobenius = 0.0;
};
SumDeviation CompareSum(const double* sum, const std::vector<double>& reference, int64_t dim);

// The tolerances: float32 scores, softmax, A_h X (sums of ≤ tokens terms) and window products,
// each about sqrt(k)·2⁻²⁴ relative for sums of k terms (≤ 1.5e-6 at 640 tokens), added in
// float64; the CPU's collector (float32 products like the device, other summation orders)
// measures at most 8.9e-7 and 3.1e-7 on the check's cases (attention_stats_reference_test.cc):
// the limits are about 10× those. A query head read against the wrong key/value head fails them
// (the same test).
inline constexpr double kStatsWorstScaled = 1e-5;
inline constexpr double kStatsRelativeFrobenius = 3e-6;
inline bool WithinStatsTolerance(const SumDeviation& d) {
  return d.worst_scaled <= kStatsWorstScaled && d.relative_frobenius <= kStatsRelativeFrobenius;
}

// The cases of the check (and of the CPU test): OPT-like (query width = hidden) and LLaMA-like
// GQA 2:1 and 4:1 shapes, widths not multiples of 32, 1 to 640 tokens.
struct AttentionStatsCase {
  const char* name;
  AttentionStatsDims dims;
  std::vector<int64_t> tokens;
};
std::vector<AttentionStatsCase> AttentionStatsCheckCases();

// Random inputs of one window: x N(0, 1) with a per-token offset and outlier channels
// (layer_forward_reference.h's RandomHidden), q and k N(0, 1.5²) so the scores spread over a few
// units: attention neither flat nor one-hot.
struct AttentionStatsWindow {
  std::vector<float> x, q, k;
};
AttentionStatsWindow RandomAttentionStatsWindow(const AttentionStatsDims& dims, int64_t tokens, uint64_t seed);

}  // namespace qshard::gpu
