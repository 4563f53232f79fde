// The weights of one decoder layer as plain tensors, keyed by Hugging Face name relative to
// the layer ("self_attn.q_proj", "input_layernorm.weight"). Quantization swaps dequantized
// weights into this struct; the forward pass reads nothing else of the layer.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace qshard {

struct Linear {
  Tensor weight;  // [out, in], the layout of torch.nn.Linear
  Tensor bias;    // [out]; empty when the layer has none
  bool has_bias() const { return bias.size() > 0; }
};

struct DecoderLayerWeights {
  // LLaMA: self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj.
  // OPT: self_attn.{q,k,v,out}_proj, fc1, fc2.
  std::map<std::string, Linear> linears;
  // LLaMA: {input,post_attention}_layernorm.weight.
  // OPT: {self_attn_layer_norm,final_layer_norm}.{weight,bias}.
  std::map<std::string, Tensor> norms;

  const Linear& linear(const std::string& name) const { return linears.at(name); }
  const Tensor& norm(const std::string& name) const { return norms.at(name); }
};

}  // namespace qshard
