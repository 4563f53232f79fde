// The layer-wise objective every solver is judged by: tr(ΔW H ΔWᵀ) with ΔW = W − Ŵ and
// H = 2·sum/tokens, i.e. twice the mean squared output error per calibration token.
// Computed directly (one float32 Gram matrix of ΔW per row block), for methods that do not get
// it for free.
#pragma once

#include <span>

#include "core/tensor.h"
#include "worker/calibration/hessian.h"

namespace qshard {

// weight, dequantized: [out, in]. Rows are split into hessians.size() equal consecutive blocks,
// block b measured with hessians[b] (the LayerProblem convention). Shapes must agree.
double ProxyError(const Tensor& weight, const Tensor& dequantized,
                  std::span<const HessianSum* const> hessians);

// tr(W H Wᵀ) for one Hessian: ProxyError against an all-zero Ŵ, the same sums in the same order,
// without forming W − 0.
double ProxyEnergy(const Tensor& weight, const HessianSum& hessian);

}  // namespace qshard
