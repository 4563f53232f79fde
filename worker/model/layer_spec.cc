#include "worker/model/layer_spec.h"

namespace qshard {
namespace {

LayerSpec LlamaLayerSpec(const ModelConfig& c) {
  const int64_t q_out = c.num_heads * c.head_dim;
  const int64_t kv_out = c.num_kv_heads * c.head_dim;
  const bool ab = c.attention_bias;
  const bool mb = c.mlp_bias;
  LayerSpec spec;
  spec.linears = {
      {"self_attn.q_proj", q_out, c.hidden_size, ab},
      {"self_attn.k_proj", kv_out, c.hidden_size, ab},
      {"self_attn.v_proj", kv_out, c.hidden_size, ab},
      {"self_attn.o_proj", c.hidden_size, q_out, ab},
      {"mlp.gate_proj", c.intermediate_size, c.hidden_size, mb},
      {"mlp.up_proj", c.intermediate_size, c.hidden_size, mb},
      {"mlp.down_proj", c.hidden_size, c.intermediate_size, mb},
  };
  spec.norms = {{"input_layernorm.weight", c.hidden_size}, {"post_attention_layernorm.weight", c.hidden_size}};
  spec.groups = {{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
                 {"self_attn.o_proj"},
                 {"mlp.gate_proj", "mlp.up_proj"},
                 {"mlp.down_proj"}};
  return spec;
}

LayerSpec OptLayerSpec(const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  const bool b = c.enable_bias;
  LayerSpec spec;
  spec.linears = {
      {"self_attn.q_proj", h, h, b},   {"self_attn.k_proj", h, h, b}, {"self_attn.v_proj", h, h, b},
      {"self_attn.out_proj", h, h, b}, {"fc1", c.intermediate_size, h, b}, {"fc2", h, c.intermediate_size, b},
  };
  // OPT's LayerNorms always carry a bias (enable_bias concerns the linears only).
  spec.norms = {{"self_attn_layer_norm.weight", h}, {"self_attn_layer_norm.bias", h},
                {"final_layer_norm.weight", h},     {"final_layer_norm.bias", h}};
  spec.groups = {{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, {"self_attn.out_proj"}, {"fc1"}, {"fc2"}};
  return spec;
}

}  // namespace

LayerSpec DecoderLayerSpec(const ModelConfig& config) {
  return config.arch == Architecture::kLlama ? LlamaLayerSpec(config) : OptLayerSpec(config);
}

}  // namespace qshard
