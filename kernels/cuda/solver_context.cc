// Creation and release of the handles in solver_context.h.
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {

SolverContext::~SolverContext() {
  if (params_ != nullptr) cusolverDnDestroyParams(params_);
  if (solver_ != nullptr) cusolverDnDestroy(solver_);
  if (blas_ != nullptr) cublasDestroy(blas_);
}

CudaStatus SolverContext::Init(cudaStream_t stream) {
  stream_ = stream;
  QSHARD_CUBLAS_TRY(cublasCreate(&blas_));
  QSHARD_CUBLAS_TRY(cublasSetStream(blas_, stream));
  QSHARD_CUBLAS_TRY(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
  QSHARD_CUSOLVER_TRY(cusolverDnCreate(&solver_));
  QSHARD_CUSOLVER_TRY(cusolverDnSetStream(solver_, stream));
  QSHARD_CUSOLVER_TRY(cusolverDnCreateParams(&params_));
  return CudaStatus();
}

}  // namespace qshard::gpu
