// aespa's AdaRound behind the RoundingLearner seam (worker/methods/rounding_learner.h) on a CUDA
// device: the problem's starting arrays (RoundingStartOf, the CPU's values), its Hessian blocks
// and output weightings go up, gpu::LearnRoundingOnDevice descends there, and the learned codes
// and both roundings' losses per unit come back for the CPU's choice and join.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "worker/cuda/cuda_session.h"
#include "worker/methods/rounding_learner.h"

namespace qshard {

std::unique_ptr<RoundingLearner> MakeCudaRoundingLearner(std::shared_ptr<CudaSession> session);

}  // namespace qshard
