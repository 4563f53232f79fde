// The weights of one decoder layer as plain tensors, keyed by Hugging Face name relative to
// the layer ("self_attn.q_proj", "input_layernorm.weight"). Quantization swaps dequantized
// weights into this struct; the forward pass reads nothing else of the layer. A linear of a
// quantized checkpoint may instead carry a kernel that computes its product from the packed form.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qshard {

// x · Wᵀ computed from some other form of W (worker/export/gptq_linear_kernel.h runs the integer
// kernels on a checkpoint's packed weights).
class LinearKernel {
 public:
  virtual ~LinearKernel() = default;
  virtual int64_t out_features() const = 0;
  virtual int64_t in_features() const = 0;
  // x [tokens, in] -> [tokens, out], without bias.
  virtual Tensor Apply(const Tensor& x) const = 0;
};

struct Linear {
  Tensor weight;  // [out, in], the layout of torch.nn.Linear; empty when `kernel` is set
  Tensor bias;    // [out]; empty when the layer has none
  std::shared_ptr<const LinearKernel> kernel;
  bool has_bias() const { return bias.size() > 0; }
  // [out, in] whichever form holds W.
  std::vector<int64_t> weight_shape() const {
    return kernel ? std::vector<int64_t>{kernel->out_features(), kernel->in_features()} : weight.shape();
  }
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
