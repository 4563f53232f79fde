// AdaRound (Nagel et al., ICML 2020) the way aespa runs it after its GPTQ initialization
// (anchors.md §1.2 step 5, paper App. F Eq. 28): each weight picks between the grid points
// below and above its GPTQ error-compensated value u, through a soft variable
//   ŵ = s·(clamp(⌊u/s⌋ + h(V) + z, 0, 2ⁿ−1) − z),  h(V) = clamp(sigmoid(V)·(ζ−γ) + γ, 0, 1),
// γ = −0.1, ζ = 1.1, initialized so the soft weight starts at u. Loss: the reconstruction term
// tr(ΔW H ΔWᵀ) (per row block with its Hessian) or, with output weightings,
// Σ_heads tr(G_h ΔW_h H ΔW_hᵀ), plus λ·Σ(1 − |2h − 1|^β) after a warm-up, β annealed linearly
// 20 → 2; Adam; float32 throughout; finally h ← [V ≥ 0]. The GPTQ rounding is kept if the
// learned one does not have a lower reconstruction loss. That loss is a sum over units of rows
// (the heads of the output weightings, else the Hessian blocks), each unit computed on its own
// rows alone and the units' terms added in order: rows of whole units solved on different
// workers give the same codes and terms, and the choice is made once they are joined.
// With a pool, ranges of rows are descended apart on its threads: at unit boundaries where
// there are units enough, else (one Hessian and no weightings: o_proj and the MLP) at tiles of
// the product E·H, which is computed tile by tile from each unit's first row whatever the split.
// The descent needs only the gradient, row r of which is 2·e_r·H, so every split gives the same
// codes: each tile is the same GEMM call (or the same row sums) on the same data, every GEMM on
// one BLAS thread (the library's threads, like its row count, can change a product's bits). The
// descent steps only the weights whose soft variable is still in the sigmoid's live range: a
// saturated one can never return, so this gives the codes of stepping them all (up to the
// summation order of the products at the live weights, SetLiveProductShare).
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

// Both roundings before the choice: what a worker solving some heads of a linear returns.
struct RoundingCandidates {
  std::vector<int32_t> learned;        // [out, in] AdaRound's codes (the initial ones if iters ≤ 0)
  std::vector<double> initial_losses;  // per unit of rows: the initial codes' loss
  std::vector<double> learned_losses;  // per unit of rows: the learned codes' loss
};

RoundingCandidates LearnRoundingCandidates(const RoundingProblem& problem, const AdaRoundOptions& options);
RoundingResult LearnRounding(const RoundingProblem& problem, const AdaRoundOptions& options);
// The choice between `candidates` and the initial codes LearnRounding makes (KeepLearned), for
// candidates learned elsewhere (a device's learner, rounding_learner.h).
RoundingResult ChooseRounding(RoundingCandidates candidates, const std::vector<int32_t>& initial_codes);

// The rows of one unit of the loss: a head's with output weightings, else a Hessian block's.
int64_t UnitRows(const RoundingProblem& problem);

// The row ranges LearnRounding descends apart for `parts` threads: consecutive, covering all
// rows, as even as the split allows — whole units with output weightings or at least `parts`
// units, else whole tiles of the product (adaround_rounding.cc's kProductRows).
std::vector<RowRange> RoundingRowParts(const RoundingProblem& problem, int parts);

// The units' losses added in unit order, from 0: the linear's loss.
double TotalLoss(std::span<const double> unit_losses);
// The choice LearnRounding makes: the learned codes only if their loss is lower.
bool KeepLearned(std::span<const double> initial_losses, std::span<const double> learned_losses);

// What the descent starts from, per weight of the whole problem, flattened [out, in]: its grid
// step s (scale·ζ), zero point z, the level below u (⌊u/s⌋ + z) and v (InitialVariables()). A
// device learner uploads these, so that its descent starts from the CPU's values bit for bit.
struct RoundingStart {
  std::vector<float> step, zero, floor_level, variables;
  int32_t max_code = 0;
};
RoundingStart RoundingStartOf(const RoundingProblem& problem);

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
  // One iteration of the descent on the objective's own variables, which start at
  // InitialVariables() with Adam's moments at zero: the gradient (with lambda and beta as in
  // Gradient) and Adam's step t ≥ 1. Weights whose v has left the rectified sigmoid's live range
  // |v| ≤ ln 11 are frozen, since they can never return (adaround_rounding.cc, Descent): the
  // codes are those of the same steps over all of v.
  void AdamStep(float lambda, float beta, float learning_rate, int t);
  // Before the first AdamStep: without output weightings, a chunk of rows (a tile of E·H) whose
  // live weights fall below this share of its weights computes its product at them only, row by
  // row, from the frozen weights' part kept as they freeze: another summation order than
  // Gradient's tile GEMM, so not its bits. 0 keeps the GEMM throughout (Gradient's bits); the
  // default is adaround_rounding.cc's kLiveProductShare.
  void SetLiveProductShare(double share);
  // Before the first Gradient or AdamStep: the gradient's products E·H with bfloat16 inputs
  // (kernels/cpu/bf16_gemm.h) instead of float32 GEMMs; the losses stay float32. Off by default
  // (the tests' exact gradient); the descent LearnRounding runs turns it on.
  void SetBf16Products(bool bf16);
  // The descent's codes: Codes() of its variables (of InitialVariables() before any step).
  std::vector<int32_t> DescentCodes() const;
  // The descent's variables (InitialVariables() before any step), and the gradient its last step
  // used at the weights it still steps (0 at the others; all 0 before any step).
  std::vector<float> DescentVariables() const;
  std::vector<float> DescentGradient() const;
  // How many weights the descent still steps (all of the range's before it starts).
  int64_t LiveWeights() const;
  // The hard rounding h = [v ≥ 0], as codes.
  std::vector<int32_t> Codes(std::span<const float> v) const;
  // The loss of `codes` per unit of rows (TotalLoss adds them).
  std::vector<double> UnitLosses(std::span<const int32_t> codes);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace qshard
