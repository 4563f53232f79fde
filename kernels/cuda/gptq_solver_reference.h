// Plain float64 host references for the device statistics and GPTQ solver, written the way
// the GPTQ paper states the algorithm rather than the way the solvers compute it: the sum of
// outer products one token at a time; H⁻¹ formed explicitly (Cholesky, triangular inverse),
// its upper Cholesky factor U, and an unblocked sweep, column after column, that moves the
// later columns by −e_j·U_jk. Only the diagonal planning (dead inputs, act-order, damping
// scale) is shared with the device code (gptq_solve_spec.h).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/gptq_solve_spec.h"

namespace qshard::gpu {

// Calibration-like windows [rows, in] with what real activations have and i.i.d. noise lacks:
// channel scales spanning 20× (act-order has something to sort) and four factors shared by all
// channels (H far from diagonal). The columns in `silent` are 0 in every token.
std::vector<std::vector<float>> RandomCalibrationWindows(int64_t in, int windows, int64_t rows,
                                                         const std::vector<int64_t>& silent, std::mt19937_64& rng);

// A weight [out, in] like a trained layer's: N(0, 0.02²) with 0.2% outliers ten times larger.
std::vector<float> RandomLayerWeight(int64_t out, int64_t in, std::mt19937_64& rng);

// sum[dim, dim] += Σ_t x_t x_tᵀ for x [rows, dim] (row-major), exactly in float64.
void ReferenceAddWindow(const float* x, int64_t rows, int64_t dim, std::vector<double>& sum);

// Another solver's answer for ReferenceGptq to follow: wherever that solver's grid or code
// differs from the reference's, the reference adopts it and sweeps on from there, so that one
// rounding flip does not cascade into the rest of its row, and it records how far from a
// rounding tie each such flip was. That separates flips that float32 noise explains (within a
// small fraction of a step of a tie) from wrong codes.
struct FollowedSolution {
  const std::vector<int32_t>* codes = nullptr;  // [out, in]
  const std::vector<double>* scales = nullptr;  // [groups, out]
  const std::vector<int32_t>* zeros = nullptr;  // [groups, out]
};

struct FollowReport {
  int64_t flips = 0;           // codes that differ from the reference's on the same history
  int64_t far_flips = 0;       // of those, more than one code apart or farther than the margin from a tie
  double worst_distance = 0.0; // largest distance from the tie among flips, in steps
  int64_t grids_adopted = 0;   // grids that differ on the same history
};

struct ReferenceGptqResult {
  std::vector<int32_t> codes;   // [out, in]
  std::vector<double> scales;   // [groups, out]
  std::vector<int32_t> zeros;   // [groups, out]
  std::vector<int32_t> g_idx;   // [in]
  double damp = 0.0;            // the largest over row blocks
  int retries = 0;              // the most over row blocks
  FollowReport follow;  // when a solution was followed
  std::vector<double> unrounded;  // [out, in], when asked: each value just before it was rounded
};

// Un-normalized statistics [in, in] (float64) over `tokens` tokens.
struct ReferenceHessian {
  const std::vector<double>* sum = nullptr;
  int64_t tokens = 0;
};

// A GPTQ problem with what Z-Fold and aespa add to it (worker/solvers/solver.h's LayerProblem).
struct ReferenceGptqProblem {
  const std::vector<float>* weight = nullptr;  // [out, in]
  int64_t out = 0, in = 0;
  // One Hessian for all rows, or one per equal consecutive block of rows (aespa's heads):
  // rows [h·out/n, (h+1)·out/n) use hessians[h].
  std::vector<ReferenceHessian> hessians;
  // Z-Fold's grids [groups, out], indexed like static groups: quantized onto, never fitted.
  const std::vector<double>* fixed_scales = nullptr;
  const std::vector<int32_t>* fixed_zeros = nullptr;
  // Z-Fold's per-column step multipliers ζ [in]: step(r, c) = scale(r, c) · ζ_c. Null: 1.
  const std::vector<float>* column_scale = nullptr;
  bool keep_unrounded = false;  // fill ReferenceGptqResult::unrounded (aespa's AdaRound)
};

// GPTQ on the problem, following `follow` when given (flips within `tie_margin` steps of a
// tie count as near).
CudaStatus ReferenceGptq(const ReferenceGptqProblem& problem, const GptqSolveSpec& spec, ReferenceGptqResult& result,
                         const FollowedSolution* follow = nullptr, double tie_margin = 0.0);

// GPTQ on weight [out, in] with the statistics sum [in, in] over `tokens` tokens.
CudaStatus ReferenceGptq(const std::vector<float>& weight, int64_t out, int64_t in, const std::vector<double>& sum,
                         int64_t tokens, const GptqSolveSpec& spec, ReferenceGptqResult& result,
                         const FollowedSolution* follow = nullptr, double tie_margin = 0.0);

// scale · ζ_c · (code − zero) per element, [out, in] (ζ = 1 without column_scale).
std::vector<double> DequantizeCodes(const std::vector<int32_t>& codes, const std::vector<double>& scales,
                                    const std::vector<int32_t>& zeros, const std::vector<int32_t>& g_idx, int64_t out,
                                    int64_t in, const std::vector<float>* column_scale = nullptr);

// tr((W − Q) H (W − Q)ᵀ) with the undamped H = 2·sum/tokens: GPTQ's objective, computed directly.
double ProxyError(const std::vector<float>& weight, const std::vector<double>& dequantized, int64_t out, int64_t in,
                  const std::vector<double>& sum, int64_t tokens);

// ProxyError of a problem's rows, each block of rows against its own Hessian, summed.
double ProblemProxyError(const ReferenceGptqProblem& problem, const std::vector<double>& dequantized);

}  // namespace qshard::gpu
