// The token ids of a job's calibration windows (conventions.md, Calibration): the text read by
// the evaluation protocol, cut at the seeded window starts. The workers calibrate on them, and
// `qshard bench quantize` hands the same ids to the GPTQ authors' code.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/job_spec.h"

namespace qshard {

// Every calibration window of the job, window after window (nsamples × seqlen ids); errors
// name the calibration text.
absl::StatusOr<std::vector<int32_t>> CalibrationWindows(const JobSpec& spec, int64_t seqlen);

}  // namespace qshard
