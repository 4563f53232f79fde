// aespa's per-linear solve (anchors.md §1.2 steps 4–5): GPTQ onto the problem's grids (with
// per-head Hessians for the value projection, through LayerProblem::hessians) gives the
// starting rounding and the error-compensated values AdaRound starts from, then AdaRound
// refines the rounding on the refined loss — tr(ΔW H ΔWᵀ) per row block, or for the query and
// key projections Σ_heads tr(G_h ΔW_h H ΔW_hᵀ) with the heads' output weightings G_h.
// A Solver, so the shared group flow (zfold_group.h) runs it like GPTQ.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/methods/adaround_rounding.h"
#include "worker/solvers/solver.h"

namespace qshard {

// output_weightings: empty, or one [d, d] matrix per block of d consecutive output rows.
// rounding.iters == 0 is aespa "without AdaRound": the GPTQ result as it is.
absl::StatusOr<std::unique_ptr<Solver>> MakeAespaSolver(const QuantSpec& spec, const AdaRoundOptions& rounding,
                                                        std::vector<std::vector<double>> output_weightings);

}  // namespace qshard
