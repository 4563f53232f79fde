// A quantized checkpoint's linears served on the device for evaluation, behind layer_forward.h's
// DeviceLinearKernel: GPTQ layers uploaded in their packed form and multiplied by the fused
// w4a16/w8a16 kernels (the repacked tensor-core kernel for 4 bits where chosen), or, for long
// inputs, dequantized to fp16 on the device and multiplied by cuBLAS; symmetric 8-bit per-channel
// layers through cuBLASLt's W8A8. Float32 activations come in and go out: each call converts them
// to fp16 and back around the kernel (docs/cuda.md, "Evaluation and generation on the device").
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gptq_dequant_gemm.h"
#include "kernels/cuda/gptq_layout.h"
#include "kernels/cuda/gptq_mma_w4.h"
#include "kernels/cuda/layer_forward.h"
#include "kernels/cuda/w8a8_matmul.h"
#include "kernels/layout/gptq_packed.h"

namespace qshard::gpu {

// What the quantized linears of one stream share, grown on demand: the fp16 activations and
// outputs, the fused kernels' split-K workspace, one dequantized fp16 weight (long inputs) and
// the W8A8 workspace. One per stream; the linears using it must run one at a time.
struct HalfLinearScratch {
  DeviceBuffer<__half> x, y, weight;
  GptqWorkspace gptq;
  W8A8Workspace w8a8;
};

// A GPTQ layer (4 or 8 bits) in the checkpoint layout on the device.
class GptqDeviceLinear final : public DeviceLinearKernel {
 public:
  // Uploads `w` (host memory), repacked for GptqMmaW4Matmul when `repack_w4` (4 bits only).
  // Inputs of more than `fused_max_tokens` rows are dequantized into the scratch's fp16 weight
  // and multiplied by cuBLAS (cublasGemmEx, fp32 accumulation) instead of the fused kernels.
  CudaStatus Load(const layout::GptqPackedView& w, bool repack_w4, int64_t fused_max_tokens,
                  HalfLinearScratch* scratch);
  CudaStatus Apply(const SolverContext& context, const float* x, int64_t tokens, float* y, bool accumulate) override;

 private:
  GptqMatrixView View() const;

  DeviceBuffer<int32_t> qweight_, qzeros_, g_idx_;
  DeviceBuffer<__half> scales_;
  DeviceGptqMmaW4 repacked_;
  bool use_repacked_ = false;
  int in_ = 0, out_ = 0, bits_ = 0, groups_ = 0;
  int64_t fused_max_tokens_ = 0;
  HalfLinearScratch* scratch_ = nullptr;
};

// A symmetric 8-bit per-channel GPTQ layer converted exactly to cuBLASLt's int8 layout
// (DeviceInt8ChannelWeights::LoadGptq), activations quantized per token (W8A8Matmul).
class W8A8DeviceLinear final : public DeviceLinearKernel {
 public:
  CudaStatus Load(const layout::GptqPackedView& w, HalfLinearScratch* scratch);
  CudaStatus Apply(const SolverContext& context, const float* x, int64_t tokens, float* y, bool accumulate) override;

 private:
  DeviceInt8ChannelWeights weights_;
  HalfLinearScratch* scratch_ = nullptr;
};

}  // namespace qshard::gpu
