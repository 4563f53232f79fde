// The W8A8 path: the per-token quantization kernel, the cuBLASLt int8 GEMM and the scaling
// epilogue. The two kernels are memory-bound side work (the GEMM reads the weights); they are
// written for plainness, with the codes written four at a time because rows are 16-byte aligned.
#include "kernels/cuda/w8a8_matmul.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/layout/int8_channel_weights.h"

namespace qshard::gpu {
namespace {

// cuBLASLt asks for 32 MiB on Hopper and 4 MiB on earlier GPUs (cublasSetWorkspace's guide);
// split-K algorithms for the skinny shapes want it.
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
constexpr int kQuantizeThreads = 512;
constexpr int kScaleThreads = 256;
// The GEMM's token dimension (cuBLASLt's n) is padded with zero rows to at least this many.
// The cuBLAS documentation sets no minimum, but PyTorch's torch._int_mm (cuBLASLt int8 → int32
// too) has refused fewer than 17 rows for years, and a 2026 pull request lifting that pads 1..31
// rows to 32; without a GPU to try it on first, this code does the same. The cost is int8 work
// on ≤ 31 zero rows, small beside reading the weights at these token counts.
constexpr int kMinGemmTokens = 32;

int GemmTokens(int tokens) { return std::max(tokens, kMinGemmTokens); }

// One block per GEMM row: for a token, max |x| over the row, then the codes
// (kernels/layout/int8_symmetric.h); rows past the tokens (padding) are zeros.
__global__ void QuantizeTokensKernel(const __half* __restrict__ x, int tokens, int in, int in_padded,
                                     int8_t* __restrict__ codes, float* __restrict__ token_scales) {
  __shared__ float shared[kReduceMaxWarps];
  const int t = blockIdx.x;
  if (t >= tokens) {
    int* zeros = reinterpret_cast<int*>(codes + static_cast<size_t>(t) * in_padded);
    for (int v = threadIdx.x; v < in_padded / 4; v += blockDim.x) zeros[v] = 0;
    return;
  }
  const __half* row = x + static_cast<size_t>(t) * in;
  float max_abs = 0.0f;
  for (int i = threadIdx.x; i < in; i += blockDim.x) max_abs = fmaxf(max_abs, fabsf(__half2float(row[i])));
  max_abs = BlockReduce(max_abs, MaxOp(), shared);
  const float scale = layout::Int8ScaleOfMaxAbs(max_abs);
  char4* out = reinterpret_cast<char4*>(codes + static_cast<size_t>(t) * in_padded);
  for (int v = threadIdx.x; v < in_padded / 4; v += blockDim.x) {
    int8_t q[4];
    for (int k = 0; k < 4; ++k) {
      const int i = 4 * v + k;
      q[k] = i < in ? layout::Int8Code(__half2float(row[i]), scale, layout::kInt8MaxCode) : int8_t{0};
    }
    out[v] = make_char4(q[0], q[1], q[2], q[3]);
  }
  if (threadIdx.x == 0) token_scales[t] = scale;
}

// y[t, o] = fp16(float(products[t, o]) · (token_scale[t] · channel_scale[o])); grid (columns, tokens).
__global__ void ScaleProductsKernel(const int32_t* __restrict__ products, int out, int out_padded,
                                    const float* __restrict__ token_scales,
                                    const float* __restrict__ channel_scales, __half* __restrict__ y) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  const int t = blockIdx.y;
  if (o >= out) return;
  const float product = static_cast<float>(products[static_cast<size_t>(t) * out_padded + o]);
  y[static_cast<size_t>(t) * out + o] = __float2half_rn(product * (token_scales[t] * channel_scales[o]));
}

// Grows `buffer` to at least `count` elements (contents are not kept: every call rewrites them).
template <typename T>
CudaStatus Grow(DeviceBuffer<T>& buffer, size_t count) {
  if (buffer.size() >= count) return CudaStatus();
  return buffer.Allocate(count);
}

}  // namespace

CudaStatus ValidateW8A8(const Int8ChannelWeightsView& w, const __half* x, int tokens, const __half* y) {
  // The scaling kernel's grid has one row of blocks per token (at most 65535).
  if (w.in_features <= 0 || w.out_features <= 0 || tokens < 0 || tokens > 65535) {
    return CudaStatus::Error("W8A8Matmul: bad shape (in " + std::to_string(w.in_features) + ", out " +
                             std::to_string(w.out_features) + ", tokens " + std::to_string(tokens) + ")");
  }
  if (w.codes == nullptr || w.scales == nullptr || x == nullptr || y == nullptr) {
    return CudaStatus::Error("W8A8Matmul: null codes, scales, x or y");
  }
  // cuBLASLt's int8 kernels need 4-byte aligned operands; the layout promises 16.
  if (reinterpret_cast<uintptr_t>(w.codes) % 16 != 0 || reinterpret_cast<uintptr_t>(w.scales) % 4 != 0) {
    return CudaStatus::Error("W8A8Matmul: codes not 16-byte or scales not 4-byte aligned");
  }
  return CudaStatus();
}

