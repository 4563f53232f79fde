// The host reference of AdaRound on the device (adaround_device.h): random problems of awkward
// shapes (AdaRoundCheckCases), the same descent in plain C++ — float32 element-wise steps, E and
// H rounded to bfloat16 for the gradient — with float64 sums in every product, and the comparison
// with its tolerances. Shared by qshard_cuda_adaround_check (the device against it) and
// tests/cuda/adaround_reference_test.cc (the CPU's LearnRoundingCandidates against it, the same
// tolerances), so the check's grounds are measured on the CPU. Free of Abseil and of a GPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/adaround_device.h"

namespace qshard::gpu {

struct AdaRoundCase {
  const char* name;
  int64_t rows, cols;
  int bits;
  int64_t group_size;  // columns per grid group
  int blocks;          // Hessian blocks (aespa's v_proj: one per key/value head)
  int heads;           // output weightings (aespa's q/k_proj), 0 for none
  int iters;
};

// Small awkward shapes (rows and columns not multiples of 8 or 32, odd groups): one Hessian,
// per-head Hessians, per-head output weightings; 2, 3 and 4 bits.
std::vector<AdaRoundCase> AdaRoundCheckCases();

// A problem and the arrays the device problem points into. W ~ N(0, 1) with outlier columns; grids
// asymmetric min/max per group and row; u = W + N(0, (0.3·s)²) (GPTQ's compensated values) and the
// initial codes u's nearest grid points; H = XᵀX/n + damping, G_h = AᵀA/d + 0.1·I (float64, as aespa's).
struct AdaRoundCaseData {
  AdaRoundCase shape{};
  int64_t groups = 0;
  std::vector<float> weight, unrounded, scales;  // scales [groups, rows]
  std::vector<int32_t> zeros, g_idx, initial_codes;  // zeros [groups, rows]
  std::vector<float> step, zero, floor_level, variables;  // per weight: the descent's start
  std::vector<std::vector<double>> hessians, weightings;
  std::vector<std::vector<float>> hessians32, weightings32;  // their float32 values, as the descent reads them

  AdaRoundDeviceProblem Problem() const;
};
AdaRoundCaseData MakeAdaRoundCase(const AdaRoundCase& shape, uint64_t seed);

// The options of a case: aespa's (λ 1.5 with weightings or blocks, else 1), its iterations.
AdaRoundDeviceOptions AdaRoundCaseOptions(const AdaRoundCase& shape);

// The descent on the host, every weight stepped, float64 sums in the products.
AdaRoundDeviceResult ReferenceAdaRound(const AdaRoundCaseData& data, const AdaRoundDeviceOptions& options);

// A learned rounding against the reference's: the share of equal codes, each unit's initial loss
// (the same codes: summation orders only) and the learned losses' total (relative to the initial one).
struct AdaRoundDeviation {
  double code_agreement = 1.0;
  double initial_loss_error = 0.0;  // max over units of |got − want| / want
  double learned_loss_error = 0.0;  // |Σ got − Σ want| / Σ initial
  bool passed = false;
  std::string ToString() const;
};
// Tolerances: codes agreeing at ≥ 99 % of weights, initial losses within 1e-5 relative, the learned
// total within 0.5 % of the initial total. Grounds: the CPU's descent, whose arithmetic differs from
// the reference's as the device's does (float32 sums in other orders, its own exp and log, frozen
// weights), measures 100 % equal codes, initial losses within 3e-8 and learned totals within 1e-8
// on these cases (adaround_reference_test); float32 sums of ≤ 70 terms are off by about
// sqrt(70)·2⁻²⁴ ≈ 5e-7 relative, so 1e-5 leaves 20×. Codes: a weight whose final V lies within
// a few rounding errors of 0 may flip; the margin allows 1 in 100.
AdaRoundDeviation CompareAdaRound(const AdaRoundDeviceResult& got, const AdaRoundDeviceResult& want);

}  // namespace qshard::gpu
