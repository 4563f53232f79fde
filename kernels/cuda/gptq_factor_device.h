// The factor the device GPTQ sweep runs on, the counterpart of worker/solvers/inverse_hessian.h
// (read its header for the derivation): H = 2·sum/tokens with dead inputs set to 1, columns in
// act-order, damping damp·mean(diag H) retried ×damp_growth on failure, and one float64
// Cholesky of the order-reversed matrix (cuSOLVER's 64-bit potrf, since 49152² elements
// overflow 32-bit indexing) giving R = J·chol(J H J)·J, kept as float32 R·diag(R)⁻¹ and diag(R).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gptq_solve_spec.h"
#include "kernels/cuda/hessian_device.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {

struct DeviceInverseHessianFactor {
  int64_t dim = 0;
  DiagonalPlan plan;              // order, dead columns, mean diagonal (host)
  DeviceBuffer<float> updates;    // [dim, dim] row-major: R_ij / R_jj for j ≥ i, 0 below (sweep order)
  DeviceBuffer<float> diagonal;   // [dim] R_jj
  double damp = 0.0;              // the relative damping that succeeded
  double damp_added = 0.0;        // damp · mean(diag H)
  int retries = 0;
};

// Peak device memory beyond the sum: 8·dim² (the float64 work matrix) + 4·dim² (updates).
// Fails with a message naming the last damping when H stays indefinite.
CudaStatus FactorInverseHessianOnDevice(const SolverContext& context, const DeviceHessianSum& hessian,
                                        const GptqSolveSpec& spec, DeviceInverseHessianFactor& factor);

}  // namespace qshard::gpu
