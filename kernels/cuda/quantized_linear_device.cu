// The quantized linears of quantized_linear_device.h: an fp32 → fp16 conversion of the inputs,
// the chosen kernel, and an fp16 → fp32 conversion (or accumulation) of its output.
#include "kernels/cuda/quantized_linear_device.h"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/cuda/gptq_baseline.h"

namespace qshard::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 8192;

unsigned Blocks(int64_t count) {
  return static_cast<unsigned>(std::clamp<int64_t>((count + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// Rounds to nearest; values beyond fp16's range become ±inf (fp16 activations are the kernels'
// contract: docs/cuda.md, "Evaluation and generation on the device").
__global__ void ToHalfKernel(const float* __restrict__ x, int64_t count, __half* __restrict__ out) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[e] = __float2half_rn(x[e]);
}

__global__ void FromHalfKernel(const __half* __restrict__ y, int64_t count, bool accumulate, float* __restrict__ out) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[e] = accumulate ? out[e] + __half2float(y[e]) : __half2float(y[e]);
}

// Grows `buffer` to at least `count` values.
template <typename T>
CudaStatus Grow(DeviceBuffer<T>& buffer, int64_t count) {
  if (static_cast<int64_t>(buffer.size()) >= count) return CudaStatus();
  return buffer.Allocate(static_cast<size_t>(count));
}

// x [tokens, in] into the scratch's fp16 x, and room for y [tokens, out].
CudaStatus StageInput(HalfLinearScratch& s, const float* x, int64_t tokens, int64_t in, int64_t out,
                      cudaStream_t stream) {
  if (tokens <= 0 || tokens > INT32_MAX) return CudaStatus::Error("quantized linear: bad token count");
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(s.x, tokens * in));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(s.y, tokens * out));
  ToHalfKernel<<<Blocks(tokens * in), kThreads, 0, stream>>>(x, tokens * in, s.x.get());
  QSHARD_CUDA_CHECK_LAUNCH("ToHalfKernel");
  return CudaStatus();
}

CudaStatus FinishOutput(const HalfLinearScratch& s, int64_t count, bool accumulate, float* y, cudaStream_t stream) {
  FromHalfKernel<<<Blocks(count), kThreads, 0, stream>>>(s.y.get(), count, accumulate, y);
  QSHARD_CUDA_CHECK_LAUNCH("FromHalfKernel");
  return CudaStatus();
}

}  // namespace

CudaStatus GptqDeviceLinear::Load(const layout::GptqPackedView& w, bool repack_w4, int64_t fused_max_tokens,
                                  HalfLinearScratch* scratch) {
  GptqMatrixView shape;
  shape.in_features = static_cast<int>(w.in_features);
  shape.out_features = static_cast<int>(w.out_features);
  shape.bits = w.bits;
  shape.groups = static_cast<int>(w.groups);
  if (w.in_features > INT32_MAX || w.out_features > INT32_MAX || w.groups > INT32_MAX)
    return CudaStatus::Error("GptqDeviceLinear: shape exceeds int");
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateGptqShape(shape));
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateGIdx(w.g_idx, shape.in_features, shape.groups));
  const int64_t words = layout::GptqQweightRows(w.in_features, w.bits) * w.out_features;
  const int64_t zero_words = w.groups * layout::GptqQzerosCols(w.out_features, w.bits);
  const auto as_ints = [](const uint32_t* p, int64_t n) {
    return std::vector<int32_t>(reinterpret_cast<const int32_t*>(p), reinterpret_cast<const int32_t*>(p) + n);
  };
  QSHARD_CUDA_RETURN_IF_ERROR(qweight_.Upload(as_ints(w.qweight, words)));
  QSHARD_CUDA_RETURN_IF_ERROR(qzeros_.Upload(as_ints(w.qzeros, zero_words)));
  QSHARD_CUDA_RETURN_IF_ERROR(g_idx_.Upload(std::vector<int32_t>(w.g_idx, w.g_idx + w.in_features)));
  std::vector<__half> scales(static_cast<size_t>(w.groups * w.out_features));
  for (size_t e = 0; e < scales.size(); ++e) {
    __half_raw raw;
    raw.x = w.scales[e];
    scales[e] = __half(raw);
  }
  QSHARD_CUDA_RETURN_IF_ERROR(scales_.Upload(scales));
  use_repacked_ = repack_w4;
  if (repack_w4) {
    layout::MmaW4Layer layer;
    if (const std::string why = layout::RepackGptqW4ForMma(w, layer); !why.empty())
      return CudaStatus::Error("GptqDeviceLinear: " + why);
    QSHARD_CUDA_RETURN_IF_ERROR(repacked_.Upload(layer));
  }
  in_ = shape.in_features;
  out_ = shape.out_features;
  bits_ = shape.bits;
  groups_ = shape.groups;
  fused_max_tokens_ = fused_max_tokens;
  scratch_ = scratch;
  return CudaStatus();
}

