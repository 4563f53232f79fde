// RTN and GPTQ as layer methods: every linear of a group is solved on its own with the
// group's shared input statistics; nothing outside the group changes.
#pragma once

#include <memory>

#include "worker/methods/layer_method.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeRtnMethod(const MethodOptions& options);
absl::StatusOr<std::unique_ptr<LayerMethod>> MakeGptqMethod(const MethodOptions& options);
// The same method over a given solver (GPTQ on a CUDA device, worker/device/cuda_device.h).
std::unique_ptr<LayerMethod> MakePerLinearMethod(std::unique_ptr<Solver> solver);

// Solves one linear of the problem's layer with `solver` (the weight and name filled in from
// the problem) and adds the result and its report to `solution` — the step every method ends
// with. The report's relative error is measured against the layer's weight as it stands.
absl::StatusOr<QuantizedWeight*> SolveLinear(const Solver& solver, LayerProblem problem, const std::string& linear,
                                             const GroupProblem& group, GroupSolution& solution);

}  // namespace qshard
