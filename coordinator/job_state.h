// A job's life as an explicit transition table (docs/journal.md has the diagram). The states
// are the wire's (proto JobState); the journal refuses any change the table does not allow.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "qshard.pb.h"

namespace qshard {

using JobState = v1::JobState;

// SUCCEEDED, FAILED and CANCELLED: nothing follows them.
bool IsTerminal(JobState state);

bool IsAllowedTransition(JobState from, JobState to);

// OK, or FAILED_PRECONDITION naming both states.
absl::Status CheckTransition(JobState from, JobState to);

// "QUEUED", "RUNNING", ...: how the journal stores a state and the CLI prints it.
std::string JobStateName(JobState state);
absl::StatusOr<JobState> ParseJobState(const std::string& name);

}  // namespace qshard
