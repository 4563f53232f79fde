// GPTQ / OPTQ (Frantar et al., ICLR 2023; anchors.md §1.1): columns are quantized one at a
// time and each one's rounding error is spread over the columns not yet quantized through the
// upper Cholesky factor of H⁻¹, with lazy block updates (one GEMM per block of block_size
// columns), act-order, groups, static groups and damping retries.
//
// Deliberate difference from the reference code: with dynamic groups, the reference fits a
// group that starts inside a block on the global W, which has not received the block's
// in-block updates yet (stale weights when group_size < block_size). Here a group is fitted on
// fully updated weights — what the unblocked algorithm does — at no cost for the usual sizes
// (group_size dividing block_size, or a multiple of it); blocks are cut short at a group start
// only when a group would otherwise straddle a block end.
//
// Other choices: grids per channel are fitted on W before dead columns are zeroed, static
// groups after (as the reference does); the per-row sweep runs in float32, the Cholesky chain
// in float64 (inverse_hessian.h).
#pragma once

#include <memory>

#include "worker/solvers/solver.h"

namespace qshard {

std::unique_ptr<Solver> MakeGptqSolver(const QuantSpec& spec);

}  // namespace qshard
