// The check a job runs on its finished checkpoint when its spec names a validation text:
// perplexity of the quantized model — its linears through the CPU integer kernels (exact
// path), as it would be served — and of the base model, with KL(base ‖ quantized) and top-1
// agreement on the same windows (docs/evaluation.md). The result goes into the job's report.
#pragma once

#include "absl/status/statusor.h"
#include "engine/job_spec.h"
#include "nlohmann/json.hpp"

namespace qshard {

// {"text", "lines", "seqlen", "windows", "kernels", "perplexity", "base_perplexity",
//  "kl_divergence", "top1_agreement"}; errors name the validation text or the model.
absl::StatusOr<nlohmann::json> ValidateCheckpoint(const JobSpec& spec);

}  // namespace qshard
