// Causal softmax self-attention over windows of tokens, with grouped-query attention (query
// head h reads key/value head h / (heads / kv_heads), like HF repeat_kv). Work is spread over
// (window, head) pairs on a thread pool; each pair is a small dense problem done in cache.
// Only the lower triangle is computed, and the output by the online (flash-attention) softmax
// over blocks of keys; probabilities, when asked for, are formed in a pass of their own.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace qshard {

struct AttentionShape {
  int64_t batch = 1;  // windows
  int64_t seq = 0;    // tokens per window
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
};

// q [batch*seq, heads*head_dim], k and v [batch*seq, kv_heads*head_dim] -> [batch*seq, heads*head_dim].
// Scores are (q·k) * scale with future positions masked. If `probs` is given it receives the
// softmax probabilities, [batch, heads, seq, seq], zero above the diagonal (its storage is
// reused when it has that shape already: every element is written); the output is the same to
// the bit with or without them.
// `lanes` picks the tile kernels' vector width (4, 8 or 16, as AttentionLaneWidths lists);
// 0, the default, the widest. Every width gives the same bits (the tests check it).
Tensor CausalSelfAttention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& shape,
                           float scale, ThreadPool& pool, Tensor* probs = nullptr, int lanes = 0);

// The probabilities CausalSelfAttention would write, without its output (and without values):
// for callers that need only them (aespa's statistics). Same bits as through CausalSelfAttention.
void CausalSoftmaxProbabilities(const Tensor& q, const Tensor& k, const AttentionShape& shape, float scale,
                                ThreadPool& pool, Tensor& probs, int lanes = 0);

// The vector widths this CPU runs the tile kernels at, widest first (4 is always there).
std::vector<int> AttentionLaneWidths();

}  // namespace qshard
