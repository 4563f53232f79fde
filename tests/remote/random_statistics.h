// Random statistics of awkward sizes for the tests of the wire and of the workers' data plane.
#pragma once

#include <cmath>
#include <random>

#include "engine/worker_client.h"

namespace qshard::testing {

inline HessianSum RandomSum(int64_t dim, std::mt19937& rng) {
  std::normal_distribution<double> normal;
  HessianSum sum(dim);
  sum.tokens = 17;
  for (double& v : sum.sum) v = normal(rng);
  for (float& v : sum.abs_max) v = static_cast<float>(std::fabs(normal(rng)));
  return sum;
}

// With aespa's attention sums: 4 query heads over 2 key/value heads of `head_dim`, windows of 9.
inline GroupStatistics RandomAttentionStatistics(int64_t hidden, int64_t head_dim, std::mt19937& rng) {
  GroupStatistics statistics;
  statistics.inputs = RandomSum(hidden, rng);
  AttentionStats& attention = statistics.attention.emplace();
  attention.heads = 4;
  attention.kv_heads = 2;
  attention.head_dim = head_dim;
  attention.hidden = hidden;
  attention.seq = 9;
  attention.values = {RandomSum(hidden, rng), RandomSum(hidden, rng)};
  attention.queries = {RandomSum(head_dim, rng), RandomSum(head_dim, rng)};
  attention.keys = {RandomSum(head_dim, rng), RandomSum(head_dim, rng)};
  return statistics;
}

}  // namespace qshard::testing
