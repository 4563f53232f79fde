#include "worker/model/decoder_layers.h"

#include <cmath>

#include "worker/model/attention.h"
#include "worker/model/layer_ops.h"

namespace qshard {
namespace {

// q/k/v projections of x (rotated for LLaMA), causal attention, observer hooks; returns the
// attention output before the output projection.
Tensor AttentionBlock(const LayerRun& run, const DecoderLayerWeights& w, const Tensor& x) {
  const ModelConfig& c = run.config;
  Tensor q = ApplyLinear(x, w.linear("self_attn.q_proj"));
  Tensor k = ApplyLinear(x, w.linear("self_attn.k_proj"));
  const Tensor v = ApplyLinear(x, w.linear("self_attn.v_proj"));
  if (c.arch == Architecture::kLlama) {
    run.rotary.Apply(q, c.num_heads, run.batch, run.seq);
    run.rotary.Apply(k, c.num_kv_heads, run.batch, run.seq);
  }
  const AttentionShape shape{run.batch, run.seq, c.num_heads, c.num_kv_heads, c.head_dim};
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  const bool wants = run.observer.WantsAttention(run.layer);
  Tensor probs;
  Tensor out = CausalSelfAttention(q, k, v, shape, scale, run.pool, wants ? &probs : nullptr);
  if (wants) run.observer.OnAttention(run.layer, probs, q, k, run.batch, run.seq);
  return out;
}

}  // namespace

void RunLlamaLayer(const LayerRun& run, const DecoderLayerWeights& w, Tensor& hidden) {
  const double eps = run.config.rms_norm_eps;
  LayerObserver& obs = run.observer;
  {
    const Tensor x = RmsNorm(hidden, w.norm("input_layernorm.weight"), eps);
    obs.OnLinearInput(run.layer, "self_attn.q_proj", x);
    const Tensor attention = AttentionBlock(run, w, x);
    obs.OnLinearInput(run.layer, "self_attn.o_proj", attention);
    AddInPlace(hidden, ApplyLinear(attention, w.linear("self_attn.o_proj")));
  }
  const Tensor x = RmsNorm(hidden, w.norm("post_attention_layernorm.weight"), eps);
  obs.OnLinearInput(run.layer, "mlp.gate_proj", x);
  Tensor gate = ApplyLinear(x, w.linear("mlp.gate_proj"));
  SiluMultiplyInPlace(gate, ApplyLinear(x, w.linear("mlp.up_proj")));
  obs.OnLinearInput(run.layer, "mlp.down_proj", gate);
  AddInPlace(hidden, ApplyLinear(gate, w.linear("mlp.down_proj")));
}

// HF OPTDecoderLayer: with do_layer_norm_before (all OPT sizes but 350M) each block normalizes
// its input; otherwise it normalizes the residual sum after the block.
void RunOptLayer(const LayerRun& run, const DecoderLayerWeights& w, Tensor& hidden) {
  const double eps = run.config.layer_norm_eps;
  const bool pre_norm = run.config.do_layer_norm_before;
  LayerObserver& obs = run.observer;
  const auto norm = [&](const Tensor& x, const std::string& name) {
    return LayerNorm(x, w.norm(name + ".weight"), w.norm(name + ".bias"), eps);
  };
  {
    Tensor normed;
    if (pre_norm) normed = norm(hidden, "self_attn_layer_norm");
    const Tensor& x = pre_norm ? normed : hidden;
    obs.OnLinearInput(run.layer, "self_attn.q_proj", x);
    const Tensor attention = AttentionBlock(run, w, x);
    obs.OnLinearInput(run.layer, "self_attn.out_proj", attention);
    AddInPlace(hidden, ApplyLinear(attention, w.linear("self_attn.out_proj")));
    if (!pre_norm) hidden = norm(hidden, "self_attn_layer_norm");
  }
  Tensor normed;
  if (pre_norm) normed = norm(hidden, "final_layer_norm");
  const Tensor& x = pre_norm ? normed : hidden;
  obs.OnLinearInput(run.layer, "fc1", x);
  Tensor inner = ApplyLinear(x, w.linear("fc1"));
  ReluInPlace(inner);
  obs.OnLinearInput(run.layer, "fc2", inner);
  AddInPlace(hidden, ApplyLinear(inner, w.linear("fc2")));
  if (!pre_norm) hidden = norm(hidden, "final_layer_norm");
}

}  // namespace qshard
