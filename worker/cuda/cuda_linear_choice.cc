#include "worker/cuda/cuda_linear_choice.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "core/status.h"
#include "kernels/cuda/gptq_layout.h"
#include "kernels/layout/int8_channel_weights.h"

namespace qshard {
namespace {

absl::Status Refuse(const std::string& name, const GptqLinearTensors& p, const std::string& why,
                    const std::string& instead) {
  return absl::FailedPreconditionError(absl::StrCat(name, " (", p.bits, " bits, ", p.groups, " groups, in ",
                                                    p.in_features, ", out ", p.out_features,
                                                    ") has no CUDA kernel: ", why, "; ", instead));
}

}  // namespace

absl::StatusOr<CudaLinearKernel> ChooseCudaLinear(const std::string& name, const GptqLinearTensors* packed,
                                                  PackedLinearKernels kernels) {
  if (packed == nullptr) return CudaLinearKernel::kFloat32Cublas;
  const GptqLinearTensors& p = *packed;
  QSHARD_RETURN_IF_ERROR(CheckGptqTensors(p));
  if (kernels == PackedLinearKernels::kInt8Activations) {
    // The exact conversion decides; its codes are made again when the layer is uploaded.
    const layout::GptqPackedView view = PackedView(p);
    std::vector<int8_t> codes(layout::Int8PaddedWidth(p.in_features) * layout::Int8PaddedWidth(p.out_features));
    std::vector<float> scales(layout::Int8PaddedWidth(p.out_features));
    if (const char* why = layout::Int8WeightsFromGptq(view, HalfToFloat, codes.data(), scales.data()))
      return Refuse(name, p,
                    absl::StrCat("--kernels int8 serves W8A8 (cuBLASLt) only from symmetric 8-bit "
                                 "per-channel layers (quantize --bits 8 --sym --group-size -1): ",
                                 why),
                    "use --device cpu (its int8 kernels take 2-8 bits and groups) or --kernels exact");
    return CudaLinearKernel::kW8A8;
  }
  gpu::GptqMatrixView shape;
  shape.in_features = static_cast<int>(p.in_features);
  shape.out_features = static_cast<int>(p.out_features);
  shape.bits = p.bits;
  shape.groups = static_cast<int>(p.groups);
  const gpu::CudaStatus fits = gpu::ValidateGptqShape(shape);
  if (!fits.ok()) return Refuse(name, p, fits.message(), "use --device cpu or --kernels dequantize");
  const gpu::CudaStatus g_idx = gpu::ValidateGIdx(p.g_idx.data(), shape.in_features, shape.groups);
  if (!g_idx.ok()) return Refuse(name, p, g_idx.message(), "the checkpoint is damaged");
  return p.bits == 4 ? CudaLinearKernel::kGptqW4Repacked : CudaLinearKernel::kGptqFused;
}

std::string CudaLinearKernelName(CudaLinearKernel kernel, int bits, int64_t tokens) {
  switch (kernel) {
    case CudaLinearKernel::kFloat32Cublas:
      return "fp32-cublas";
    case CudaLinearKernel::kW8A8:
      return "w8a8-cublaslt";
    case CudaLinearKernel::kGptqW4Repacked:
    case CudaLinearKernel::kGptqFused:
      break;
  }
  const std::string weights = absl::StrCat("w", bits, "a16");
  if (tokens > kFusedMaxTokens) return weights + "-dequantize-fp16-cublas";
  return kernel == CudaLinearKernel::kGptqW4Repacked ? weights + "-repacked" : weights;
}

}  // namespace qshard
