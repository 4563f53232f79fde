// The per-group flow Z-Fold and aespa share: search ζ, α and zero points for the group's
// stacked linears under their Hessians (zfold_search.h), fold ζ into the input's producer
// (zfold_fold.h), refit α per row with the ζ the producer actually applies (the reference's
// find_only_scale) — the shared part — then solve each linear onto those fixed grids with its
// own solver, and fold the column scale away so the solution holds the plain GPTQ form. The
// two steps run together (SolveGroup) or apart (SolveShared, SolveLinears: the linears on
// different workers), with the same bits.
#pragma once

#include <memory>
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

// The group's linears in group order, and the solvers they point to when made per group.
struct FoldedLinears {
  std::vector<GroupLinear> linears;
  std::vector<std::unique_ptr<Solver>> solvers;
};

// When the group is partial (a sibling reading the same input stays in full precision), ζ is
// not folded into a norm they share (the sibling would read scaled inputs): ζ stays 1 and
// only α and the zero points are searched.
class FoldedGroupMethod : public LayerMethod {
 public:
  explicit FoldedGroupMethod(const MethodOptions& options) : options_(options) {}

  absl::StatusOr<GroupSolution> SolveGroup(const GroupProblem& group) const final;
  absl::StatusOr<SharedGroupPart> SolveShared(const GroupProblem& group) const final;
  absl::StatusOr<GroupSolution> SolveLinears(const GroupProblem& group, const SharedGroupPart& shared,
                                             std::span<const std::string> linears) const final;

 protected:
  // All of group.linears with their Hessians, and solvers for those in `solved` (the others'
  // may be left null: the shared search runs none, a worker solving some linears only theirs).
  virtual absl::StatusOr<FoldedLinears> Linears(const GroupProblem& group,
                                                std::span<const std::string> solved) const = 0;
  const MethodOptions& options() const { return options_; }
  // The problem of one of the group's linears given the shared part (its grids checked).
  absl::StatusOr<LayerProblem> LinearProblem(const GroupProblem& group, const SharedGroupPart& shared,
                                             const GroupLinear& linear) const;

 private:
  MethodOptions options_;
};

}  // namespace qshard
