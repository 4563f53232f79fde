// The factor GPTQ's column sweep runs on (anchors.md §1.1, steps 2 and 4–6): H = 2·sum/tokens
// with dead inputs (diag 0) set to 1, columns optionally ordered by descending diag(H)
// (act-order), damping damp·mean(diag(H)) added. A failed factorization retries with damp ×growth.
//
// The reference sweeps with U, the upper Cholesky factor of H⁻¹ (chol → cholesky_inverse →
// chol(upper), 4/3·n³ flops): column k is rounded at w̃_k = w_k − Σ_{i<k} e_i·U_ik with
// e_i = (w̃_i − q_i)/U_ii. With R = U⁻¹ (upper triangular, H = R Rᵀ) that is the same as
//   w̃_k = w_k + Σ_{i<k} (w_i − q_i)·R_ik / R_kk,   e_k = (w̃_k − q_k)·R_kk
// (W − Q = E U, so E = (W − Q) R), which needs no inverse at all. With J the order-reversing
// permutation, chol(J H J) = L gives R = J L J: one Cholesky, n³/3 flops, a quarter of the
// reference's and half of a Cholesky plus triangular inverse (the tests compare against the
// reference route).
//
// The Cholesky is blocked in tiles on `pool` so that its bits do not follow the thread count
// (blocked_cholesky.h): float64 diagonal blocks and panels, the trailing products in float32
// accumulated in float64 (the reference factors in float32 with TF32 off). The matrix and its
// pivots stay float64, which keeps the spurious "not positive definite" failures away that would
// otherwise force extra damping. The sweep's coefficients R_ik/R_kk go to the sweep in float32,
// like the reference's U.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/large_buffers.h"
#include "worker/calibration/hessian.h"
#include "worker/solvers/solver.h"

namespace qshard {

class ThreadPool;

struct InverseHessianFactor {
  int64_t dim = 0;
  std::vector<int64_t> order;  // sweep position → original column (identity without act-order)
  std::vector<bool> dead;      // by original column: the input never fired (diag(H) == 0)
  // R·diag(R)⁻¹ [dim, dim] in sweep order (unit diagonal, zero below it): row i holds the
  // weights with which column i's w_i − q_i moves the later columns.
  UninitializedVector<float> updates;
  std::vector<float> diagonal;  // R_kk [dim]: column k's error is e_k = (w̃_k − q_k)·R_kk
  double damp = 0.0;           // the relative damping that succeeded
  double damp_added = 0.0;     // the absolute value added to the diagonal: damp · mean(diag(H))
  int retries = 0;
};

// FailedPrecondition when H stays indefinite up to damp · growth^max_damp_retries.
absl::StatusOr<InverseHessianFactor> FactorInverseHessian(const HessianSum& hessian, const QuantSpec& spec,
                                                          ThreadPool* pool = nullptr);

}  // namespace qshard
