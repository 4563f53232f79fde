// FineQuant as a layer method (docs/finequant.md): each linear's group size is chosen from its
// weight (worker/solvers/finequant.h), then the linears of one true-sequential group — the
// ones that read the same input, which loaders fuse into one module (vLLM's qkv_proj,
// gate_up_proj) — share the finest of their choices, and each is rounded to nearest at it.
// Needs no calibration data.
#pragma once

#include <memory>
#include <span>

#include "worker/methods/layer_method.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeFineQuantMethod(const MethodOptions& options);

// The group size FineQuant gives the linears of one group with these weights (all [out_i, in]):
// the job asks before solving, so the checkpoint can declare their tensors.
absl::StatusOr<int> FineQuantGroupSizeOf(std::span<const Tensor* const> weights, const MethodOptions& options);

}  // namespace qshard
