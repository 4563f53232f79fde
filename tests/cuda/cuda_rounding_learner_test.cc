// The CUDA rounding learner's glue (worker/cuda/cuda_rounding_learner.cc) on the host emulation
// of CUDA, its free memory set by a filler allocation: whole when the problem fits, in slices of
// heads when only some do (the same bits the whole gets, kernels/cuda/adaround_slices.h), and
// RESOURCE_EXHAUSTED only when one head does not fit. Needs the emulation (QSHARD_CUDA=EMULATED):
// a GPU's free memory cannot be set.
#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/adaround_slices.h"
#include "tests/cuda/free_memory.h"
#include "tests/cuda/adaround_cpu_problem.h"
#include "worker/cuda/cuda_rounding_learner.h"

namespace qshard {
namespace {

#ifdef QSHARD_CUDA_EMULATED

using testing::FreeMemory;

TEST(CudaRoundingLearnerTest, LearnsInSlicesWhatDoesNotFitWholeAndRefusesWhatOneHeadDoesNot) {
  // A 10 MB device (read at the emulation's first call; each test runs in its own process).
  ASSERT_EQ(setenv("QSHARD_EMULATED_DEVICE_GB", "0.01", 1), 0);
  absl::StatusOr<std::shared_ptr<CudaSession>> session = CudaSession::Open(0);
  ASSERT_TRUE(session.ok()) << session.status();
  const gpu::AdaRoundCaseData d = gpu::MakeAdaRoundCase(gpu::AdaRoundCheckCases()[2], 4);  // five heads
  const gpu::AdaRoundDeviceOptions options = gpu::AdaRoundCaseOptions(d.shape);
  const gpu::AdaRoundDeviceProblem problem = d.Problem();
  const testing::CpuProblem cpu(d);
  const std::unique_ptr<RoundingLearner> learner = MakeCudaRoundingLearner(*session);
  gpu::AdaRoundDeviceResult whole;
  ASSERT_TRUE(gpu::LearnRoundingOnDevice((*session)->context().blas(), (*session)->stream(), problem, options, whole)
                  .ok());

  {
    // Two heads' room: 1 + 2 + 2 heads.
    const FreeMemory room(gpu::AdaRoundSliceBytes(problem, {0, 2}));
    ASSERT_LT(gpu::AdaRoundSliceBytes(problem, {0, 2}), gpu::AdaRoundSliceBytes(problem, {0, 3}));
    const absl::StatusOr<RoundingCandidates> sliced = learner->Learn(cpu.problem, testing::CpuOptions(options));
    ASSERT_TRUE(sliced.ok()) << sliced.status();
    EXPECT_EQ(sliced->learned, whole.learned);
    EXPECT_EQ(sliced->initial_losses, whole.initial_losses);
    EXPECT_EQ(sliced->learned_losses, whole.learned_losses);
  }
  {
    const FreeMemory room(gpu::AdaRoundSliceBytes(problem, {0, 1}) - 1);
    const absl::StatusOr<RoundingCandidates> refused = learner->Learn(cpu.problem, testing::CpuOptions(options));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
    EXPECT_THAT(std::string(refused.status().message()),
                ::testing::HasSubstr("on cuda:0 for one head (12 of a 60 × 66 weight's rows"));
  }
}

#else

TEST(CudaRoundingLearnerTest, NeedsTheHostEmulation) { GTEST_SKIP() << "sets the free memory of the emulated device"; }

#endif

}  // namespace
}  // namespace qshard
