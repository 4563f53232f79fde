// The per-architecture wiring of one decoder layer (LLaMA: pre-RMSNorm, RoPE, GQA, SwiGLU;
// OPT: LayerNorm before or after, biases, ReLU MLP), cut at the inputs of its four
// true-sequential groups of linears so calibration can compute each stage once, with the
// weights quantized so far:
//   group 0 (q,k,v)       reads the normed residual;
//   group 1 (o / out)     reads the attention over group 0's projections;
//   group 2 (gate,up/fc1) reads the normed residual after group 1's output was added;
//   group 3 (down / fc2)  reads the MLP's hidden activation of group 2's input.
// RunDecoderLayer composes the stages into the plain forward pass.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "worker/model/decoder_model.h"
#include "worker/model/kv_cache.h"
#include "worker/model/layer_weights.h"
#include "worker/model/rotary.h"

namespace qshard {

struct LayerRun {
  const ModelConfig& config;
  int layer;
  int64_t batch;
  int64_t seq;
  ThreadPool& pool;
  LayerObserver& observer;  // sees the attention internals when it wants them
  const RotaryEmbedding& rotary;
  // Incremental decoding (batch 1): positions start after the cache's, keys and values are
  // appended to it, and once it held positions before, attention reads it (no observer calls).
  KvCache* cache = nullptr;
};

inline constexpr int kLayerGroups = 4;

// The input of `group` for one batch. Groups 1 and 3 are computed from `previous`, the input of
// group 0 or 2; groups 0 and 2 from `residual`.
Tensor GroupInput(const LayerRun& run, const DecoderLayerWeights& weights, int group, const Tensor& residual,
                  const Tensor& previous);

// What group 1's input gives the observer (its attention internals, if it wants them), without
// that input itself: the queries, keys and probabilities of the attention over group 0's input.
void ObserveAttention(const LayerRun& run, const DecoderLayerWeights& weights, const Tensor& input);

// Adds the output of group 1 or 3, computed from its `input`, to the residual stream (and
// applies OPT post-LN's norm). Groups 0 and 2 have no output of their own in the residual.
void AddGroupOutput(const LayerRun& run, const DecoderLayerWeights& weights, int group, const Tensor& input,
                    Tensor& residual);

// The whole layer on `hidden`, in place; `group_names` name each group's input for the
// observer's OnLinearInput (LayerSpec::groups' first linears).
void RunDecoderLayer(const LayerRun& run, const DecoderLayerWeights& weights, const std::vector<std::string>& group_names,
                     Tensor& hidden);

}  // namespace qshard
