// The kernels and cuBLAS calls behind layer_ops_device.h. Norms run one block per row with
// float64 partial sums reduced in a fixed order; elementwise kernels are grid-stride loops.
#include "kernels/cuda/layer_ops_device.h"

#include <algorithm>

#include "kernels/cuda/block_reduce.cuh"

namespace qshard::gpu {
namespace {

constexpr int kRowThreads = 256;
constexpr int kElementThreads = 256;
constexpr int64_t kMaxElementBlocks = 8192;

unsigned ElementBlocks(int64_t count) {
  return static_cast<unsigned>(std::clamp<int64_t>((count + kElementThreads - 1) / kElementThreads, 1, kMaxElementBlocks));
}

// The norms may run in place: each thread writes only the elements it read itself, after the
// block's reductions (which synchronize) have consumed every read.
__global__ void LayerNormKernel(const float* x, const float* __restrict__ weight, const float* __restrict__ bias,
                                double eps, int64_t cols, float* out) {
  __shared__ double shared[kReduceMaxWarps];
  const float* in = x + blockIdx.x * cols;
  float* o = out + blockIdx.x * cols;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum += in[i];
  const double mean = BlockReduce(sum, SumOp(), shared) / static_cast<double>(cols);
  double sum_squares = 0.0;  // two passes, as on the CPU: outlier channels make E[x²] − mean² cancel
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum_squares += (in[i] - mean) * (in[i] - mean);
  const double variance = BlockReduce(sum_squares, SumOp(), shared) / static_cast<double>(cols);
  const float inv_std = static_cast<float>(1.0 / sqrt(variance + eps));
  const float mean_f = static_cast<float>(mean);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) o[i] = (in[i] - mean_f) * inv_std * weight[i] + bias[i];
}

__global__ void RmsNormKernel(const float* x, const float* __restrict__ weight, double eps, int64_t cols, float* out) {
  __shared__ double shared[kReduceMaxWarps];
  const float* in = x + blockIdx.x * cols;
  float* o = out + blockIdx.x * cols;
  double sum_squares = 0.0;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum_squares += static_cast<double>(in[i]) * in[i];
  const double mean_square = BlockReduce(sum_squares, SumOp(), shared) / static_cast<double>(cols);
  const float inv_rms = static_cast<float>(1.0 / sqrt(mean_square + eps));
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) o[i] = weight[i] * (in[i] * inv_rms);
}

// y[r, c] = act(y[r, c] + bias[c]) (bias may be null).
__global__ void BiasActivationKernel(float* y, const float* __restrict__ bias, int64_t count, int64_t cols,
                                     bool relu) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float value = y[e];
    if (bias != nullptr) value += bias[e % cols];
    y[e] = relu ? fmaxf(value, 0.0f) : value;
  }
}

__global__ void SiluMultiplyKernel(float* gate, const float* __restrict__ up, int64_t count) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[e];
    gate[e] = g / (1.0f + expf(-g)) * up[e];
  }
}

__global__ void RopeTableKernel(int64_t tokens, int64_t first, int64_t head_dim, float base, float* cos_out,
                                float* sin_out) {
  const int64_t half = head_dim / 2, count = tokens * half;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = e / half, i = e % half;
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float power = static_cast<float>(pow(static_cast<double>(base), static_cast<double>(exponent)));
    const float inv_freq = 1.0f / power;
    const double angle = static_cast<float>(first + t) * inv_freq;  // the float32 product, as HF computes it
    cos_out[e] = static_cast<float>(cos(angle));
    sin_out[e] = static_cast<float>(sin(angle));
  }
}

__global__ void RopeKernel(float* x, int64_t tokens, int64_t heads, int64_t head_dim, const float* __restrict__ cos_t,
                           const float* __restrict__ sin_t) {
  const int64_t half = head_dim / 2, count = tokens * heads * half;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % half, head = (e / half) % heads, t = e / (half * heads);
    float* lo = x + t * heads * head_dim + head * head_dim + i;
    const float a = lo[0], b = lo[half];
    const float c = cos_t[t * half + i], s = sin_t[t * half + i];
    lo[0] = a * c - b * s;
    lo[half] = b * c + a * s;
  }
}

}  // namespace

