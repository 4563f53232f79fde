// Z-Fold's quantization parameters (anchors.md §1.3): a step size α_r·ζ_c per weight, α (and
// the zero point) per output row and column group, ζ per input column, found by alternating
// a least-squares update of ζ with a Hessian-weighted grid search of α and zero over clip
// ratios 1.00..0.01 and zero = floor/ceil, scored by Σ_rows ΔW H ΔWᵀ, keeping the best iterate
// and stopping as soon as an alternation does not lower that loss.
//
// With groups (group_size > 0), ζ stays one value per input column (it is folded into the
// producer of the input, which cannot vary per group) and α is one value per (group, row).
// The loss couples groups through H's off-diagonal blocks, so the search is one pass of block
// coordinate descent over the groups of each row: group g's candidates are scored with the full
// H, the other groups held at their current grids (already-updated ones at their new grids).
//
// Speed: a candidate's score is α²·mᵀH̃m − 2α·mᵀ(H̃x) + const, with x = W/ζ, H̃ = diag(ζ)Hdiag(ζ)
// and m the integer offsets (code − zero). Between consecutive clip ratios only a few entries
// of m change, so H̃m and mᵀH̃m are updated by one row of H̃ per change instead of scoring
// every candidate with a GEMM: each entry changes ~2.3 / 5.1 / 10.8 times over a whole sweep
// at 2 / 3 / 4 bits, 87 / 39 / 18× fewer flops than 200 GEMMs. The updates are memory-bound
// (measured 3–4× / ~3.5× / ~2× faster than the 200 sgemms alone at 512–1024 columns, one
// thread); rows run in parallel.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "worker/methods/zfold_problem.h"
#include "worker/solvers/solver.h"

namespace qshard {

class ThreadPool;

// Which channel of the input's producer feeds each input column: ζ is one value per channel.
// Identity for norms; under grouped-query attention the output projection's columns of the
// query heads sharing a KV head map to one value-projection row, which ties their ζ.
struct ZetaChannels {
  int64_t channels = 0;
  std::vector<int32_t> channel_of_column;  // [in]
};

std::vector<float> ColumnZeta(const ZetaChannels& channels, std::span<const float> channel_zeta);

struct ZfoldSolution {
  std::vector<float> channel_zeta;  // [channels]; empty when ζ is not learned (fixed to 1)
  FixedGrids grids;                 // [groups, stack rows]
  double initial_loss = 0.0;        // min-max grids, ζ = 1
  double loss = 0.0;                // the returned iterate
  int iterations = 0;               // alternations accepted
};

// GPTQ's min-max grids of the stack (ζ = 1).
FixedGrids MinMaxGrids(const StackedRows& stack, const QuantSpec& spec);

// α and zero points for a fixed ζ [in] (empty: 1) — the reference's find_quant_params, and
// its find_only_scale when used to refit after ζ is final. `start` holds the other groups'
// grids for the cross-group terms (any valid grids, e.g. MinMaxGrids). Rows are searched on
// `pool`'s threads (the worker's; nullptr: the calling thread), each alone, so the result does
// not depend on the pool.
FixedGrids SearchGrids(const StackedRows& stack, std::span<const float> zeta, const QuantSpec& spec,
                       const FixedGrids& start, ThreadPool* pool = nullptr);

// The alternation, at most max_iters times. channels == nullptr: ζ is fixed to 1 (an input
// that cannot absorb ζ) and only the grids are searched.
ZfoldSolution SearchZfold(const StackedRows& stack, const QuantSpec& spec, int max_iters,
                          const ZetaChannels* channels, ThreadPool* pool = nullptr);

}  // namespace qshard
