// Where aespa's AdaRound runs: the seam between its solve (aespa_solver.cc) and the learner of
// the rounding, the CPU's (LearnRoundingCandidates) or a device's (CudaDevice::MakeRoundingLearner,
// worker/cuda/cuda_rounding_learner.cc), which the job's DevicePlan chooses (device_support.h).
#pragma once

#include "absl/status/statusor.h"
#include "worker/methods/adaround_rounding.h"

namespace qshard {

class RoundingLearner {
 public:
  virtual ~RoundingLearner() = default;
  // Both roundings of the problem's rows and their losses per unit, as LearnRoundingCandidates
  // returns them (the problem's pool may be ignored).
  virtual absl::StatusOr<RoundingCandidates> Learn(const RoundingProblem& problem,
                                                   const AdaRoundOptions& options) const = 0;
};

// LearnRoundingCandidates itself: aespa's learner when the job gives none.
const RoundingLearner& CpuRoundingLearner();

}  // namespace qshard
