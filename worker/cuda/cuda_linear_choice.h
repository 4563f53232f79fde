// Which CUDA kernel serves each linear of a model evaluated on the device (device_model.h), and
// the refusals, naming the linear, of the layers no kernel serves: the one rule, kept apart from
// the device code so that it is tested without a GPU (tests/cuda/cuda_linear_choice_test.cc).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "worker/device/device_model.h"
#include "worker/quant/gptq_pack.h"

namespace qshard {

enum class CudaLinearKernel {
  kFloat32Cublas,   // float weights: cublasSgemm (the calibration forward pass's product)
  kGptqW4Repacked,  // 4 bits: GptqMmaW4Matmul on the weights repacked at load time
  kGptqFused,       // 8 bits: GptqMatmul (CUDA-core / tensor-core fused kernels)
  kW8A8,            // W8A8Matmul (cuBLASLt int8) on the exactly converted symmetric layer
};

// Windows longer than this run a quantized weight-only linear as dequantize-to-fp16 on the
// device + cublasGemmEx (fp32 accumulation), since the fused kernels read the weights once per
// 16 tokens; shorter inputs (decoding, short windows) run the fused kernels.
inline constexpr int64_t kFusedMaxTokens = 64;

// The kernel for linear `name` (packed null: a float linear), or FAILED_PRECONDITION naming it,
// its form and what would serve it.
absl::StatusOr<CudaLinearKernel> ChooseCudaLinear(const std::string& name, const GptqLinearTensors* packed,
                                                  PackedLinearKernels kernels);

// The kernel's name in conventions.md's style ("fp32-cublas", "w4a16-repacked", "w8a16",
// "w8a8-cublaslt"), and with the long-input path for `tokens` rows where it differs
// ("w4a16-dequantize-fp16-cublas").
std::string CudaLinearKernelName(CudaLinearKernel kernel, int bits, int64_t tokens);

}  // namespace qshard
