#include "kernels/cuda/adaround_device.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cuda/device_buffer.h"

namespace qshard::gpu {
namespace {

constexpr float kGamma = -0.1f, kZeta = 1.1f;  // the rectified sigmoid's stretch (adaround_rounding.cc)
constexpr float kAdamBeta1 = 0.9f, kAdamBeta2 = 0.999f, kAdamEpsilon = 1e-8f;
constexpr int kThreads = 256;

int Blocks(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)); }

// The soft weight's pieces at v, as adaround_rounding.cc's SoftErrors: h, dh/dv (0 where h is
// saturated), the clamped level and its step where the clamp passes the gradient.
struct Soft {
  float h, dh_dv, step_in_range, error;
};

__device__ Soft SoftAt(float v, float floor_level, float step, float zero, float weight, float max_code) {
  const float saturation = logf((kZeta - kGamma) / -kGamma - 1.0f);  // ln 11
  const float s = 1.0f / (1.0f + expf(fminf(fmaxf(-v, -87.3f), 88.3f)));
  const bool saturated = fabsf(v) > saturation;
  const float soft = fminf(fmaxf(s * (kZeta - kGamma) + kGamma, 0.0f), 1.0f);
  Soft out;
  out.h = saturated ? (v > 0.0f ? 1.0f : 0.0f) : soft;
  out.dh_dv = saturated ? 0.0f : (kZeta - kGamma) * s * (1.0f - s);
  const float level = floor_level + out.h;
  out.step_in_range = (level >= 0.0f && level <= max_code) ? step : 0.0f;
  out.error = step * fminf(fmaxf(level, 0.0f), max_code) - (step * zero + weight);
  return out;
}

// |t|^exponent for |t| ≤ 1, exponent ≥ 1, |t| below 2^-100 counting as 2^-100 (PowerOfFraction).
__device__ float PowerOfFraction(float t_abs, float exponent) {
  return expf(fmaxf(exponent * logf(fmaxf(t_abs, 7.8886091e-31f)), -87.3f));
}

// To bfloat16 as the CPU's products round their inputs (kernels/cpu/bf16_gemm.h): to nearest
// even, a float32 subnormal to a zero of its sign; so both descents multiply the same values.
__device__ __nv_bfloat16 ToBf16(float x) {
  return __float2bfloat16_rn(fabsf(x) < 1.17549435e-38f ? copysignf(0.0f, x) : x);
}

// The soft weights' errors E, in bfloat16 for the gradient's product.
__global__ void SoftErrorsKernel(int64_t n, const float* v, const float* floor_level, const float* step,
                                 const float* zero, const float* weight, float max_code, __nv_bfloat16* e) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    e[i] = ToBf16(SoftAt(v[i], floor_level[i], step[i], zero[i], weight[i], max_code).error);
}

// The gradient d/dv from half = E·H (or G·E·H), then Adam's step t (ChainToVariables, AdamUpdate).
__global__ void ChainAdamKernel(int64_t n, const float* half, const float* floor_level, const float* step,
                                const float* zero, const float* weight, float max_code, float coefficient, float beta,
                                float step_size, float inverse_sqrt_correction2, float* v, float* m, float* second) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Soft soft = SoftAt(v[i], floor_level[i], step[i], zero[i], weight[i], max_code);
    float grad;
    if (coefficient == 0.0f) {
      grad = 2.0f * half[i] * soft.step_in_range * soft.dh_dv;
    } else {
      const float t = 2.0f * soft.h - 1.0f;
      const float power = copysignf(PowerOfFraction(fabsf(t), beta - 1.0f), t);
      grad = (2.0f * half[i] * soft.step_in_range - coefficient * power) * soft.dh_dv;
    }
    m[i] = kAdamBeta1 * m[i] + (1.0f - kAdamBeta1) * grad;
    second[i] = kAdamBeta2 * second[i] + (1.0f - kAdamBeta2) * grad * grad;
    v[i] -= step_size * m[i] / (sqrtf(second[i]) * inverse_sqrt_correction2 + kAdamEpsilon);
  }
}

