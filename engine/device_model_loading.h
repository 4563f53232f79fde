// Opens a model directory for evaluation on a device (`qshard eval --device cuda`): the
// embeddings stay on the host (a window is embedded there), every layer goes to the device with
// its linears as `kernels` asks on that device (dequantize: float weights dequantized on the
// host; exact: the packed weights under the weight-only kernels; int8: under W8A8), and Evaluate
// runs it through WindowLogits like the CPU model.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/tokenizer/tokenizer.h"
#include "worker/device/cuda_device.h"
#include "worker/eval/window_logits.h"
#include "worker/export/gptq_tensor_source.h"

namespace qshard {

struct DeviceLoadedModel {
  std::unique_ptr<WindowLogits> model;
  Tokenizer tokenizer;
  std::string kernels;  // which kernel serves which linears (DeviceModel::Describe)
};

// A FlattenQuant checkpoint is refused unless `kernels` is kDequantize (no device kernel runs its
// split columns); a linear no device kernel serves is refused by name (DeviceModel::LoadLayer).
absl::StatusOr<DeviceLoadedModel> LoadModelOnDevice(const std::string& dir, int threads, GptqLinearMode kernels,
                                                    CudaDevice& device);

}  // namespace qshard
