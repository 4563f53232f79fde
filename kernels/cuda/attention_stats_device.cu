// DeviceAttentionStats: per window, per query head in key/value-head order, the probabilities
// (cublasSgemm + the attention's softmax kernel), A_h X (cublasStrmm), and the window products
// added into the float64 sums by DeviceHessianSum on a shared scratch; heads whose values' sums are
// not held skip the first three.
#include "kernels/cuda/attention_stats_device.h"

#include <cmath>
#include <string>

#include "kernels/cuda/attention_device.h"

namespace qshard::gpu {
namespace {

constexpr int64_t kCublasInt = 2147483647;

CudaStatus Check(const AttentionStatsDims& d) {
  if (d.hidden <= 0 || d.heads <= 0 || d.kv_heads <= 0 || d.head_dim <= 0 || d.heads % d.kv_heads != 0)
    return CudaStatus::Error("DeviceAttentionStats: dims must be positive, heads a multiple of kv_heads");
  if (d.hidden > kCublasInt || d.heads * d.head_dim > kCublasInt)
    return CudaStatus::Error("DeviceAttentionStats: dimensions exceed cuBLAS's int");
  return CudaStatus();
}

CudaStatus Grow(DeviceBuffer<float>& buffer, size_t count) {
  return buffer.size() >= count ? CudaStatus() : buffer.Allocate(count);
}

// Column block `first` (of `width` columns) of the row-major x [tokens, ld] into the contiguous
// slice [tokens, width].
CudaStatus Gather(const float* x, int64_t ld, int64_t first, int64_t width, int64_t tokens, float* slice,
                  cudaStream_t stream) {
  QSHARD_CUDA_TRY(cudaMemcpy2DAsync(slice, sizeof(float) * width, x + first, sizeof(float) * ld, sizeof(float) * width,
                                    tokens, cudaMemcpyDeviceToDevice, stream));
  return CudaStatus();
}

}  // namespace

CudaStatus DeviceAttentionStats::Reset(const AttentionStatsDims& d, cudaStream_t stream) {
  return Reset(d, {0, d.kv_heads}, stream);
}

CudaStatus DeviceAttentionStats::Reset(const AttentionStatsDims& d, KvHeadRange values, cudaStream_t stream) {
  QSHARD_CUDA_RETURN_IF_ERROR(Check(d));
  dims_ = d;
  for (std::vector<DeviceHessianSum>* sums : {&queries_, &keys_}) {
    sums->clear();
    sums->resize(d.kv_heads);
  }
  for (int64_t g = 0; g < d.kv_heads; ++g) {
    QSHARD_CUDA_RETURN_IF_ERROR(queries_[g].Reset(d.head_dim, stream));
    QSHARD_CUDA_RETURN_IF_ERROR(keys_[g].Reset(d.head_dim, stream));
  }
  QSHARD_CUDA_RETURN_IF_ERROR(ResetValues(values, stream));
  QSHARD_CUDA_RETURN_IF_ERROR(product_.Allocate(static_cast<size_t>(d.hidden) * d.hidden));
  return head_product_.Allocate(static_cast<size_t>(d.head_dim) * d.head_dim);
}

CudaStatus DeviceAttentionStats::ResetValues(KvHeadRange values, cudaStream_t stream) {
  if (queries_.empty()) return CudaStatus::Error("DeviceAttentionStats: Reset was not called");
  if (values.first < 0 || values.count < 1 || values.first + values.count > dims_.kv_heads)
    return CudaStatus::Error("DeviceAttentionStats: the values' heads must be a nonempty range of the key/value heads");
  values_.clear();  // freed before the next slice's are allocated
  values_.resize(values.count);
  value_heads_ = values;
  for (DeviceHessianSum& sum : values_) QSHARD_CUDA_RETURN_IF_ERROR(sum.Reset(dims_.hidden, stream));
  return CudaStatus();
}

CudaStatus DeviceAttentionStats::AddWindow(const SolverContext& context, const float* x, const float* q,
                                           const float* k, int64_t tokens, WindowSums sums) {
  const AttentionStatsDims& d = dims_;
  if (queries_.empty()) return CudaStatus::Error("DeviceAttentionStats: Reset was not called");
  if (tokens <= 0) return CudaStatus();
  if (tokens > kCublasInt) return CudaStatus::Error("DeviceAttentionStats: window too long for cuBLAS");
  if (context.blas() == nullptr) return CudaStatus::Error("DeviceAttentionStats: the context has no cuBLAS handle");
  const size_t t = tokens;
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(probabilities_, t * t));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(mixed_, t * d.hidden));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(slice_, t * d.head_dim));
  const cudaStream_t stream = context.stream();
  const int n = static_cast<int>(tokens), hidden = static_cast<int>(d.hidden), hd = static_cast<int>(d.head_dim);
  const int q_ld = static_cast<int>(d.heads * d.head_dim), kv_ld = static_cast<int>(d.kv_heads * d.head_dim);
  const int64_t group = d.heads / d.kv_heads;
  // The CPU's score scale (worker/model/decoder_layers.cc) and the forward's.
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.head_dim)));
  const float one = 1.0f, zero = 0.0f;
  float* p = probabilities_.get();
  const bool queries_and_keys = sums == WindowSums::kAll;
  const int64_t held_end = value_heads_.first + value_heads_.count;
  const int64_t first = queries_and_keys ? 0 : value_heads_.first, end = queries_and_keys ? d.kv_heads : held_end;
  for (int64_t g = first; g < end; ++g) {
    const bool held = g >= value_heads_.first && g < held_end;
    for (int64_t j = 0; j < group; ++j) {
      const int64_t h = g * group + j;
      if (held) {
        // Scores, column-major [keys, queries] = scale · K_gᵀ Q_h: row-major [query, key], as the
        // softmax kernel takes a head's rows (attention_plan.h's layout, one block of all rows).
        QSHARD_CUBLAS_TRY(cublasSgemm(context.blas(), CUBLAS_OP_T, CUBLAS_OP_N, n, n, hd, &scale, k + g * d.head_dim,
                                      kv_ld, q + h * d.head_dim, q_ld, &zero, p, n));
        QSHARD_CUDA_RETURN_IF_ERROR(CausalSoftmaxOnDevice(p, tokens, tokens, 0, 1, stream));
        // A_h X, row-major [T, hidden]: column-major Xᶜ [hidden, T] times Pᶜ [T, T], the
        // column-major view of the row-major probabilities, upper triangular (key ≤ query).
        QSHARD_CUBLAS_TRY(cublasStrmm(context.blas(), CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                                      CUBLAS_DIAG_NON_UNIT, hidden, n, &one, p, n, x, hidden, mixed_.get(), hidden));
        QSHARD_CUDA_RETURN_IF_ERROR(
            values_[g - value_heads_.first].AddWindow(context, mixed_.get(), tokens, product_.get()));
      }
      if (queries_and_keys) {
        QSHARD_CUDA_RETURN_IF_ERROR(Gather(q, q_ld, h * d.head_dim, d.head_dim, tokens, slice_.get(), stream));
        QSHARD_CUDA_RETURN_IF_ERROR(queries_[g].AddWindow(context, slice_.get(), tokens, head_product_.get()));
      }
    }
    if (queries_and_keys) {
      QSHARD_CUDA_RETURN_IF_ERROR(Gather(k, kv_ld, g * d.head_dim, d.head_dim, tokens, slice_.get(), stream));
      QSHARD_CUDA_RETURN_IF_ERROR(keys_[g].AddWindow(context, slice_.get(), tokens, head_product_.get()));
    }
  }
  return CudaStatus();
}

}  // namespace qshard::gpu