CudaStatus DeviceInt8ChannelWeights::Load(const float* weight, int in_features, int out_features) {
  if (weight == nullptr || in_features <= 0 || out_features <= 0) {
    return CudaStatus::Error("DeviceInt8ChannelWeights::Load: null weight or bad shape");
  }
  std::vector<int8_t> codes(layout::Int8PaddedWidth(in_features) * layout::Int8PaddedWidth(out_features));
  std::vector<float> scales(layout::Int8PaddedWidth(out_features));
  layout::QuantizeWeightsPerChannelInt8(weight, in_features, out_features, codes.data(), scales.data());
  return Upload(codes, scales, in_features, out_features);
}

CudaStatus DeviceInt8ChannelWeights::LoadGptq(const layout::GptqPackedView& w) {
  if (w.qweight == nullptr || w.qzeros == nullptr || w.scales == nullptr || w.in_features <= 0 ||
      w.out_features <= 0 || w.in_features > INT32_MAX || w.out_features > INT32_MAX ||
      !layout::GptqShapeFits(w.bits, w.in_features, w.out_features)) {
    return CudaStatus::Error("DeviceInt8ChannelWeights::LoadGptq: null tensors or bad shape");
  }
  std::vector<int8_t> codes(layout::Int8PaddedWidth(w.in_features) * layout::Int8PaddedWidth(w.out_features));
  std::vector<float> scales(layout::Int8PaddedWidth(w.out_features));
  if (const char* why = layout::Int8WeightsFromGptq(w, HalfBitsToFloat, codes.data(), scales.data())) {
    return CudaStatus::Error(std::string("DeviceInt8ChannelWeights::LoadGptq: ") + why);
  }
  return Upload(codes, scales, static_cast<int>(w.in_features), static_cast<int>(w.out_features));
}

CudaStatus DeviceInt8ChannelWeights::Upload(const std::vector<int8_t>& codes, const std::vector<float>& scales,
                                            int in_features, int out_features) {
  QSHARD_CUDA_RETURN_IF_ERROR(codes_.Upload(codes));
  QSHARD_CUDA_RETURN_IF_ERROR(scales_.Upload(scales));
  in_features_ = in_features;
  out_features_ = out_features;
  return CudaStatus();
}

W8A8Workspace::~W8A8Workspace() {
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

CudaStatus W8A8Workspace::Reserve(int tokens, int in_features, int out_features) {
  if (handle_ == nullptr) {
    QSHARD_CUBLAS_TRY(cublasLtCreate(&handle_));
    // D = A · B with A the codes [in_padded, out_padded] column-major, transposed ("TN", the
    // only form cuBLASLt's int8 kernels take on the regular ordering), int32 alpha and beta.
    QSHARD_CUBLAS_TRY(cublasLtMatmulDescInit(&desc_, CUBLAS_COMPUTE_32I, CUDA_R_32I));
    const cublasOperation_t transpose = CUBLAS_OP_T;
    QSHARD_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(&desc_, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
    QSHARD_CUDA_RETURN_IF_ERROR(cublas_workspace_.Allocate(kCublasWorkspaceBytes));
  }
  const size_t rows = static_cast<size_t>(GemmTokens(tokens));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(quantized_x_, rows * layout::Int8PaddedWidth(in_features)));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(token_scales_, rows));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(products_, rows * layout::Int8PaddedWidth(out_features)));
  return CudaStatus();
}

CudaStatus W8A8Workspace::FindPlan(int tokens, int in_padded, int out_padded, Plan*& plan) {
  for (Plan& known : plans_) {
    if (known.tokens == tokens && known.in_padded == in_padded && known.out_padded == out_padded) {
      plan = &known;
      return CudaStatus();
    }
  }
  // The descriptors are initialized where they will stay (a deque never moves its elements):
  // cuBLASLt does not promise that an initialized descriptor survives being copied.
  Plan& made = plans_.emplace_back();
  const CudaStatus status = MakePlan(tokens, in_padded, out_padded, made);
  if (!status.ok()) {
    plans_.pop_back();
    return status;
  }
  plan = &made;
  return CudaStatus();
}

