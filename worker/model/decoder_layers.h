// The per-architecture wiring of one decoder layer (LLaMA: pre-RMSNorm, RoPE, GQA, SwiGLU;
// OPT: LayerNorm before or after, biases, ReLU MLP). Used by DecoderModel::RunLayer.
#pragma once

#include <cstdint>

#include "core/model_config.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "worker/model/decoder_model.h"
#include "worker/model/layer_weights.h"
#include "worker/model/rotary.h"

namespace qshard {

struct LayerRun {
  const ModelConfig& config;
  int layer;
  int64_t batch;
  int64_t seq;
  ThreadPool& pool;
  LayerObserver& observer;
  const RotaryEmbedding& rotary;
};

void RunLlamaLayer(const LayerRun& run, const DecoderLayerWeights& weights, Tensor& hidden);
void RunOptLayer(const LayerRun& run, const DecoderLayerWeights& weights, Tensor& hidden);

}  // namespace qshard