GptqMatrixView GptqDeviceLinear::View() const {
  return {qweight_.get(), qzeros_.get(), scales_.get(), g_idx_.get(), in_, out_, bits_, groups_};
}

CudaStatus GptqDeviceLinear::Apply(const SolverContext& context, const float* x, int64_t tokens, float* y,
                                   bool accumulate) {
  if (scratch_ == nullptr) return CudaStatus::Error("GptqDeviceLinear: not loaded");
  HalfLinearScratch& s = *scratch_;
  const cudaStream_t stream = context.stream();
  QSHARD_CUDA_RETURN_IF_ERROR(StageInput(s, x, tokens, in_, out_, stream));
  const int rows = static_cast<int>(tokens);
  if (tokens > fused_max_tokens_) {
    QSHARD_CUDA_RETURN_IF_ERROR(Grow(s.weight, static_cast<int64_t>(in_) * out_));
    QSHARD_CUDA_RETURN_IF_ERROR(DequantizeGptq(View(), s.weight.get(), stream));
    QSHARD_CUDA_RETURN_IF_ERROR(
        HalfMatmulCublas(context.blas(), s.x.get(), rows, s.weight.get(), in_, out_, s.y.get()));
  } else if (use_repacked_) {
    QSHARD_CUDA_RETURN_IF_ERROR(GptqMmaW4Matmul(repacked_.View(), s.x.get(), rows, s.y.get(), s.gptq, stream));
  } else {
    QSHARD_CUDA_RETURN_IF_ERROR(GptqMatmul(View(), s.x.get(), rows, s.y.get(), s.gptq, stream));
  }
  return FinishOutput(s, tokens * out_, accumulate, y, stream);
}

CudaStatus W8A8DeviceLinear::Load(const layout::GptqPackedView& w, HalfLinearScratch* scratch) {
  QSHARD_CUDA_RETURN_IF_ERROR(weights_.LoadGptq(w));
  scratch_ = scratch;
  return CudaStatus();
}

CudaStatus W8A8DeviceLinear::Apply(const SolverContext& context, const float* x, int64_t tokens, float* y,
                                   bool accumulate) {
  if (scratch_ == nullptr) return CudaStatus::Error("W8A8DeviceLinear: not loaded");
  HalfLinearScratch& s = *scratch_;
  const Int8ChannelWeightsView w = weights_.view();
  QSHARD_CUDA_RETURN_IF_ERROR(StageInput(s, x, tokens, w.in_features, w.out_features, context.stream()));
  QSHARD_CUDA_RETURN_IF_ERROR(W8A8Matmul(w, s.x.get(), static_cast<int>(tokens), s.y.get(), s.w8a8, context.stream()));
  return FinishOutput(s, tokens * w.out_features, accumulate, y, context.stream());
}

}  // namespace qshard::gpu
