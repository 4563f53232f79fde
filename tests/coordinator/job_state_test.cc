// The job state table: every allowed transition, and every other pair refused.
#include "coordinator/job_state.h"

#include <set>
#include <utility>

#include "gtest/gtest.h"

namespace qshard {
namespace {

const JobState kAll[] = {v1::JOB_STATE_UNSPECIFIED, v1::JOB_STATE_QUEUED,    v1::JOB_STATE_RUNNING,
                         v1::JOB_STATE_SUCCEEDED,   v1::JOB_STATE_FAILED,    v1::JOB_STATE_CANCELLING,
                         v1::JOB_STATE_CANCELLED};

TEST(JobStateTest, ExactlyTheTableIsAllowed) {
  const std::set<std::pair<JobState, JobState>> allowed = {
      {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING},      {v1::JOB_STATE_QUEUED, v1::JOB_STATE_CANCELLED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED},   {v1::JOB_STATE_RUNNING, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING},  {v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED},
      {v1::JOB_STATE_CANCELLING, v1::JOB_STATE_CANCELLED}, {v1::JOB_STATE_CANCELLING, v1::JOB_STATE_FAILED},
  };
  for (JobState from : kAll)
    for (JobState to : kAll) {
      const bool expected = allowed.count({from, to}) > 0;
      EXPECT_EQ(IsAllowedTransition(from, to), expected) << JobStateName(from) << " -> " << JobStateName(to);
      const absl::Status status = CheckTransition(from, to);
      EXPECT_EQ(status.ok(), expected);
      if (!expected) {
        EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
        EXPECT_NE(status.message().find(JobStateName(from)), std::string::npos) << status;
      }
    }
}

TEST(JobStateTest, TerminalStatesHaveNoWayOut) {
  for (JobState from : kAll) {
    bool any_out = false;
    for (JobState to : kAll) any_out |= IsAllowedTransition(from, to);
    if (IsTerminal(from)) {
      EXPECT_FALSE(any_out) << JobStateName(from);
    }
  }
  EXPECT_TRUE(IsTerminal(v1::JOB_STATE_SUCCEEDED) && IsTerminal(v1::JOB_STATE_FAILED) &&
              IsTerminal(v1::JOB_STATE_CANCELLED));
  EXPECT_FALSE(IsTerminal(v1::JOB_STATE_QUEUED) || IsTerminal(v1::JOB_STATE_RUNNING) ||
               IsTerminal(v1::JOB_STATE_CANCELLING));
}

TEST(JobStateTest, NamesRoundTrip) {
  for (JobState state : kAll) {
    if (state == v1::JOB_STATE_UNSPECIFIED) continue;
    EXPECT_EQ(ParseJobState(JobStateName(state)).value(), state);
  }
  EXPECT_FALSE(ParseJobState("DONE").ok());
}

}  // namespace
}  // namespace qshard
