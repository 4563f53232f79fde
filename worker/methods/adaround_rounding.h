// AdaRound (Nagel et al., ICML 2020) the way aespa runs it after its GPTQ initialization
// (anchors.md §1.2 step 5, paper App. F Eq. 28): each weight picks between the grid points
// below and above its GPTQ error-compensated value u, through a soft variable
//   ŵ = s·(clamp(⌊u/s⌋ + h(V) + z, 0, 2ⁿ−1) − z),  h(V) = clamp(sigmoid(V)·(ζ−γ) + γ, 0, 1),
// γ = −0.1, ζ = 1.1, initialized so the soft weight starts at u. Loss: the reconstruction term
// tr(ΔW H ΔWᵀ) (per row block with its Hessian) or, with output weightings,
// Σ_heads tr(G_h ΔW_h H ΔW_hᵀ), plus λ·Σ(1 − |2h − 1|^β) after a warm-up, β annealed linearly
// 20 → 2; Adam; float32 throughout; finally h ← [V ≥ 0]. The GPTQ rounding is kept if the
// learned one does not have a lower reconstruction loss. The loss is a sum over rows (over
// heads with output weightings), so ranges of rows are descended apart, on a pool's threads
// with one BLAS thread each: the same codes as one descent, without the BLAS library's
// hand-offs on products this small.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "worker/quant/quantized_weight.h"

namespace qshard {

class ThreadPool;

// Rows [begin, end) of a weight.
struct RowRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

struct AdaRoundOptions {
  int iters = 2000;
  double learning_rate = 0.015;
  double lambda = 1.0;      // weight of the rounding regularizer (aespa: 1.5 for q/k/v)
  double warmup = 0.2;      // fraction of iterations before the regularizer starts
  double beta_start = 20.0;
  double beta_end = 2.0;
};

struct RoundingProblem {
  const Tensor* weight = nullptr;     // W [out, in], the target (dead input columns zero)
  const Tensor* unrounded = nullptr;  // u [out, in], GPTQ's values before rounding
  // The grids (scales, zeros, g_idx, column_scale, bits) and the GPTQ codes to start from.
  const QuantizedWeight* initial = nullptr;
  // One [in, in] Hessian per equal block of consecutive rows.
  std::vector<const std::vector<double>*> hessians;
  // Optional: one [d, d] output weighting per equal block of d consecutive rows (attention
  // heads; d² is the matrix size); each such block must lie inside one Hessian block.
  std::vector<const std::vector<double>*> output_weightings;
  // Optional: descend parts of the rows on its threads, one part each.
  ThreadPool* pool = nullptr;
};

struct RoundingResult {
  std::vector<int32_t> codes;   // [out, in]
  double initial_loss = 0.0;    // reconstruction loss of the initial (GPTQ) codes
  double loss = 0.0;            // reconstruction loss of the returned codes (≤ initial_loss)
  bool learned = false;         // the learned rounding was kept
};

RoundingResult LearnRounding(const RoundingProblem& problem, const AdaRoundOptions& options);

// The row ranges LearnRounding descends apart for `parts` threads: consecutive, covering all rows,
// as even as whole heads allow (with output weightings every range holds whole heads).
std::vector<RowRange> RoundingRowParts(const RoundingProblem& problem, int parts);

// The reconstruction loss of `codes` on the problem's grids.
double ReconstructionLoss(const RoundingProblem& problem, std::span<const int32_t> codes);

// The function AdaRound descends, over one soft variable per weight (v [out, in]): the
// reconstruction loss of the soft weights plus λ·Σ(1 − |2h(v) − 1|^β). Its gradient is written
// by hand, so it is public for the finite-difference test. Over a range of rows, v, the gradient
// and the codes hold the range's rows only (with output weightings the range holds whole heads).
class SoftRoundingObjective {
 public:
  explicit SoftRoundingObjective(const RoundingProblem& problem);
  SoftRoundingObjective(const RoundingProblem& problem, RowRange rows);
  ~SoftRoundingObjective();

  // v at which every soft weight equals its unrounded value u.
  std::vector<float> InitialVariables() const;
  // Returns the objective at v and writes its gradient d/dv into `grad`; lambda = 0 leaves the
  // regularizer out (the warm-up).
  double Evaluate(std::span<const float> v, float lambda, float beta, std::span<float> grad);
  // The gradient alone, as the descent needs it (the float64 sums of the value are a serial chain).
  void Gradient(std::span<const float> v, float lambda, float beta, std::span<float> grad);
  // The hard rounding h = [v ≥ 0], as codes.
  std::vector<int32_t> Codes(std::span<const float> v) const;
  double LossOfCodes(std::span<const int32_t> codes);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace qshard
