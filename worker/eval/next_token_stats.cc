#include "worker/eval/next_token_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace qshard {

double LogSumExp(const float* logits, int64_t vocab) {
  const double max_logit = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(logits[v] - max_logit);
  return max_logit + std::log(sum);
}

int64_t ArgMax(const float* logits, int64_t vocab) { return std::max_element(logits, logits + vocab) - logits; }

double NextTokenNll(const float* logits, int64_t vocab, int32_t target) {
  return LogSumExp(logits, vocab) - logits[target];
}

NextTokenStats CompareNextToken(const float* logits, const float* base_logits, int64_t vocab, int32_t target) {
  // The base distribution's unnormalized probabilities serve both its log-sum-exp and the
  // KL weights, saving one exp per vocabulary entry.
  const double base_max = *std::max_element(base_logits, base_logits + vocab);
  std::vector<double> base_weights(vocab);
  double base_sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) base_sum += base_weights[v] = std::exp(base_logits[v] - base_max);
  const double base_log_z = base_max + std::log(base_sum);
  const double log_z = LogSumExp(logits, vocab);
  double kl = 0.0;
  for (int64_t v = 0; v < vocab; ++v)
    kl += base_weights[v] * ((base_logits[v] - base_log_z) - (logits[v] - log_z));
  NextTokenStats stats;
  stats.nll = log_z - logits[target];
  stats.base_nll = base_log_z - base_logits[target];
  stats.kl_divergence = kl / base_sum;
  stats.top1_agrees = ArgMax(logits, vocab) == ArgMax(base_logits, vocab);
  return stats;
}

}  // namespace qshard
