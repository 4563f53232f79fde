#include "worker/methods/rounding_learner.h"

namespace qshard {
namespace {

class CpuLearner final : public RoundingLearner {
 public:
  absl::StatusOr<RoundingCandidates> Learn(const RoundingProblem& problem, const AdaRoundOptions& options) const override {
    return LearnRoundingCandidates(problem, options);
  }
};

}  // namespace

const RoundingLearner& CpuRoundingLearner() {
  static const CpuLearner learner;
  return learner;
}

}  // namespace qshard
