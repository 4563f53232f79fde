// FactorInverseHessianOnDevice: the diagonal goes to the host for planning (dead columns,
// act-order, mean), then per damping attempt a gather kernel builds J·P·H·P·J + damping in
// float64, cuSOLVER factors it, and on success two small kernels turn the factor into the
// sweep's float32 coefficients exactly as inverse_hessian.cc's FactorReversed does.
#include "kernels/cuda/gptq_factor_device.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace qshard::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

unsigned RowBlocks(int64_t n) { return static_cast<unsigned>(std::min<int64_t>(n, kMaxGridY)); }
unsigned ColumnBlocks(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 1024)); }

// work[i, j] = H[ro_i, ro_j] with ro the reversed sweep order (sweep position j is row
// n−1−j), diagonal replaced by the dead-fixed diag(H) plus the damping. Symmetric, so the
// row-major fill is also the column-major matrix cuSOLVER reads.
__global__ void BuildReversedKernel(const double* __restrict__ sum, const int64_t* __restrict__ reversed_order,
                                    const double* __restrict__ diag, double normalizer, double damp_added, int64_t n,
                                    double* __restrict__ work) {
  for (int64_t i = blockIdx.y; i < n; i += gridDim.y) {
    const double* source = sum + reversed_order[i] * n;
    double* row = work + i * n;
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      row[j] = i == j ? diag[reversed_order[i]] + damp_added : source[reversed_order[j]] * normalizer;
    }
  }
}

// cuSOLVER's upper factor U (A = UᵀU) of the column-major matrix sits where the row-major
// lower factor L (A = L·Lᵀ) would: R_ij = L[n−1−i, n−1−j] = work[(n−1−i)·n + n−1−j], j ≥ i.
__global__ void FactorDiagonalKernel(const double* __restrict__ work, int64_t n, double* __restrict__ inverse_diagonal,
                                     float* __restrict__ diagonal) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double r_jj = work[(n - 1 - j) * (n + 1)];
    diagonal[j] = static_cast<float>(r_jj);
    inverse_diagonal[j] = 1.0 / r_jj;
  }
}

__global__ void UpdatesKernel(const double* __restrict__ work, const double* __restrict__ inverse_diagonal, int64_t n,
                              float* __restrict__ updates) {
  for (int64_t i = blockIdx.y; i < n; i += gridDim.y) {
    const double* source = work + (n - 1 - i) * n + (n - 1);  // R_ij = source[−j]
    float* row = updates + i * n;
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      row[j] = j < i ? 0.0f : static_cast<float>(source[-j] * inverse_diagonal[j]);
    }
  }
}

}  // namespace

CudaStatus FactorInverseHessianOnDevice(const SolverContext& context, const DeviceHessianSum& hessian,
                                        const GptqSolveSpec& spec, DeviceInverseHessianFactor& factor) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateGptqSolveSpec(spec));
  const int64_t n = hessian.dim();
  const cudaStream_t stream = context.stream();
  factor.dim = n;

  std::vector<double> sum_diagonal(n);
  QSHARD_CUDA_TRY(cudaMemcpy2DAsync(sum_diagonal.data(), sizeof(double), hessian.sum(), (n + 1) * sizeof(double),
                                    sizeof(double), n, cudaMemcpyDeviceToHost, stream));
  QSHARD_CUDA_TRY(cudaStreamSynchronize(stream));
  QSHARD_CUDA_RETURN_IF_ERROR(PlanDiagonal(sum_diagonal, hessian.tokens(), spec, factor.plan));
  const DiagonalPlan& plan = factor.plan;

  DeviceBuffer<int64_t> reversed_order;
  DeviceBuffer<double> diag, work, inverse_diagonal;
  QSHARD_CUDA_RETURN_IF_ERROR(reversed_order.Upload(std::vector<int64_t>(plan.order.rbegin(), plan.order.rend())));
  QSHARD_CUDA_RETURN_IF_ERROR(diag.Upload(plan.diag));
  QSHARD_CUDA_RETURN_IF_ERROR(work.Allocate(static_cast<size_t>(n) * n));

  size_t device_bytes = 0, host_bytes = 0;
  QSHARD_CUSOLVER_TRY(cusolverDnXpotrf_bufferSize(context.solver(), context.solver_params(), CUBLAS_FILL_MODE_UPPER, n,
                                                  CUDA_R_64F, work.get(), n, CUDA_R_64F, &device_bytes, &host_bytes));
  DeviceBuffer<char> device_workspace;
  QSHARD_CUDA_RETURN_IF_ERROR(device_workspace.Allocate(std::max<size_t>(device_bytes, 1)));
  std::vector<char> host_workspace(std::max<size_t>(host_bytes, 1));
  DeviceBuffer<int> info;
  QSHARD_CUDA_RETURN_IF_ERROR(info.Allocate(1));

  const dim3 grid(ColumnBlocks(n), RowBlocks(n));
  bool factored = false;
  for (int retry = 0; retry <= spec.max_damp_retries && !factored; ++retry) {
    factor.damp = spec.damp * std::pow(spec.damp_growth, retry);
    factor.damp_added = factor.damp * plan.mean_diag;
    factor.retries = retry;
    BuildReversedKernel<<<grid, kThreads, 0, stream>>>(hessian.sum(), reversed_order.get(), diag.get(),
                                                       plan.normalizer, factor.damp_added, n, work.get());
    QSHARD_CUDA_CHECK_LAUNCH("BuildReversedKernel");
    QSHARD_CUSOLVER_TRY(cusolverDnXpotrf(context.solver(), context.solver_params(), CUBLAS_FILL_MODE_UPPER, n,
                                         CUDA_R_64F, work.get(), n, CUDA_R_64F, device_workspace.get(), device_bytes,
                                         host_workspace.data(), host_bytes, info.get()));
    int status = 0;
    QSHARD_CUDA_TRY(cudaMemcpyAsync(&status, info.get(), sizeof(int), cudaMemcpyDeviceToHost, stream));
    QSHARD_CUDA_TRY(cudaStreamSynchronize(stream));
    if (status < 0) return CudaStatus::Error("cusolverDnXpotrf: invalid argument " + std::to_string(-status));
    factored = status == 0;  // > 0: the leading minor of that order is not positive definite
  }
  if (!factored) {
    return CudaStatus::Error("hessian: not positive definite even with damp " + std::to_string(factor.damp) + " (" +
                             std::to_string(spec.max_damp_retries) +
                             " retries); collect more calibration data or raise damp");
  }

  QSHARD_CUDA_RETURN_IF_ERROR(inverse_diagonal.Allocate(n));
  QSHARD_CUDA_RETURN_IF_ERROR(factor.diagonal.Allocate(n));
  QSHARD_CUDA_RETURN_IF_ERROR(factor.updates.Allocate(static_cast<size_t>(n) * n));
  FactorDiagonalKernel<<<ColumnBlocks(n), kThreads, 0, stream>>>(work.get(), n, inverse_diagonal.get(),
                                                                 factor.diagonal.get());
  QSHARD_CUDA_CHECK_LAUNCH("FactorDiagonalKernel");
  UpdatesKernel<<<grid, kThreads, 0, stream>>>(work.get(), inverse_diagonal.get(), n, factor.updates.get());
  QSHARD_CUDA_CHECK_LAUNCH("UpdatesKernel");
  // The work matrix is freed on return: wait until the kernels reading it are done.
  QSHARD_CUDA_TRY(cudaStreamSynchronize(stream));
  return CudaStatus();
}

}  // namespace qshard::gpu
