// FlattenQuant (Zhang et al., arXiv 2402.17985; anchors.md §1.5; docs/flattenquant.md) as a
// layer method: per group, the shared input's channels above the flatten threshold are split
// (flatten_channels.h), every linear is solved by GPTQ on its flattened weight and flattened
// Hessian (per output channel grids), and its activations get one per-tensor scale from the
// flattened calibration range. --bits 8 makes every linear W8A8; --bits 4 makes a linear W4A4
// when its estimated relative output error at 4 bits (the weight error GPTQ leaves plus the
// activation rounding noise, both relative to ‖W X‖²) is at most
// MethodOptions::flatten_int4_max_error (--int4-max-error), else W8A8.
#pragma once

#include <memory>

#include "worker/methods/layer_method.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeFlattenQuantMethod(const MethodOptions& options);

// Relative output noise of rounding the flattened inputs to a per-tensor grid of step
// `act_step`: E‖Ŵ' ε‖² / E‖W' x'‖² with one rounding error per layer input c, uniform in
// ±step/2 and shared by its copies (they carry the same value x_c / k_c, so they round alike):
// (step² / 12) · Σ_o Σ_c (Σ_{j copies c} Ŵ'[o, j])² · tokens / tr(W' S' W'ᵀ), S' = Σ x' x'ᵀ
// (`stats`). input_channel empty: no split. 0 when W' X' is 0.
double ActivationNoiseError(const Tensor& weight, const Tensor& dequantized, const HessianSum& stats,
                            const std::vector<int32_t>& input_channel, double act_step);

}  // namespace qshard
