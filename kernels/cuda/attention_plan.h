// The causal attention of attention_device.h as data: per block of query rows, the
// strided-batched GEMMs (column-major, as cuBLAS takes them) and the softmax step, with every
// operand named by buffer and offset. The device code executes this plan with cuBLAS; a CPU test
// (tests/cuda/attention_plan_test.cc) executes it with plain loops against a naive attention,
// so the leading dimensions, strides and blocking are checked without a GPU. CUDA-free.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace qshard::gpu {

inline constexpr int64_t kAttentionQueryBlock = 128;

struct AttentionDims {
  int64_t tokens = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
};

// The buffers a step reads or writes: q [tokens, heads·head_dim], k and v [tokens,
// kv_heads·head_dim] (row-major), the scores scratch, the output [tokens, heads·head_dim].
enum class AttentionBuffer { kQ, kK, kV, kScores, kOut };

struct GemmOperand {
  AttentionBuffer buffer;
  int64_t offset;  // floats from the buffer's start, for batch index 0
  int64_t ld;      // leading dimension (column-major)
  int64_t stride;  // floats between consecutive batch indices
};

// C = alpha · op(A) · B for each batch index, column-major: op(A) is m × k (A transposed when
// transpose_a), B is k × n, C is m × n.
struct StridedGemm {
  bool transpose_a;
  int64_t m, n, k;
  float alpha;
  GemmOperand a, b, c;
  int64_t batch;
};

// Softmax of the rows of one query block: row i of head h (i < rows) holds `keys` scores at
// scores + (h·rows + i)·keys and may see keys 0..first_row + i; later ones become 0.
struct SoftmaxStep {
  int64_t rows, keys, first_row;
};

struct AttentionBlockPlan {
  std::vector<StridedGemm> scores;  // scores = scale · Kᵀ·Q, one GEMM per query head of a group
  SoftmaxStep softmax;
  std::vector<StridedGemm> values;  // out = V·P, likewise
};

// Queries in blocks of kAttentionQueryBlock rows; a block ending at row e uses keys 0..e only.
// Each head is a column-major matrix inside the row-major activations (leading dimension the
// row width). Batch index g runs over the key/value heads; the r-th GEMM of a step takes query
// head g·group + r, group = heads / kv_heads (the head that reads key/value head g).
inline std::vector<AttentionBlockPlan> PlanCausalAttention(const AttentionDims& d, float scale) {
  const int64_t group = d.heads / d.kv_heads, hd = d.head_dim;
  const int64_t q_ld = d.heads * hd, kv_ld = d.kv_heads * hd;
  std::vector<AttentionBlockPlan> plan;
  for (int64_t first = 0; first < d.tokens; first += kAttentionQueryBlock) {
    const int64_t rows = std::min(kAttentionQueryBlock, d.tokens - first);
    const int64_t keys = first + rows;          // the keys the block's last row sees
    const int64_t head_scores = rows * keys;    // head h's scores at h·head_scores, [rows, keys] row-major
    AttentionBlockPlan block{{}, {rows, keys, first}, {}};
    for (int64_t r = 0; r < group; ++r) {
      // Scores, column-major [keys, rows] = K_gᵀ (K_g: column-major [hd, keys]) · Q_h ([hd, rows]).
      block.scores.push_back({true, keys, rows, hd, scale, {AttentionBuffer::kK, 0, kv_ld, hd},
                              {AttentionBuffer::kQ, first * q_ld + r * hd, q_ld, group * hd},
                              {AttentionBuffer::kScores, r * head_scores, keys, group * head_scores}, d.kv_heads});
      // Output, column-major [hd, rows] = V_g ([hd, keys]) · P_h (column-major [keys, rows]).
      block.values.push_back({false, hd, rows, keys, 1.0f, {AttentionBuffer::kV, 0, kv_ld, hd},
                              {AttentionBuffer::kScores, r * head_scores, keys, group * head_scores},
                              {AttentionBuffer::kOut, first * q_ld + r * hd, q_ld, group * hd}, d.kv_heads});
    }
    plan.push_back(std::move(block));
  }
  return plan;
}

// Floats of the scores scratch the plan needs: heads × min(block, tokens) × tokens.
inline int64_t AttentionScratchFloats(const AttentionDims& d) {
  return d.heads * std::min(kAttentionQueryBlock, d.tokens) * d.tokens;
}

// Multiply-adds counted twice (FLOPs) of the scores and the weighted sum: the causal ones (those
// the mask keeps: row i sees i + 1 keys) and those the plan executes.
inline double CausalAttentionFlops(const AttentionDims& d) {
  return 2.0 * 2.0 * d.heads * d.head_dim * (0.5 * d.tokens * (d.tokens + 1.0));
}
inline double ExecutedAttentionFlops(const AttentionDims& d) {
  double flops = 0.0;
  for (const AttentionBlockPlan& block : PlanCausalAttention(d, 1.0f)) {
    for (const std::vector<StridedGemm>* step : {&block.scores, &block.values})
      for (const StridedGemm& g : *step) flops += 2.0 * g.m * g.n * g.k * g.batch;
  }
  return flops;
}

}  // namespace qshard::gpu
