// The factor GPTQ's column sweep runs on (anchors.md §1.1, steps 2 and 4–6): H = 2·sum/tokens
// with dead inputs (diag 0) set to 1, columns optionally ordered by descending diag(H)
// (act-order), damping damp·mean(diag(H)) added, then U = the upper Cholesky factor of H⁻¹.
// A failed factorization retries with damp ×growth.
//
// U is unique, so it need not be computed the reference's way (chol → cholesky_inverse →
// chol(upper), 4/3·n³ flops): with J the order-reversing permutation, chol(J H J) = L gives
// H = R Rᵀ for the upper triangular R = J L J, hence H⁻¹ = (R⁻¹)ᵀ R⁻¹ and U = R⁻¹ = J L⁻¹ J —
// one Cholesky and one triangular inverse, 2/3·n³ flops (2.6× faster at n = 4096; the tests
// compare against the reference route).
//
// The chain runs in float64 (the reference uses float32 with TF32 off): on the CPU the cost is
// modest, and it removes most spurious "not positive definite" failures that would otherwise
// force extra damping. U is handed to the sweep in float32, like the reference's.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/calibration/hessian.h"
#include "worker/solvers/solver.h"

namespace qshard {

struct InverseHessianFactor {
  int64_t dim = 0;
  std::vector<int64_t> order;  // sweep position → original column (identity without act-order)
  std::vector<bool> dead;      // by original column: the input never fired (diag(H) == 0)
  std::vector<float> upper;    // U [dim, dim] in sweep order, zero below the diagonal
  double damp = 0.0;           // the relative damping that succeeded
  double damp_added = 0.0;     // the absolute value added to the diagonal: damp · mean(diag(H))
  int retries = 0;
};

// FailedPrecondition when H stays indefinite up to damp · growth^max_damp_retries.
absl::StatusOr<InverseHessianFactor> FactorInverseHessian(const HessianSum& hessian, const QuantSpec& spec);

}  // namespace qshard