// The hard rounding [v ≥ 0] as codes.
__global__ void CodesKernel(int64_t n, const float* v, const float* floor_level, float max_code, int32_t* codes) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    codes[i] = static_cast<int32_t>(fminf(fmaxf(floor_level[i] + (v[i] >= 0.0f ? 1.0f : 0.0f), 0.0f), max_code));
}

// The codes' errors s·(code − z) − w (DequantizeCode), float32.
__global__ void CodeErrorsKernel(int64_t n, const int32_t* codes, const float* step, const float* zero,
                                 const float* weight, float* e) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    e[i] = step[i] * static_cast<float>(codes[i] - static_cast<int32_t>(zero[i])) - weight[i];
}

// Per row r: Σ_c product[r, c]·e[r, c] in float64, one block per row, a fixed-order tree.
__global__ void RowDotKernel(int64_t cols, const float* product, const float* e, double* row_sums) {
  __shared__ double partial[kThreads];
  const int64_t row = blockIdx.x;
  double sum = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    sum += static_cast<double>(product[row * cols + c]) * static_cast<double>(e[row * cols + c]);
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) row_sums[row] = partial[0];
}

__global__ void ToBf16Kernel(int64_t n, const float* x, __nv_bfloat16* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = ToBf16(x[i]);
}

// The problem's arrays on the device and the descent's state.
struct DeviceRounding {
  int64_t rows = 0, cols = 0, n = 0, blocks = 0, heads = 0, block_rows = 0, head_rows = 0;
  float max_code = 0.0f;
  DeviceBuffer<float> step, zero, floor_level, v, weight, m, second, product, weighted, e32, hessians, weightings;
  DeviceBuffer<__nv_bfloat16> e16, hessians16;
  DeviceBuffer<int32_t> codes;
  DeviceBuffer<double> row_sums;
};

CudaStatus Upload(DeviceBuffer<float>& buffer, const float* host, size_t count, cudaStream_t stream) {
  QSHARD_CUDA_RETURN_IF_ERROR(buffer.Allocate(count));
  QSHARD_CUDA_TRY(cudaMemcpyAsync(buffer.get(), host, count * sizeof(float), cudaMemcpyHostToDevice, stream));
  return CudaStatus();
}

