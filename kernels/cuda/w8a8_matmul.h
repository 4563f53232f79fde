// W8A8 linear layers through cuBLASLt's int8 GEMM: fp16 activations quantized per token on the
// device (kernels/layout/int8_symmetric.h, the CPU int8 path's rule), int8 weights with one fp32
// scale per output channel (kernels/layout/int8_channel_weights.h), int8 × int8 → int32 products
// (exact), then both scales applied in fp32 and the result rounded to fp16.
#pragma once

#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/layout/gptq_packed.h"

namespace qshard::gpu {

// Device pointers to one layer in the int8 per-channel layout (widths padded to 16).
struct Int8ChannelWeightsView {
  const int8_t* codes = nullptr;  // [Int8PaddedWidth(out), Int8PaddedWidth(in)], 16-byte aligned
  const float* scales = nullptr;  // [Int8PaddedWidth(out)]
  int in_features = 0;
  int out_features = 0;
};

// An fp16 bit pattern (as checkpoints store scales) as float, exactly.
inline float HalfBitsToFloat(uint16_t bits) {
  __half_raw raw;
  raw.x = bits;
  return __half2float(__half(raw));
}

// Shape, pointers and alignment of a W8A8Matmul call; checked before anything touches the device.
CudaStatus ValidateW8A8(const Int8ChannelWeightsView& w, const __half* x, int tokens, const __half* y);

// A layer converted once, at load time, on the host (kernels/layout/int8_channel_weights.h),
// then uploaded.
class DeviceInt8ChannelWeights {
 public:
  // From float weights: host, row-major [out, in] (torch's nn.Linear layout), quantized per
  // output channel by the activations' rule.
  CudaStatus Load(const float* weight, int in_features, int out_features);
  // Exactly from a GPTQ layer in host memory that has the form (8 bits, one group, q − zero in
  // int8); refused, naming why, otherwise.
  CudaStatus LoadGptq(const layout::GptqPackedView& w);
  Int8ChannelWeightsView view() const { return {codes_.get(), scales_.get(), in_features_, out_features_}; }

 private:
  CudaStatus Upload(const std::vector<int8_t>& codes, const std::vector<float>& scales, int in_features,
                    int out_features);

  DeviceBuffer<int8_t> codes_;
  DeviceBuffer<float> scales_;
  int in_features_ = 0;
  int out_features_ = 0;
};

// What W8A8Matmul needs besides its operands: the cuBLASLt handle, its workspace, the
// intermediates (int8 activations, token scales, int32 products) and one plan (layouts and the
// heuristic's algorithm) per shape seen. Buffers only grow, so after the first call of a shape
// a call allocates nothing and queries nothing. One workspace per stream; not thread-safe.
class W8A8Workspace {
 public:
  W8A8Workspace() = default;
  ~W8A8Workspace();
  W8A8Workspace(const W8A8Workspace&) = delete;
  W8A8Workspace& operator=(const W8A8Workspace&) = delete;

  // Creates the handle (first call) and makes room for `tokens` rows of a layer in × out.
  CudaStatus Reserve(int tokens, int in_features, int out_features);

  // The last call's intermediates on the device, valid until the next call (for the checks,
  // which also poison them between calls): row t of each at t · Int8PaddedWidth(width), rows
  // 0 .. tokens − 1 are the tokens' (the GEMM's zero rows, up to 32, follow).
  int8_t* quantized_x() const { return quantized_x_.get(); }    // [tokens, Int8PaddedWidth(in)]
  float* token_scales() const { return token_scales_.get(); }   // [tokens]
  int32_t* products() const { return products_.get(); }         // [tokens, Int8PaddedWidth(out)]

 private:
  friend CudaStatus W8A8Matmul(const Int8ChannelWeightsView&, const __half*, int, __half*, W8A8Workspace&,
                               cudaStream_t);
  struct Plan {
    int tokens = 0, in_padded = 0, out_padded = 0;
    cublasLtMatrixLayoutOpaque_t a{}, b{}, d{};
    cublasLtMatmulAlgo_t algo{};
  };
  // The plan of a shape, made (layouts, heuristic query) the first time it is asked for.
  CudaStatus FindPlan(int tokens, int in_padded, int out_padded, Plan*& plan);
  CudaStatus MakePlan(int tokens, int in_padded, int out_padded, Plan& made);

  cublasLtHandle_t handle_ = nullptr;
  cublasLtMatmulDescOpaque_t desc_{};
  DeviceBuffer<unsigned char> cublas_workspace_;
  DeviceBuffer<int8_t> quantized_x_;
  DeviceBuffer<float> token_scales_;
  DeviceBuffer<int32_t> products_;
  std::deque<Plan> plans_;
};

// y[tokens, out] (fp16, row-major) = x[tokens, in] (fp16, row-major) · Wᵀ in three steps queued
// on `stream`: (1) each token's row quantized to int8 with its own scale max|x|/127 (one block
// per token; the padding columns written as 0, and zero rows up to 32 when there are fewer
// tokens); (2) cublasLtMatmul, CUBLAS_COMPUTE_32I, int8 codes × int8 activations → int32
// products [max(tokens, 32), out padded]: exact; (3) y = fp16(float(p) ·
// (token_scale · channel_scale)), three fp32 roundings and the fp16 one. cuBLASLt's own epilogues
// cannot do (3): with int32 accumulation it writes either int32 (alpha and beta int32) or int8
// scaled by fp32 alpha (a per-row alpha vector could carry the channel scales, but not the
// per-column token scales, and int8 output would round the result to 8 bits). Grows `workspace`
// if needed. Errors come back as a CudaStatus, none are thrown.
CudaStatus W8A8Matmul(const Int8ChannelWeightsView& w, const __half* x, int tokens, __half* y,
                      W8A8Workspace& workspace, cudaStream_t stream);

}  // namespace qshard::gpu
