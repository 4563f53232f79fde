// The check a job runs on its finished checkpoint when its spec names a validation text:
// perplexity of the quantized model — its linears through the integer kernels (exact path), as
// it would be served — and of the base model, with KL(base ‖ quantized) and top-1 agreement on
// the same windows (docs/evaluation.md). It runs on the CPU or on a CUDA device, through the
// models `qshard eval` loads there. The result goes into the job's report.
#pragma once

#include "absl/status/statusor.h"
#include "engine/job_spec.h"
#include "nlohmann/json.hpp"
#include "worker/device/cuda_device.h"

namespace qshard {

// {"text", "lines", "seqlen", "windows", "kernels", "perplexity", "base_perplexity",
//  "kl_divergence", "top1_agreement"}; errors name the validation text or the model.
// `device` null: the CPU's exact kernels. Otherwise both models on that device, as `qshard eval
// --device cuda --kernels exact --base` has them (engine/device_model_loading.h), and the object
// also has "device" (its name) and "device_kernels" (which kernel served which linears); errors,
// a linear the device's kernels refuse among them, start with "validation on <device>".
absl::StatusOr<nlohmann::json> ValidateCheckpoint(const JobSpec& spec, CudaDevice* device = nullptr);

}  // namespace qshard
