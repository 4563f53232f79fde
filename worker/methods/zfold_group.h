// The per-group flow Z-Fold and aespa share: search ζ, α and zero points for the group's
// stacked linears under their Hessians (zfold_search.h), fold ζ into the input's producer
// (zfold_fold.h), refit α per row with the ζ the producer actually applies (the reference's
// find_only_scale), solve each linear onto those fixed grids with its own solver, and fold the
// column scale away so the solution holds the plain GPTQ form.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/methods/layer_method.h"
#include "worker/solvers/solver.h"

namespace qshard {

struct GroupLinear {
  std::string name;
  // The Hessians of its equal row blocks (LayerProblem::hessians): the search scores its rows
  // with them and its solver gets them.
  std::vector<const HessianSum*> hessians;
  const Solver* solver = nullptr;
};

// When the group is partial (a sibling reading the same input stays in full precision), ζ is
// not folded into a norm they share (the sibling would read scaled inputs): ζ stays 1 and
// only α and the zero points are searched.
absl::StatusOr<GroupSolution> SolveFoldedGroup(std::span<const GroupLinear> linears, const MethodOptions& options,
                                               const GroupProblem& group);

}  // namespace qshard
