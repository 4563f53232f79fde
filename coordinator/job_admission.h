// Whether the coordinator takes a job: its plan (engine/job_plan.h), read from the model's
// config.json alone, must fit the workers' declared memory budgets (`qshard worker
// --memory-budget`) and the coordinator's own memory. Checked at submission, against the
// workers registered then, and again when the job starts on the workers it got.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "engine/job_spec.h"
#include "qshard.pb.h"

namespace qshard {

// `workers` = 0: the job runs in the coordinator's process (embedded). RESOURCE_EXHAUSTED with
// the plan's numbers when it cannot fit; the smallest budget among `registered` is the limit
// (workers that declare none are not checked).
absl::Status AdmitJob(const JobSpec& spec, int workers, const std::vector<v1::WorkerHello>& registered);

}  // namespace qshard