CudaStatus LayerNormRows(const float* x, const float* weight, const float* bias, double eps, int64_t rows,
                         int64_t cols, float* out, cudaStream_t stream) {
  if (rows <= 0) return CudaStatus();
  LayerNormKernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(x, weight, bias, eps, cols, out);
  QSHARD_CUDA_CHECK_LAUNCH("LayerNormKernel");
  return CudaStatus();
}

CudaStatus RmsNormRows(const float* x, const float* weight, double eps, int64_t rows, int64_t cols, float* out,
                       cudaStream_t stream) {
  if (rows <= 0) return CudaStatus();
  RmsNormKernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(x, weight, eps, cols, out);
  QSHARD_CUDA_CHECK_LAUNCH("RmsNormKernel");
  return CudaStatus();
}

CudaStatus LinearForward(cublasHandle_t blas, cudaStream_t stream, const float* weight, const float* bias,
                         int64_t out_features, int64_t in_features, const float* x, int64_t rows, float* y,
                         bool accumulate, Activation activation) {
  if (rows <= 0) return CudaStatus();
  if (rows > 2147483647) return CudaStatus::Error("LinearForward: more rows than cuBLAS's int");
  // Row-major x [rows, in] is the column-major [in, rows], W [out, in] the column-major
  // [in, out]: y (column-major [out, rows]) = Wᵀ · x.
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  QSHARD_CUBLAS_TRY(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_features), static_cast<int>(rows),
                                static_cast<int>(in_features), &one, weight, static_cast<int>(in_features), x,
                                static_cast<int>(in_features), &beta, y, static_cast<int>(out_features)));
  return BiasActivationRows(y, bias, rows, out_features, activation, stream);
}

CudaStatus BiasActivationRows(float* y, const float* bias, int64_t rows, int64_t cols, Activation activation,
                              cudaStream_t stream) {
  const bool relu = activation == Activation::kRelu;
  if (rows <= 0 || (bias == nullptr && !relu)) return CudaStatus();
  const int64_t count = rows * cols;
  BiasActivationKernel<<<ElementBlocks(count), kElementThreads, 0, stream>>>(y, bias, count, cols, relu);
  QSHARD_CUDA_CHECK_LAUNCH("BiasActivationKernel");
  return CudaStatus();
}

CudaStatus SiluMultiplyInPlace(float* gate, const float* up, int64_t count, cudaStream_t stream) {
  if (count <= 0) return CudaStatus();
  SiluMultiplyKernel<<<ElementBlocks(count), kElementThreads, 0, stream>>>(gate, up, count);
  QSHARD_CUDA_CHECK_LAUNCH("SiluMultiplyKernel");
  return CudaStatus();
}

CudaStatus RopeTable(int64_t tokens, int64_t head_dim, double theta, float* cos, float* sin, cudaStream_t stream) {
  return RopeTable(tokens, 0, head_dim, theta, cos, sin, stream);
}

CudaStatus RopeTable(int64_t tokens, int64_t first_position, int64_t head_dim, double theta, float* cos, float* sin,
                     cudaStream_t stream) {
  const int64_t count = tokens * (head_dim / 2);
  if (count <= 0) return CudaStatus();
  RopeTableKernel<<<ElementBlocks(count), kElementThreads, 0, stream>>>(tokens, first_position, head_dim,
                                                                         static_cast<float>(theta), cos, sin);
  QSHARD_CUDA_CHECK_LAUNCH("RopeTableKernel");
  return CudaStatus();
}

CudaStatus ApplyRope(float* x, int64_t tokens, int64_t heads, int64_t head_dim, const float* cos, const float* sin,
                     cudaStream_t stream) {
  const int64_t count = tokens * heads * (head_dim / 2);
  if (count <= 0) return CudaStatus();
  RopeKernel<<<ElementBlocks(count), kElementThreads, 0, stream>>>(x, tokens, heads, head_dim, cos, sin);
  QSHARD_CUDA_CHECK_LAUNCH("RopeKernel");
  return CudaStatus();
}

}  // namespace qshard::gpu
