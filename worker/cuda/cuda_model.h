// A decoder model for evaluation on a CUDA device (worker/device/device_model.h): every layer's
// weights on the device, each linear through the kernel cuda_linear_choice picks (fp32 cuBLAS,
// the fused w4a16/w8a16 kernels, dequantize + fp16 cuBLAS for long windows, or W8A8 through
// cuBLASLt), the layers run by kernels/cuda's layer forward (the calibration pass's code), then
// the final norm and the head in float32 cuBLAS; the logits come back to the host.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "worker/cuda/cuda_session.h"
#include "worker/device/device_model.h"
#include "worker/model/decoder_model.h"

namespace qshard {

// Uploads `model`'s final norm, project_out and head; the layers follow with LoadLayer.
absl::StatusOr<std::unique_ptr<DeviceModel>> NewCudaModel(std::shared_ptr<CudaSession> session,
                                                          const DecoderModel& model, PackedLinearKernels kernels);

}  // namespace qshard
