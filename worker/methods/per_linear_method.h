// RTN, GPTQ and FineQuant as layer methods: every linear of a group is solved on its own with
// the group's shared input statistics (none for RTN and FineQuant); nothing outside the group
// changes.
#pragma once

#include <memory>

#include "worker/methods/layer_method.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeRtnMethod(const MethodOptions& options);
absl::StatusOr<std::unique_ptr<LayerMethod>> MakeGptqMethod(const MethodOptions& options);
absl::StatusOr<std::unique_ptr<LayerMethod>> MakeFineQuantMethod(const MethodOptions& options);

// The group size FineQuant gives a linear with this weight (worker/solvers/finequant.h): the
// job asks before solving, so the checkpoint can declare the linear's tensors.
absl::StatusOr<int> FineQuantGroupSizeOf(const Tensor& weight, const MethodOptions& options);

// Solves one linear of the problem's layer with `solver` (the weight and name filled in from
// the problem) and adds the result and its report to `solution` — the step every method ends
// with. The report's relative error is measured against the layer's weight as it stands.
absl::StatusOr<QuantizedWeight*> SolveLinear(const Solver& solver, LayerProblem problem, const std::string& linear,
                                             const GroupProblem& group, GroupSolution& solution);

}  // namespace qshard
