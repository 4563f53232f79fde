// What Z-Fold's search and aespa's rounding optimize over: the rows of a group of linears that
// read one input, stacked ([q; k; v]), each block of rows with its own Hessian (aespa gives the
// value projection one per KV head). Hessians are prepared once, as the aespa reference does
// before its search and AdaRound: 2·sum/tokens, dead inputs (diag 0) get a unit diagonal (GPTQ's
// value; the reference uses 1/2048 — their zeroed columns quantize exactly either way) and
// their weight columns are zeroed (GPTQ drops them too), then damp·mean(diag) is added.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "worker/calibration/hessian.h"
#include "worker/quant/quant_grid.h"
#include "worker/solvers/solver.h"

namespace qshard {

struct WorkingHessian {
  int64_t dim = 0;
  std::vector<double> h;    // [dim, dim]
  std::vector<bool> dead;   // [dim]
};

WorkingHessian PrepareHessian(const HessianSum& sum, double damp);

struct RowBlock {
  int64_t row_begin = 0;
  int64_t rows = 0;
  std::shared_ptr<const WorkingHessian> hessian;
};

struct StackedRows {
  Tensor weight;  // [rows, in]; columns dead in a block's Hessian are zero in that block's rows
  std::vector<RowBlock> blocks;  // consecutive, covering all rows

  int64_t rows() const { return weight.dim(0); }
  int64_t cols() const { return weight.dim(1); }
};

// One linear's part of a stack: its weight and the Hessians of its equal row blocks
// (LayerProblem::hessians' convention). The same HessianSum pointer is prepared once.
struct StackPart {
  const Tensor* weight = nullptr;
  std::vector<const HessianSum*> hessians;
};
StackedRows StackRows(std::span<const StackPart> parts, double damp);

// Σ_blocks Σ_rows ΔW H ΔWᵀ where Ŵ is W rounded to nearest onto the grids with steps
// scales[g_idx[c], r] · zeta[c] (empty zeta: 1), exactly as a solver quantizes onto fixed
// grids. `grids` rows index the stack's rows, contiguous groups of `group_size` columns.
double HessianWeightedLoss(const StackedRows& stack, std::span<const float> zeta, const FixedGrids& grids,
                           int bits, int group_size);

}  // namespace qshard
