// The job flags `qshard quantize` and `qshard submit` share, registered in one place so the
// two commands describe a job identically; ValidateJobSpec (engine/job_spec.h) checks them.
#pragma once

#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "engine/job_spec.h"

namespace qshard::cli {

struct JobFlags {
  JobSpec spec;
  std::string calib_lines;
  std::string validate_lines;
  std::string propagation = "sequential";
};

void AddJobFlags(CLI::App& app, JobFlags& flags);

// The spec with the flags that need parsing (--calib-lines, --validate-lines, --propagation)
// filled in.
absl::StatusOr<JobSpec> JobSpecOfFlags(const JobFlags& flags);

}  // namespace qshard::cli
