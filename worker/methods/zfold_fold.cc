#include "worker/methods/zfold_fold.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "worker/quant/quant_grid.h"

namespace qshard {
namespace {

ZetaChannels Identity(int64_t size) {
  ZetaChannels channels;
  channels.channels = size;
  channels.channel_of_column.resize(size);
  std::iota(channels.channel_of_column.begin(), channels.channel_of_column.end(), 0);
  return channels;
}

// Output-projection column (query head h, dim i) is fed by value row (kv head of h, dim i).
ZetaChannels ValueRowsOfHeads(const ModelConfig& c) {
  ZetaChannels channels;
  channels.channels = c.num_kv_heads * c.head_dim;
  const int64_t group = c.num_heads / c.num_kv_heads;
  for (int64_t h = 0; h < c.num_heads; ++h)
    for (int64_t i = 0; i < c.head_dim; ++i)
      channels.channel_of_column.push_back(static_cast<int32_t>((h / group) * c.head_dim + i));
  return channels;
}

ZetaProducer Norm(const std::string& weight, const std::string& bias, int64_t size) {
  ZetaProducer p;
  p.kind = ZetaProducer::Kind::kNorm;
  p.norm_weight = weight;
  p.norm_bias = bias;
  p.channels = Identity(size);
  return p;
}

ZetaProducer Rows(const std::string& linear, ZetaChannels channels) {
  ZetaProducer p;
  p.kind = ZetaProducer::Kind::kLinearRows;
  p.linear = linear;
  p.channels = std::move(channels);
  return p;
}

Tensor ScaledRows(const Tensor& weight, std::span<const float> factor) {
  Tensor scaled = weight;
  for (int64_t r = 0; r < scaled.dim(0); ++r)
    for (int64_t c = 0; c < scaled.dim(1); ++c) scaled.at(r, c) *= factor[r];
  return scaled;
}

// The bias rewrite of a linear whose rows are scaled by `factor`; none when it has no bias.
void AddScaledBias(const std::string& name, const Linear& linear, std::span<const float> factor,
                   std::vector<TensorRewrite>& rewrites) {
  if (!linear.has_bias()) return;
  Tensor bias = linear.bias;
  for (int64_t r = 0; r < bias.size(); ++r) bias[r] *= factor[r];
  rewrites.push_back({TensorRewrite::Target::kLinearBias, name, std::move(bias)});
}

}  // namespace

absl::StatusOr<ZetaProducer> FindZetaProducer(const ModelConfig& c, const std::string& first_linear) {
  if (c.arch == Architecture::kLlama) {
    if (first_linear == "self_attn.q_proj") return Norm("input_layernorm.weight", "", c.hidden_size);
    if (first_linear == "self_attn.o_proj") return Rows("self_attn.v_proj", ValueRowsOfHeads(c));
    if (first_linear == "mlp.gate_proj" || first_linear == "mlp.up_proj")
      return Norm("post_attention_layernorm.weight", "", c.hidden_size);
    // SwiGLU's product silu(gate)·up is linear in the up branch (bias included).
    if (first_linear == "mlp.down_proj") return Rows("mlp.up_proj", Identity(c.intermediate_size));
  } else {
    // Post-LN OPT (350M): the norms' outputs are also the residual stream, which ζ would change.
    if (first_linear == "self_attn.q_proj")
      return c.do_layer_norm_before
                 ? Norm("self_attn_layer_norm.weight", "self_attn_layer_norm.bias", c.hidden_size)
                 : ZetaProducer{};
    if (first_linear == "self_attn.out_proj") return Rows("self_attn.v_proj", ValueRowsOfHeads(c));
    if (first_linear == "fc1")
      return c.do_layer_norm_before ? Norm("final_layer_norm.weight", "final_layer_norm.bias", c.hidden_size)
                                    : ZetaProducer{};
    // relu(ζ·z) = ζ·relu(z) needs ζ > 0 (the search keeps it so); other activations do not fold.
    if (first_linear == "fc2")
      return c.activation == "relu" ? Rows("fc1", Identity(c.intermediate_size)) : ZetaProducer{};
  }
  return absl::InvalidArgumentError(absl::StrCat("Z-Fold: no known producer for the input of '", first_linear,
                                                 "' in a ", std::string(ArchitectureName(c.arch)), " layer"));
}

absl::StatusOr<ProducerFold> FoldIntoProducer(const ZetaProducer& producer, std::span<const float> channel_zeta,
                                              bool fp16_scales, const DecoderLayerWeights& weights,
                                              const QuantizedLayer* quantized) {
  ProducerFold fold;
  fold.applied.assign(channel_zeta.begin(), channel_zeta.end());
  const int64_t channels = static_cast<int64_t>(fold.applied.size());
  if (producer.kind == ZetaProducer::Kind::kNone) return fold;

  if (producer.kind == ZetaProducer::Kind::kNorm) {
    for (const std::string& name : {producer.norm_weight, producer.norm_bias}) {
      if (name.empty()) continue;
      auto it = weights.norms.find(name);
      if (it == weights.norms.end() || it->second.size() != channels)
        return absl::FailedPreconditionError(
            absl::StrCat("Z-Fold: norm '", name, "' is missing or does not have ", channels, " values"));
      Tensor scaled = it->second;
      for (int64_t ch = 0; ch < channels; ++ch) scaled[ch] *= channel_zeta[ch];
      fold.rewrites.push_back({TensorRewrite::Target::kNorm, name, std::move(scaled)});
    }
    return fold;
  }

  auto it = weights.linears.find(producer.linear);
  if (it == weights.linears.end() || it->second.weight.dim(0) != channels)
    return absl::FailedPreconditionError(
        absl::StrCat("Z-Fold: linear '", producer.linear, "' is missing or does not have ", channels, " rows"));
  const Linear& linear = it->second;
  const QuantizedWeight* solved = nullptr;
  if (quantized != nullptr) {
    auto found = quantized->linears.find(producer.linear);
    if (found != quantized->linears.end()) solved = &found->second;
  }
  if (solved == nullptr) {
    fold.rewrites.push_back({TensorRewrite::Target::kLinearWeight, producer.linear, ScaledRows(linear.weight, fold.applied)});
    AddScaledBias(producer.linear, linear, fold.applied, fold.rewrites);
    return fold;
  }

  Tensor scales = solved->scales;
  const int64_t groups = solved->groups();
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t r = 0; r < channels; ++r) {
      float& scale = scales.at(g, r);
      const float folded = scale * channel_zeta[r];
      const float stored = fp16_scales ? RoundScaleToFp16(folded) : folded;
      if (groups == 1) fold.applied[r] = static_cast<float>(static_cast<double>(stored) / scale);
      scale = stored;
    }
  fold.rewrites.push_back({TensorRewrite::Target::kQuantizedScales, producer.linear, std::move(scales)});
  AddScaledBias(producer.linear, linear, fold.applied, fold.rewrites);
  return fold;
}

}  // namespace qshard
