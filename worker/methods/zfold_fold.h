// Folding Z-Fold's ζ away so a checkpoint carries no extra tensors (anchors.md §1.3,
// conventions.md "Z-Fold with grouped-query attention"): a linear stored as W·diag(ζ)⁻¹ reads
// its input multiplied by ζ, so ζ multiplies the input's producer — a norm (γ, and β for OPT's
// LayerNorm) or the rows of the linear that makes the input (the value projection before the
// output projection, the up projection before SwiGLU's down projection, OPT's fc1 before ReLU
// and fc2; ζ > 0 keeps ReLU's positive homogeneity).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "worker/methods/layer_method.h"
#include "worker/methods/zfold_search.h"

namespace qshard {

struct ZetaProducer {
  enum class Kind {
    kNone,        // the input cannot absorb ζ (OPT post-LN: it is also the residual stream); ζ = 1
    kNorm,        // γ (and β) of a norm
    kLinearRows,  // rows (and bias) of a linear of the same layer
  };
  Kind kind = Kind::kNone;
  std::string norm_weight, norm_bias;  // kNorm; norm_bias empty for RMSNorm
  std::string linear;                  // kLinearRows
  // Input column → producer channel. Under grouped-query attention the output projection's
  // columns of all query heads sharing a KV head map to that head's value rows: one ζ each.
  ZetaChannels channels;
};

// The producer of the input of the group whose first linear is `first_linear`.
absl::StatusOr<ZetaProducer> FindZetaProducer(const ModelConfig& config, const std::string& first_linear);

// Multiplies producer channel ch by channel_zeta[ch] and returns the multipliers the producer
// now actually applies, which the consumer must be quantized with:
// - norms: γ·ζ (and β·ζ) in float; returns ζ.
// - a linear already quantized (present in `quantized`): each per-row scale s becomes the
//   storable s' = fp16(s·ζ) (when fp16_scales), the dequantized weight is recomputed from the
//   codes and installed, the bias scaled. Per channel (one group) it returns s'/s, so the fold
//   is exact up to float rounding; with several groups each group's scale rounds differently
//   and it returns ζ, leaving a relative error ≤ 2⁻¹¹ per stored scale.
// - a linear not quantized (fp): rows and bias × ζ; returns ζ.
absl::StatusOr<std::vector<float>> FoldIntoProducer(const ZetaProducer& producer, std::span<const float> channel_zeta,
                                                    bool fp16_scales, DecoderLayerWeights& weights,
                                                    QuantizedLayer* quantized);

// A linear solved with column_scale ζ, once ζ lives in its producer: drops column_scale, so
// the codes and scales describe W·diag(ζ)⁻¹ (the GPTQ layout), and installs that weight.
void FoldColumnScaleAway(const std::string& linear, DecoderLayerWeights& weights, QuantizedLayer& quantized);

}  // namespace qshard
