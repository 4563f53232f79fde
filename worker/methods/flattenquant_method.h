// FlattenQuant (Zhang et al., arXiv 2402.17985; anchors.md §1.5; docs/flattenquant.md) as a
// layer method: per group, the shared input's channels above the flatten threshold are split
// (flatten_channels.h), every linear is solved by GPTQ on its flattened weight and flattened
// Hessian (per output channel grids), and its activations get one per-tensor scale from the
// flattened calibration range. --bits 8 makes every linear W8A8; --bits 4 makes a linear W4A4
// when its estimated relative output error at 4 bits is at most kInt4MaxError, else W8A8.
#pragma once

#include <memory>

#include "worker/methods/layer_method.h"

namespace qshard {

// The INT4 rule's bound on e_w + e_a: the weight error GPTQ leaves at 4 bits plus the
// activation rounding noise at 4 bits, both relative to ‖W X‖² (docs/flattenquant.md).
inline constexpr double kInt4MaxError = 0.05;

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeFlattenQuantMethod(const MethodOptions& options);

// Relative output noise of rounding the inputs to a per-tensor grid of step `act_step`:
// E‖Ŵ ε‖² / E‖W x‖² with ε uniform in ±step/2, i.e. (step² / 12) · ‖Ŵ‖²_F · tokens / tr(W S Wᵀ),
// S = Σ x xᵀ (`stats`). 0 when W X is 0.
double ActivationNoiseError(const Tensor& weight, const Tensor& dequantized, const HessianSum& stats,
                            double act_step);

}  // namespace qshard
