// DeviceHessianSum: cublasSsyrk per window, then a tiled kernel that adds the float32 upper
// triangle into both triangles of the float64 sum (each element written by one thread).
#include "kernels/cuda/hessian_device.h"

#include <algorithm>

namespace qshard::gpu {
namespace {

constexpr int kTile = 32;
constexpr int kTileRows = 8;  // threads per tile column: each thread handles kTile / kTileRows rows

// sum += window for the tile pair (ta ≤ tb): the column-major upper triangle of `window`
// (element (a, b), a ≤ b, at window[b·dim + a]) is row-major row b, so reading it along a is
// coalesced; the mirror (a, b) is written through shared memory, also coalesced.
__global__ void AccumulateWindowKernel(const float* __restrict__ window, double* __restrict__ sum, int64_t dim) {
  __shared__ float tile[kTile][kTile + 1];
  const int64_t ta = blockIdx.x, tb = blockIdx.y;
  if (ta > tb) return;
  for (int k = threadIdx.y; k < kTile; k += kTileRows) {
    const int64_t b = tb * kTile + k, a = ta * kTile + threadIdx.x;
    float value = 0.0f;
    if (a <= b && b < dim) {
      value = window[b * dim + a];
      sum[b * dim + a] += value;
    }
    tile[k][threadIdx.x] = value;
  }
  __syncthreads();
  for (int k = threadIdx.y; k < kTile; k += kTileRows) {
    const int64_t a = ta * kTile + k, b = tb * kTile + threadIdx.x;
    if (a < b && b < dim) sum[a * dim + b] += tile[threadIdx.x][k];
  }
}

constexpr int kMaxRowsPerBlock = 64;

// abs_max[c] = max(abs_max[c], max_t |x[t, c]|). Non-negative floats order like their bit
// patterns, so an integer atomicMax gives the exact maximum whatever the order of arrival.
__global__ void AbsMaxKernel(const float* __restrict__ x, int64_t rows, int64_t dim, float* abs_max) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= dim) return;
  const int64_t begin = blockIdx.y * static_cast<int64_t>(kMaxRowsPerBlock);
  const int64_t end = min(begin + kMaxRowsPerBlock, rows);
  float largest = 0.0f;
  for (int64_t t = begin; t < end; ++t) largest = fmaxf(largest, fabsf(x[t * dim + c]));
  atomicMax(reinterpret_cast<int*>(abs_max) + c, __float_as_int(largest));
}

}  // namespace

CudaStatus DeviceHessianSum::Reset(int64_t dim, cudaStream_t stream) {
  if (dim <= 0) return CudaStatus::Error("DeviceHessianSum: dim must be positive");
  dim_ = dim;
  tokens_ = 0;
  QSHARD_CUDA_RETURN_IF_ERROR(sum_.Allocate(static_cast<size_t>(dim) * dim));
  QSHARD_CUDA_RETURN_IF_ERROR(abs_max_.Allocate(dim));
  QSHARD_CUDA_TRY(cudaMemsetAsync(sum_.get(), 0, sum_.bytes(), stream));
  QSHARD_CUDA_TRY(cudaMemsetAsync(abs_max_.get(), 0, abs_max_.bytes(), stream));
  return CudaStatus();
}

CudaStatus DeviceHessianSum::Load(const double* host_sum, int64_t dim, int64_t tokens, cudaStream_t stream) {
  QSHARD_CUDA_RETURN_IF_ERROR(Reset(dim, stream));
  QSHARD_CUDA_TRY(cudaMemcpyAsync(sum_.get(), host_sum, sum_.bytes(), cudaMemcpyHostToDevice, stream));
  tokens_ = tokens;
  return CudaStatus();
}

CudaStatus DeviceHessianSum::AddWindow(const SolverContext& context, const float* x, int64_t rows) {
  if (dim_ == 0) return CudaStatus::Error("DeviceHessianSum: Reset was not called");
  if (rows <= 0) return CudaStatus();
  const size_t square = static_cast<size_t>(dim_) * dim_;
  if (window_.size() != square) QSHARD_CUDA_RETURN_IF_ERROR(window_.Allocate(square));  // Reset may change dim
  return AddWindow(context, x, rows, window_.get());
}

CudaStatus DeviceHessianSum::AddWindow(const SolverContext& context, const float* x, int64_t rows, float* scratch) {
  if (dim_ == 0) return CudaStatus::Error("DeviceHessianSum: Reset was not called");
  if (rows <= 0) return CudaStatus();
  if (rows > (int64_t{1} << 31) - 1) return CudaStatus::Error("DeviceHessianSum: window too long for cuBLAS");
  if (scratch == nullptr) return CudaStatus::Error("DeviceHessianSum: no scratch for the window's product");

  // x [rows, dim] row-major is the column-major matrix A [dim, rows]; window = A·Aᵀ.
  const float one = 1.0f, zero = 0.0f;
  QSHARD_CUBLAS_TRY(cublasSsyrk(context.blas(), CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, static_cast<int>(dim_),
                                static_cast<int>(rows), &one, x, static_cast<int>(dim_), &zero, scratch,
                                static_cast<int>(dim_)));
  const unsigned tiles = static_cast<unsigned>((dim_ + kTile - 1) / kTile);
  AccumulateWindowKernel<<<dim3(tiles, tiles), dim3(kTile, kTileRows), 0, context.stream()>>>(scratch, sum_.get(),
                                                                                               dim_);
  QSHARD_CUDA_CHECK_LAUNCH("AccumulateWindowKernel");

  constexpr int kThreads = 256;
  const dim3 grid(static_cast<unsigned>((dim_ + kThreads - 1) / kThreads),
                  static_cast<unsigned>((rows + kMaxRowsPerBlock - 1) / kMaxRowsPerBlock));
  AbsMaxKernel<<<grid, kThreads, 0, context.stream()>>>(x, rows, dim_, abs_max_.get());
  QSHARD_CUDA_CHECK_LAUNCH("AbsMaxKernel");
  tokens_ += rows;
  return CudaStatus();
}

}  // namespace qshard::gpu
