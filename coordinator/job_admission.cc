#include "coordinator/job_admission.h"

#include <algorithm>

#include "core/status.h"
#include "engine/job_plan.h"

namespace qshard {

absl::Status AdmitJob(const JobSpec& spec, int workers, const std::vector<v1::WorkerHello>& registered) {
  absl::StatusOr<JobPlan> plan = PlanJobForModel(spec, std::max(workers, 1));
  if (!plan.ok()) return WithContext(plan.status(), "model_path");
  if (workers == 0) return CheckEmbeddedPlanFits(*plan, PhysicalMemoryBytes());
  uint64_t smallest = 0;
  for (const v1::WorkerHello& worker : registered)
    if (worker.memory_budget_bytes() > 0)
      smallest = smallest == 0 ? worker.memory_budget_bytes() : std::min(smallest, worker.memory_budget_bytes());
  return CheckPlanFits(*plan, smallest, PhysicalMemoryBytes());
}

}  // namespace qshard
