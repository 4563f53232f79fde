// RTN and GPTQ as layer methods: every linear of a group is solved on its own with the
// group's shared input statistics; nothing outside the group changes.
#pragma once

#include <memory>

#include "worker/methods/layer_method.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<LayerMethod>> MakePerLinearMethod(const MethodOptions& options);

// Solves one linear of the context's layer with `solver` and `problem` fields filled from the
// context, swaps the dequantized weight in and records the result — the step every method
// ends with.
absl::Status SolveAndInstall(const Solver& solver, LayerProblem problem, const std::string& linear,
                             GroupContext& context);

}  // namespace qshard
