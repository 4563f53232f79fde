#include "worker/model/decoder_layers.h"

#include <cmath>

#include "worker/model/attention.h"
#include "worker/model/layer_ops.h"

namespace qshard {
namespace {

bool IsLlama(const LayerRun& run) { return run.config.arch == Architecture::kLlama; }

// The norm in front of group 0 (index 0) or group 2 (index 1); OPT post-LN has none there.
Tensor NormedResidual(const LayerRun& run, const DecoderLayerWeights& w, int index, const Tensor& residual) {
  if (IsLlama(run))
    return RmsNorm(residual, w.norm(index == 0 ? "input_layernorm.weight" : "post_attention_layernorm.weight"),
                   run.config.rms_norm_eps, &run.pool);
  if (!run.config.do_layer_norm_before) return residual;
  const std::string name = index == 0 ? "self_attn_layer_norm" : "final_layer_norm";
  return LayerNorm(residual, w.norm(name + ".weight"), w.norm(name + ".bias"), run.config.layer_norm_eps, &run.pool);
}

// HF OPTDecoderLayer without do_layer_norm_before (OPT-350M) normalizes the residual sum after
// each block instead.
void PostNorm(const LayerRun& run, const DecoderLayerWeights& w, int index, Tensor& residual) {
  if (IsLlama(run) || run.config.do_layer_norm_before) return;
  const std::string name = index == 0 ? "self_attn_layer_norm" : "final_layer_norm";
  residual = LayerNorm(residual, w.norm(name + ".weight"), w.norm(name + ".bias"), run.config.layer_norm_eps, &run.pool);
}

// The query and key projections of x, rotated for LLaMA (positions after `past` cached ones).
struct QueriesAndKeys {
  Tensor q, k;
};
QueriesAndKeys Project(const LayerRun& run, const DecoderLayerWeights& w, const Tensor& x, int64_t past) {
  QueriesAndKeys out{ApplyLinear(x, w.linear("self_attn.q_proj")), ApplyLinear(x, w.linear("self_attn.k_proj"))};
  if (IsLlama(run)) {
    run.rotary.Apply(out.q, run.config.num_heads, run.batch, run.seq, past);
    run.rotary.Apply(out.k, run.config.num_kv_heads, run.batch, run.seq, past);
  }
  return out;
}

AttentionShape ShapeOf(const LayerRun& run) {
  return {run.batch, run.seq, run.config.num_heads, run.config.num_kv_heads, run.config.head_dim};
}

float ScoreScale(const LayerRun& run) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(run.config.head_dim))); }

// q/k/v projections of x (rotated for LLaMA), causal attention, observer hooks; returns the
// attention output before the output projection.
Tensor AttentionBlock(const LayerRun& run, const DecoderLayerWeights& w, const Tensor& x) {
  const int64_t past = run.cache != nullptr ? run.cache->length(run.layer) : 0;
  const auto [q, k] = Project(run, w, x, past);
  const Tensor v = ApplyLinear(x, w.linear("self_attn.v_proj"));
  const AttentionShape shape = ShapeOf(run);
  const float scale = ScoreScale(run);
  if (run.cache != nullptr) {
    run.cache->Append(run.layer, k, v);
    // The prompt (nothing cached before) goes through the window kernel below, like Hidden.
    if (past > 0) return run.cache->Attend(run.layer, q, shape, scale, run.pool);
  }
  const bool wants = run.observer.WantsAttention(run.layer);
  Tensor temporary;
  Tensor* probs = wants ? run.observer.ProbabilitiesScratch(run.layer) : nullptr;
  if (wants && probs == nullptr) probs = &temporary;
  Tensor out = CausalSelfAttention(q, k, v, shape, scale, run.pool, probs);
  if (wants) run.observer.OnAttention(run.layer, *probs, q, k, run.batch, run.seq);
  return out;
}

Tensor MlpHidden(const LayerRun& run, const DecoderLayerWeights& w, const Tensor& x) {
  if (IsLlama(run)) {
    Tensor gate = ApplyLinear(x, w.linear("mlp.gate_proj"));
    SiluMultiplyInPlace(gate, ApplyLinear(x, w.linear("mlp.up_proj")), &run.pool);
    return gate;
  }
  Tensor inner = ApplyLinear(x, w.linear("fc1"));
  ReluInPlace(inner);
  return inner;
}

}  // namespace

Tensor GroupInput(const LayerRun& run, const DecoderLayerWeights& w, int group, const Tensor& residual,
                  const Tensor& previous) {
  switch (group) {
    case 0: return NormedResidual(run, w, 0, residual);
    case 1: return AttentionBlock(run, w, previous);
    case 2: return NormedResidual(run, w, 1, residual);
    default: return MlpHidden(run, w, previous);
  }
}

void ObserveAttention(const LayerRun& run, const DecoderLayerWeights& w, const Tensor& input) {
  if (!run.observer.WantsAttention(run.layer)) return;
  const auto [q, k] = Project(run, w, input, 0);
  Tensor temporary;
  Tensor* probs = run.observer.ProbabilitiesScratch(run.layer);
  if (probs == nullptr) probs = &temporary;
  CausalSoftmaxProbabilities(q, k, ShapeOf(run), ScoreScale(run), run.pool, *probs);
  run.observer.OnAttention(run.layer, *probs, q, k, run.batch, run.seq);
}

void AddGroupOutput(const LayerRun& run, const DecoderLayerWeights& w, int group, const Tensor& input,
                    Tensor& residual) {
  const bool attention = group == 1;
  const char* linear = attention ? (IsLlama(run) ? "self_attn.o_proj" : "self_attn.out_proj")
                                 : (IsLlama(run) ? "mlp.down_proj" : "fc2");
  AddInPlace(residual, ApplyLinear(input, w.linear(linear)));
  PostNorm(run, w, attention ? 0 : 1, residual);
}

void RunDecoderLayer(const LayerRun& run, const DecoderLayerWeights& w, const std::vector<std::string>& group_names,
                     Tensor& hidden) {
  for (int first = 0; first < kLayerGroups; first += 2) {
    const Tensor input = GroupInput(run, w, first, hidden, Tensor());
    run.observer.OnLinearInput(run.layer, group_names[first], input);
    const Tensor inner = GroupInput(run, w, first + 1, hidden, input);
    run.observer.OnLinearInput(run.layer, group_names[first + 1], inner);
    AddGroupOutput(run, w, first + 1, inner, hidden);
  }
}

}  // namespace qshard
