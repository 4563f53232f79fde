// Z-Fold (Jeon et al., EMNLP 2023; anchors.md §1.3) as a layer method: per group, ζ/α/zero by
// the Hessian-weighted alternating search, ζ folded into the input's producer, then GPTQ onto
// the searched grids with step α·ζ per weight. The checkpoint is an ordinary GPTQ one.
#pragma once

#include <memory>

#include "worker/methods/layer_method.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeZfoldMethod(const MethodOptions& options);

}  // namespace qshard
