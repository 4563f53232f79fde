// The shape and hyper-parameters of one decoder layer as the device forward pass and its host
// reference see them (the subset of core/model_config.h a layer needs, kept free of Abseil for
// the CUDA-only build and of the CUDA headers for the builds without CUDA, which plan a device's
// memory with it: device_memory_bytes.h), and the four linear groups whose inputs calibration
// collects.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/cuda/cuda_status_plain.h"

namespace qshard::gpu {

enum class LayerKind {
  kOpt,    // LayerNorm (before or after each block), biases, ReLU MLP; positions added outside
  kLlama,  // RMSNorm before each block, RoPE, grouped-query attention, SiLU-gated MLP
};

struct LayerArchitecture {
  LayerKind kind = LayerKind::kLlama;
  int64_t hidden = 0;
  int64_t ffn = 0;  // OPT ffn_dim, LLaMA intermediate_size
  int64_t heads = 0;
  int64_t kv_heads = 0;  // == heads without GQA (always for OPT)
  int64_t head_dim = 0;
  double norm_eps = 1e-6;     // OPT layer_norm_eps, LLaMA rms_norm_eps
  bool norm_before = true;    // OPT do_layer_norm_before; false: OPT-350M's post-LN (LLaMA: true)
  double rope_theta = 10000.0;  // LLaMA
  bool attention_bias = false;  // q, k, v, o carry biases (OPT: enable_bias)
  bool mlp_bias = false;        // fc1/fc2 or gate/up/down carry biases (OPT: enable_bias)

  int64_t q_width() const { return heads * head_dim; }
  int64_t kv_width() const { return kv_heads * head_dim; }
  bool llama() const { return kind == LayerKind::kLlama; }
};

// The inputs of the layer's true-sequential groups, numbered as in worker/model/decoder_layers.h:
// each is the input X of the linears named, the X whose XXᵀ the statistics collect.
enum class LayerGroup {
  kAttentionInput = 0,  // q, k, v: the normed residual (OPT post-LN: the residual itself)
  kOutInput = 1,        // o / out_proj: the attention output before the projection
  kMlpInput = 2,        // gate and up / fc1: the normed residual after the attention block
  kDownInput = 3,       // down / fc2: the MLP's hidden activation
};
inline constexpr int kLayerGroupCount = 4;

// Columns of a group's input [tokens, width].
inline int64_t GroupWidth(const LayerArchitecture& a, LayerGroup group) {
  switch (group) {
    case LayerGroup::kOutInput: return a.q_width();
    case LayerGroup::kDownInput: return a.ffn;
    default: return a.hidden;
  }
}

inline CudaStatus ValidateLayerArchitecture(const LayerArchitecture& a) {
  const auto error = [](const std::string& why) { return CudaStatus::Error("layer architecture: " + why); };
  if (a.hidden <= 0 || a.ffn <= 0 || a.heads <= 0 || a.kv_heads <= 0 || a.head_dim <= 0)
    return error("hidden, ffn, heads, kv_heads and head_dim must be positive");
  if (a.heads % a.kv_heads != 0) return error("heads must be a multiple of kv_heads");
  if (a.kind == LayerKind::kOpt && (a.kv_heads != a.heads || a.q_width() != a.hidden))
    return error("OPT has no grouped-query attention, and heads · head_dim == hidden");
  if (a.kind == LayerKind::kLlama && a.head_dim % 2 != 0) return error("RoPE needs an even head_dim");
  if (a.kind == LayerKind::kLlama && !a.norm_before) return error("LLaMA normalizes before each block");
  if (!(a.norm_eps >= 0.0) || !(a.rope_theta > 0.0)) return error("norm_eps must be >= 0 and rope_theta > 0");
  // cuBLAS takes int dimensions and leading dimensions.
  constexpr int64_t kIntMax = 2147483647;
  if (a.hidden > kIntMax || a.ffn > kIntMax || a.q_width() > kIntMax) return error("a width exceeds cuBLAS's int");
  return CudaStatus();
}

}  // namespace qshard::gpu
