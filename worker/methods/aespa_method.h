// aespa (Kim et al., NeurIPS 2024; anchors.md §1.2) as a layer method. Per group: Z-Fold's
// quantization parameters under aespa's Hessians (value projection: the per-KV-head
// attention-mixed H_V; query/key and every other linear: E[XXᵀ]), ζ folded into the producer
// as for Z-Fold (so the checkpoint stays an ordinary GPTQ one), GPTQ initialization, then
// AdaRound on the refined loss (query/key weighted by the cross-assigned, RoPE-pulled-back
// output covariances; λ = 1.5 for q/k/v, 1.0 elsewhere).
#pragma once

#include <memory>
#include <string_view>

#include "worker/methods/layer_method.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeAespaMethod(const MethodOptions& options);

// The heads q_proj (query heads), k_proj and v_proj (KV heads) split into for AdaRound's
// per-head work; 0 for every other linear, and for all without AdaRound (nothing per head).
int AespaHeadsOf(const ModelConfig& config, const MethodOptions& options, std::string_view linear);

}  // namespace qshard
