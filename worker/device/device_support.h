// What a job may ask of a device: the one check, made before any work (`qshard quantize`
// before the model is opened, a `qshard worker` when a job starts), so that a job never falls
// back to the CPU halfway. On CUDA the worker runs GPTQ's statistics and solves (the parts
// kernels/cuda/gptq_solve_spec.h implements); every other method or option is refused here,
// by name.
#pragma once

#include "absl/status/status.h"
#include "worker/device/device.h"
#include "worker/methods/layer_method.h"

namespace qshard {

// OK on the CPU; on CUDA, UNIMPLEMENTED naming the method or the option the device lacks.
absl::Status CheckRunsOnDevice(const MethodOptions& method, const Device& device);
// The same for a GPTQ solve's spec alone (the device solver checks it again when made).
absl::Status CheckGptqSpecRunsOnDevice(const QuantSpec& spec, const Device& device);

}  // namespace qshard
