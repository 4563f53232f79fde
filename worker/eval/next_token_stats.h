// Per-position statistics of next-token logits, in float64 with max-shifted log-sum-exp:
// the negative log-likelihood of the true next token and, against a base model's logits for
// the same position, KL(base ‖ model) and whether both put the same token first.
#pragma once

#include <cstdint>

namespace qshard {

struct NextTokenStats {
  double nll = 0.0;
  double base_nll = 0.0;       // set by CompareNextToken
  double kl_divergence = 0.0;  // KL(base ‖ model), nats; set by CompareNextToken
  bool top1_agrees = false;    // set by CompareNextToken
};

// log Σ exp(logits[v]) over v < vocab.
double LogSumExp(const float* logits, int64_t vocab);
// Index of the largest logit (the first one on ties).
int64_t ArgMax(const float* logits, int64_t vocab);
// -log softmax(logits)[target].
double NextTokenNll(const float* logits, int64_t vocab, int32_t target);
// Both models' NLL of `target`, their KL divergence and top-1 agreement.
NextTokenStats CompareNextToken(const float* logits, const float* base_logits, int64_t vocab, int32_t target);

}  // namespace qshard