CudaStatus W8A8Workspace::MakePlan(int tokens, int in_padded, int out_padded, Plan& made) {
  // Column-major views of the row-major buffers: codes [out_p, in_p] is A = [in_p × out_p]
  // (k × m, read transposed), the activations [tokens, in_p] are B = [in_p × tokens] (k × n),
  // the products [tokens, out_p] are D = [out_p × tokens] (m × n). Every leading dimension is a
  // multiple of 16.
  QSHARD_CUBLAS_TRY(cublasLtMatrixLayoutInit(&made.a, CUDA_R_8I, in_padded, out_padded, in_padded));
  QSHARD_CUBLAS_TRY(cublasLtMatrixLayoutInit(&made.b, CUDA_R_8I, in_padded, tokens, in_padded));
  QSHARD_CUBLAS_TRY(cublasLtMatrixLayoutInit(&made.d, CUDA_R_32I, out_padded, tokens, out_padded));
  cublasLtMatmulPreferenceOpaque_t preference{};
  QSHARD_CUBLAS_TRY(cublasLtMatmulPreferenceInit(&preference));
  const size_t workspace_bytes = cublas_workspace_.bytes();
  QSHARD_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(&preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &workspace_bytes, sizeof(workspace_bytes)));
  // The preference assumes 256-byte aligned operands unless told otherwise, and the heuristic may
  // then pick an algorithm that needs that; the codes are only promised 16 (the view's contract).
  // The other operands are this workspace's own cudaMalloc buffers (256).
  const uint32_t codes_alignment = 16;
  QSHARD_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(&preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                         &codes_alignment, sizeof(codes_alignment)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  QSHARD_CUBLAS_TRY(cublasLtMatmulAlgoGetHeuristic(handle_, &desc_, &made.a, &made.b, &made.d, &made.d, &preference,
                                                   1, &result, &found));
  if (found == 0 || result.state != CUBLAS_STATUS_SUCCESS) {
    return CudaStatus::Error("W8A8Matmul: cuBLASLt has no int8 algorithm for m " + std::to_string(out_padded) +
                             ", n " + std::to_string(tokens) + ", k " + std::to_string(in_padded));
  }
  made.algo = result.algo;
  made.tokens = tokens;
  made.in_padded = in_padded;
  made.out_padded = out_padded;
  return CudaStatus();
}

CudaStatus W8A8Matmul(const Int8ChannelWeightsView& w, const __half* x, int tokens, __half* y,
                      W8A8Workspace& workspace, cudaStream_t stream) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateW8A8(w, x, tokens, y));
  if (tokens == 0) return CudaStatus();
  QSHARD_CUDA_RETURN_IF_ERROR(workspace.Reserve(tokens, w.in_features, w.out_features));
  const int in_padded = static_cast<int>(layout::Int8PaddedWidth(w.in_features));
  const int out_padded = static_cast<int>(layout::Int8PaddedWidth(w.out_features));
  const int gemm_tokens = GemmTokens(tokens);
  W8A8Workspace::Plan* plan = nullptr;
  QSHARD_CUDA_RETURN_IF_ERROR(workspace.FindPlan(gemm_tokens, in_padded, out_padded, plan));

  QuantizeTokensKernel<<<gemm_tokens, kQuantizeThreads, 0, stream>>>(x, tokens, w.in_features, in_padded,
                                                                     workspace.quantized_x(), workspace.token_scales());
  QSHARD_CUDA_CHECK_LAUNCH("QuantizeTokensKernel");
  const int32_t alpha = 1;
  const int32_t beta = 0;
  QSHARD_CUBLAS_TRY(cublasLtMatmul(workspace.handle_, &workspace.desc_, &alpha, w.codes, &plan->a,
                                   workspace.quantized_x(), &plan->b, &beta, workspace.products(), &plan->d,
                                   workspace.products(), &plan->d, &plan->algo, workspace.cublas_workspace_.get(),
                                   workspace.cublas_workspace_.bytes(), stream));
  const dim3 grid((w.out_features + kScaleThreads - 1) / kScaleThreads, tokens);
  ScaleProductsKernel<<<grid, kScaleThreads, 0, stream>>>(workspace.products(), w.out_features, out_padded,
                                                          workspace.token_scales(), w.scales, y);
  QSHARD_CUDA_CHECK_LAUNCH("ScaleProductsKernel");
  return CudaStatus();
}

}  // namespace qshard::gpu
