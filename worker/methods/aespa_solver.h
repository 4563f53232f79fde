// aespa's per-linear solve (anchors.md §1.2 steps 4–5): GPTQ onto the problem's grids (with
// per-head Hessians for the value projection, through LayerProblem::hessians) gives the
// starting rounding and the error-compensated values AdaRound starts from, then AdaRound
// refines the rounding on the refined loss — tr(ΔW H ΔWᵀ) per row block, or for the query and
// key projections Σ_heads tr(G_h ΔW_h H ΔW_hᵀ) with the heads' output weightings G_h.
// A Solver, so the shared group flow (zfold_group.h) runs it like GPTQ. AdaRound runs where its
// RoundingLearner does (rounding_learner.h): the CPU's unless the job's plan gives a device's.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/methods/adaround_rounding.h"
#include "worker/methods/rounding_learner.h"
#include "worker/solvers/solver.h"

namespace qshard {

// output_weightings: empty, or one [d, d] matrix per block of d consecutive output rows.
// rounding.iters == 0 is aespa "without AdaRound": the GPTQ result as it is. learner: where
// AdaRound runs, gptq: the GPTQ solver its starting points come from, for the same spec (both
// must outlive the solver); null: the CPU.
absl::StatusOr<std::unique_ptr<Solver>> MakeAespaSolver(const QuantSpec& spec, const AdaRoundOptions& rounding,
                                                        std::vector<std::vector<double>> output_weightings,
                                                        const RoundingLearner* learner = nullptr,
                                                        const Solver* gptq = nullptr);

// Heads [first, first + count) of a linear whose rows are `heads` equal blocks (its output
// weightings, if any, one per head; one Hessian for all rows or one per head): the GPTQ start
// of the whole linear (cheap next to AdaRound, and so the same bits everywhere), then AdaRound
// on those heads' rows alone, both roundings kept for the join (head_parts.h).
struct AespaHeads {
  QuantizedLinear gptq;            // the whole linear's start (its damping), without unrounded values
  QuantizedWeight rows;            // the heads' rows of the start: grids and GPTQ codes
  RoundingCandidates candidates;   // the same rows: the learned codes and both roundings' loss per head
};
absl::StatusOr<AespaHeads> SolveAespaHeads(const Solver& aespa_solver, const LayerProblem& problem, int heads,
                                           int first, int count);

}  // namespace qshard
