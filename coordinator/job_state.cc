#include "coordinator/job_state.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qshard {
namespace {

// Every allowed change; anything else is refused.
constexpr std::array<std::pair<JobState, JobState>, 8> kTransitions = {{
    {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING},        // the scheduler takes it
    {v1::JOB_STATE_QUEUED, v1::JOB_STATE_CANCELLED},      // cancelled before it ran
    {v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED},
    {v1::JOB_STATE_RUNNING, v1::JOB_STATE_FAILED},
    {v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING},    // cancel requested; the job stops at a group boundary
    {v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED},        // the coordinator restarted mid-job
    {v1::JOB_STATE_CANCELLING, v1::JOB_STATE_CANCELLED},  // stopped (or restarted), output removed
    {v1::JOB_STATE_CANCELLING, v1::JOB_STATE_FAILED},     // the partial output could not be removed
}};

constexpr std::array<std::pair<JobState, const char*>, 6> kNames = {{
    {v1::JOB_STATE_QUEUED, "QUEUED"},
    {v1::JOB_STATE_RUNNING, "RUNNING"},
    {v1::JOB_STATE_SUCCEEDED, "SUCCEEDED"},
    {v1::JOB_STATE_FAILED, "FAILED"},
    {v1::JOB_STATE_CANCELLING, "CANCELLING"},
    {v1::JOB_STATE_CANCELLED, "CANCELLED"},
}};

}  // namespace

bool IsTerminal(JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED || state == v1::JOB_STATE_CANCELLED;
}

bool IsAllowedTransition(JobState from, JobState to) {
  for (const auto& [a, b] : kTransitions)
    if (a == from && b == to) return true;
  return false;
}

absl::Status CheckTransition(JobState from, JobState to) {
  if (IsAllowedTransition(from, to)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("job state: ", JobStateName(from), " cannot become ", JobStateName(to)));
}

std::string JobStateName(JobState state) {
  for (const auto& [s, name] : kNames)
    if (s == state) return name;
  return "UNSPECIFIED";
}

absl::StatusOr<JobState> ParseJobState(const std::string& name) {
  for (const auto& [s, n] : kNames)
    if (name == n) return s;
  return absl::DataLossError(absl::StrCat("job state: unknown '", name, "'"));
}

}  // namespace qshard
