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

// What folding ζ into a producer does: the rewrites of the producer's tensors and the
// multipliers the producer then really applies, which the consumer must be quantized with.
struct ProducerFold {
  std::vector<float> applied;  // per producer channel
  std::vector<TensorRewrite> rewrites;
};

// Multiplies producer channel ch by channel_zeta[ch]:
// - norms: γ·ζ (and β·ζ) in float; applies ζ.
// - a linear already quantized (present in `quantized`): each per-row scale s becomes the
//   storable s' = fp16(s·ζ) (when fp16_scales) and the bias is scaled. Per channel (one group)
//   it applies s'/s, so the fold is exact up to float rounding; with several groups each
//   group's scale rounds differently and it applies ζ, leaving a relative error ≤ 2⁻¹¹ per
//   stored scale.
// - a linear kept in full precision: rows and bias × ζ; applies ζ.
absl::StatusOr<ProducerFold> FoldIntoProducer(const ZetaProducer& producer, std::span<const float> channel_zeta,
                                              bool fp16_scales, const DecoderLayerWeights& weights,
                                              const QuantizedLayer* quantized);

}  // namespace qshard