// Half the gradient's product, or the loss's: E·H per Hessian block (bfloat16 inputs, float32
// sums, if e16; else float32), then G·(E·H) per head if there are weightings. Row-major [r, c]
// is column-major [c, r], so E·H is computed as (Hᵀ-free) H-column-major × E-column-major.
CudaStatus Product(cublasHandle_t blas, DeviceRounding& d, const __nv_bfloat16* e16, const float* e32,
                   const float** out) {
  const float one = 1.0f, zero = 0.0f;
  const long long hessian_stride = d.cols * d.cols, block_stride = d.block_rows * d.cols;
  if (e16 != nullptr) {
    QSHARD_CUBLAS_TRY(cublasGemmStridedBatchedEx(
        blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(d.cols), static_cast<int>(d.block_rows),
        static_cast<int>(d.cols), &one, d.hessians16.get(), CUDA_R_16BF, static_cast<int>(d.cols), hessian_stride, e16,
        CUDA_R_16BF, static_cast<int>(d.cols), block_stride, &zero, d.product.get(), CUDA_R_32F,
        static_cast<int>(d.cols), block_stride, static_cast<int>(d.blocks), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  } else {
    QSHARD_CUBLAS_TRY(cublasSgemmStridedBatched(
        blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(d.cols), static_cast<int>(d.block_rows),
        static_cast<int>(d.cols), &one, d.hessians.get(), static_cast<int>(d.cols), hessian_stride, e32,
        static_cast<int>(d.cols), block_stride, &zero, d.product.get(), static_cast<int>(d.cols), block_stride,
        static_cast<int>(d.blocks)));
  }
  *out = d.product.get();
  if (d.heads == 0) return CudaStatus();
  // Q_h [d, cols] = G_h·P_h: column-major [cols, d] = P_h (column-major [cols, d]) × G_h (column-major, Gᵀ's rows).
  const long long head_stride = d.head_rows * d.cols, weighting_stride = d.head_rows * d.head_rows;
  QSHARD_CUBLAS_TRY(cublasSgemmStridedBatched(
      blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(d.cols), static_cast<int>(d.head_rows),
      static_cast<int>(d.head_rows), &one, d.product.get(), static_cast<int>(d.cols), head_stride, d.weightings.get(),
      static_cast<int>(d.head_rows), weighting_stride, &zero, d.weighted.get(), static_cast<int>(d.cols), head_stride,
      static_cast<int>(d.heads)));
  *out = d.weighted.get();
  return CudaStatus();
}

// The codes' loss per unit: float32 products, float64 row sums, the unit's rows added in order.
CudaStatus UnitLosses(cublasHandle_t blas, cudaStream_t stream, DeviceRounding& d, const int32_t* codes,
                      std::vector<double>& losses) {
  CodeErrorsKernel<<<Blocks(d.n), kThreads, 0, stream>>>(d.n, codes, d.step.get(), d.zero.get(), d.weight.get(),
                                                          d.e32.get());
  QSHARD_CUDA_CHECK_LAUNCH("CodeErrorsKernel");
  const float* product = nullptr;
  QSHARD_CUDA_RETURN_IF_ERROR(Product(blas, d, nullptr, d.e32.get(), &product));
  RowDotKernel<<<static_cast<unsigned>(d.rows), kThreads, 0, stream>>>(d.cols, product, d.e32.get(), d.row_sums.get());
  QSHARD_CUDA_CHECK_LAUNCH("RowDotKernel");
  std::vector<double> row_sums(d.rows);
  QSHARD_CUDA_TRY(cudaMemcpyAsync(row_sums.data(), d.row_sums.get(), row_sums.size() * sizeof(double),
                                  cudaMemcpyDeviceToHost, stream));
  QSHARD_CUDA_TRY(cudaStreamSynchronize(stream));
  const int64_t unit_rows = d.heads > 0 ? d.head_rows : d.block_rows;
  losses.assign(d.rows / unit_rows, 0.0);
  for (int64_t r = 0; r < d.rows; ++r) losses[r / unit_rows] += row_sums[r];
  return CudaStatus();
}

}  // namespace

CudaStatus LearnRoundingOnDevice(cublasHandle_t blas, cudaStream_t stream, const AdaRoundDeviceProblem& p,
                                 const AdaRoundDeviceOptions& o, AdaRoundDeviceResult& result) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateAdaRoundDeviceProblem(p, o));
  QSHARD_CUBLAS_TRY(cublasSetStream(blas, stream));
  DeviceRounding d;
  d.rows = p.rows;
  d.cols = p.cols;
  d.n = p.rows * p.cols;
  d.blocks = static_cast<int64_t>(p.hessians.size());
  d.heads = static_cast<int64_t>(p.weightings.size());
  d.block_rows = p.rows / d.blocks;
  d.head_rows = d.heads > 0 ? p.rows / d.heads : 0;
  d.max_code = static_cast<float>(p.max_code);
  const size_t n = static_cast<size_t>(d.n);
  QSHARD_CUDA_RETURN_IF_ERROR(Upload(d.step, p.step, n, stream));
  QSHARD_CUDA_RETURN_IF_ERROR(Upload(d.zero, p.zero, n, stream));
  QSHARD_CUDA_RETURN_IF_ERROR(Upload(d.floor_level, p.floor_level, n, stream));
  QSHARD_CUDA_RETURN_IF_ERROR(Upload(d.v, p.variables, n, stream));
  QSHARD_CUDA_RETURN_IF_ERROR(Upload(d.weight, p.weight, n, stream));
  const size_t hessian = static_cast<size_t>(p.cols) * p.cols;
  QSHARD_CUDA_RETURN_IF_ERROR(d.hessians.Allocate(hessian * d.blocks));
  for (int64_t b = 0; b < d.blocks; ++b)
    QSHARD_CUDA_TRY(cudaMemcpyAsync(d.hessians.get() + b * hessian, p.hessians[b], hessian * sizeof(float),
                                    cudaMemcpyHostToDevice, stream));
  QSHARD_CUDA_RETURN_IF_ERROR(d.hessians16.Allocate(hessian * d.blocks));
  ToBf16Kernel<<<Blocks(hessian * d.blocks), kThreads, 0, stream>>>(hessian * d.blocks, d.hessians.get(),
                                                                     d.hessians16.get());
  QSHARD_CUDA_CHECK_LAUNCH("ToBf16Kernel");
  if (d.heads > 0) {
    const size_t weighting = static_cast<size_t>(d.head_rows) * d.head_rows;
    QSHARD_CUDA_RETURN_IF_ERROR(d.weightings.Allocate(weighting * d.heads));
    for (int64_t h = 0; h < d.heads; ++h)
      QSHARD_CUDA_TRY(cudaMemcpyAsync(d.weightings.get() + h * weighting, p.weightings[h], weighting * sizeof(float),
                                      cudaMemcpyHostToDevice, stream));
    QSHARD_CUDA_RETURN_IF_ERROR(d.weighted.Allocate(n));
  }
  for (DeviceBuffer<float>* buffer : {&d.m, &d.second, &d.product, &d.e32})
    QSHARD_CUDA_RETURN_IF_ERROR(buffer->Allocate(n));
  QSHARD_CUDA_RETURN_IF_ERROR(d.e16.Allocate(n));
  QSHARD_CUDA_RETURN_IF_ERROR(d.codes.Allocate(n));
  QSHARD_CUDA_RETURN_IF_ERROR(d.row_sums.Allocate(d.rows));
  QSHARD_CUDA_TRY(cudaMemsetAsync(d.m.get(), 0, d.m.bytes(), stream));
  QSHARD_CUDA_TRY(cudaMemsetAsync(d.second.get(), 0, d.second.bytes(), stream));

  // The initial codes' loss, then the descent.
  QSHARD_CUDA_TRY(cudaMemcpyAsync(d.codes.get(), p.initial_codes, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
  QSHARD_CUDA_RETURN_IF_ERROR(UnitLosses(blas, stream, d, d.codes.get(), result.initial_losses));
  if (o.iters <= 0) {
    result.learned.assign(p.initial_codes, p.initial_codes + n);
    result.learned_losses = result.initial_losses;
    return CudaStatus();
  }
  const float lambda = static_cast<float>(o.lambda), learning_rate = static_cast<float>(o.learning_rate);
  for (int it = 0; it < o.iters; ++it) {
    const bool regularize = it >= o.warmup * o.iters;
    const float beta = AdaRoundBeta(it, o), t = static_cast<float>(it + 1);
    // Adam's bias corrections as the CPU's AdamUpdate computes them (float powers on the host).
    const float step_size = learning_rate / (1.0f - std::pow(kAdamBeta1, t));
    const float inverse_sqrt_correction2 = 1.0f / std::sqrt(1.0f - std::pow(kAdamBeta2, t));
    SoftErrorsKernel<<<Blocks(d.n), kThreads, 0, stream>>>(d.n, d.v.get(), d.floor_level.get(), d.step.get(),
                                                            d.zero.get(), d.weight.get(), d.max_code, d.e16.get());
    QSHARD_CUDA_CHECK_LAUNCH("SoftErrorsKernel");
    const float* half = nullptr;
    QSHARD_CUDA_RETURN_IF_ERROR(Product(blas, d, d.e16.get(), nullptr, &half));
    ChainAdamKernel<<<Blocks(d.n), kThreads, 0, stream>>>(
        d.n, half, d.floor_level.get(), d.step.get(), d.zero.get(), d.weight.get(), d.max_code,
        regularize ? lambda * 2.0f * beta : 0.0f, beta, step_size, inverse_sqrt_correction2, d.v.get(), d.m.get(),
        d.second.get());
    QSHARD_CUDA_CHECK_LAUNCH("ChainAdamKernel");
  }
  CodesKernel<<<Blocks(d.n), kThreads, 0, stream>>>(d.n, d.v.get(), d.floor_level.get(), d.max_code, d.codes.get());
  QSHARD_CUDA_CHECK_LAUNCH("CodesKernel");
  result.learned.resize(n);
  QSHARD_CUDA_TRY(cudaMemcpyAsync(result.learned.data(), d.codes.get(), n * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                  stream));
  return UnitLosses(blas, stream, d, d.codes.get(), result.learned_losses);
}

}  // namespace qshard::gpu
