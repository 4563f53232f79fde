// The host reference of the device's AdaRound (kernels/cuda/adaround_reference.h) against the
// CPU's LearnRoundingCandidates on the check's cases: the same start bit for bit (RoundingStartOf),
// and the check's tolerances met by the CPU's descent, whose arithmetic differs from the
// reference's as the device's does (float32 sums in other orders, frozen weights). That grounds
// qshard_cuda_adaround_check's tolerances without a GPU.
#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "kernels/cuda/adaround_reference.h"
#include "tests/cuda/adaround_cpu_problem.h"
#include "worker/methods/adaround_rounding.h"

namespace qshard {
namespace {

using testing::CpuOptions;
using testing::CpuProblem;

TEST(AdaRoundReferenceTest, TheCheckStartsWhereTheCpuStarts) {
  for (const gpu::AdaRoundCase& shape : gpu::AdaRoundCheckCases()) {
    const gpu::AdaRoundCaseData d = gpu::MakeAdaRoundCase(shape, 7);
    const CpuProblem cpu(d);
    ASSERT_TRUE(cpu.initial.Validate().ok()) << shape.name;
    const RoundingStart start = RoundingStartOf(cpu.problem);
    EXPECT_EQ(start.max_code, (1 << shape.bits) - 1) << shape.name;
    EXPECT_EQ(start.step, d.step) << shape.name;
    EXPECT_EQ(start.zero, d.zero) << shape.name;
    EXPECT_EQ(start.floor_level, d.floor_level) << shape.name;
    EXPECT_EQ(start.variables, d.variables) << shape.name;
    // And the CPU's own descent starts there.
    EXPECT_EQ(start.variables, SoftRoundingObjective(cpu.problem).InitialVariables()) << shape.name;
  }
}

TEST(AdaRoundReferenceTest, TheStartCarriesZFoldsColumnMultipliers) {
  // aespa's grids carry ζ (column_scale): the device's start must be the CPU descent's with it.
  const gpu::AdaRoundCaseData d = gpu::MakeAdaRoundCase(gpu::AdaRoundCheckCases()[0], 9);
  CpuProblem cpu(d);
  for (int64_t c = 0; c < cpu.initial.cols; ++c) cpu.initial.column_scale.push_back(0.5f + 0.01f * static_cast<float>(c));
  const RoundingStart start = RoundingStartOf(cpu.problem);
  EXPECT_EQ(start.variables, SoftRoundingObjective(cpu.problem).InitialVariables());
  const int64_t cols = cpu.initial.cols, last = cpu.initial.rows * cols - 1;
  EXPECT_EQ(start.step[last], d.step[last] * cpu.initial.column_scale[cols - 1]);
  EXPECT_NE(start.variables, d.variables);
}

TEST(AdaRoundReferenceTest, TheCpuDescentMeetsTheCheckTolerances) {
  for (const gpu::AdaRoundCase& shape : gpu::AdaRoundCheckCases()) {
    const gpu::AdaRoundCaseData d = gpu::MakeAdaRoundCase(shape, 11);
    const gpu::AdaRoundDeviceOptions options = gpu::AdaRoundCaseOptions(shape);
    const gpu::AdaRoundDeviceResult want = gpu::ReferenceAdaRound(d, options);
    const CpuProblem cpu(d);
    RoundingCandidates candidates = LearnRoundingCandidates(cpu.problem, CpuOptions(options));
    gpu::AdaRoundDeviceResult got{candidates.learned, candidates.initial_losses, candidates.learned_losses};
    const gpu::AdaRoundDeviation deviation = gpu::CompareAdaRound(got, want);
    std::printf("%-50s CPU vs reference: %s\n", shape.name, deviation.ToString().c_str());
    EXPECT_TRUE(deviation.passed) << shape.name << ": " << deviation.ToString();
    // The descent learned something (else agreement would be trivial): codes moved off GPTQ's.
    int64_t moved = 0;
    for (size_t i = 0; i < want.learned.size(); ++i) moved += want.learned[i] != d.initial_codes[i];
    EXPECT_GT(moved, static_cast<int64_t>(want.learned.size() / 50)) << shape.name;
  }
}

TEST(AdaRoundReferenceTest, TheComparisonSeesAWrongRounding) {
  const gpu::AdaRoundCase shape = gpu::AdaRoundCheckCases()[2];
  const gpu::AdaRoundCaseData d = gpu::MakeAdaRoundCase(shape, 3);
  const gpu::AdaRoundDeviceResult want = gpu::ReferenceAdaRound(d, gpu::AdaRoundCaseOptions(shape));
  // Without the output weightings' heads (the plain reconstruction loss): another rounding.
  gpu::AdaRoundCaseData plain = d;
  plain.shape.heads = 0;
  plain.weightings.clear();
  plain.weightings32.clear();
  gpu::AdaRoundDeviceResult got = gpu::ReferenceAdaRound(plain, gpu::AdaRoundCaseOptions(shape));
  got.initial_losses = want.initial_losses;
  got.learned_losses.resize(want.learned_losses.size(), 0.0);
  EXPECT_FALSE(gpu::CompareAdaRound(got, want).passed) << gpu::CompareAdaRound(got, want).ToString();
  // Nor do shifted initial losses pass.
  gpu::AdaRoundDeviceResult shifted = want;
  shifted.initial_losses[1] *= 1.0001;
  EXPECT_FALSE(gpu::CompareAdaRound(shifted, want).passed);
  EXPECT_TRUE(gpu::CompareAdaRound(want, want).passed);
}

TEST(AdaRoundReferenceTest, TheDeviceRefusesWhatItCannotTakeBeforeAnyDeviceCall) {
  // Validation runs on the host: no GPU needed to refuse.
  const gpu::AdaRoundCaseData d = gpu::MakeAdaRoundCase(gpu::AdaRoundCheckCases()[3], 5);
  const gpu::AdaRoundDeviceOptions options = gpu::AdaRoundCaseOptions(d.shape);
  EXPECT_TRUE(gpu::ValidateAdaRoundDeviceProblem(d.Problem(), options).ok());
  gpu::AdaRoundDeviceProblem across = d.Problem();
  across.weightings.resize(2);  // 2 heads of 18 rows over 3 blocks of 12
  const gpu::CudaStatus refused = gpu::ValidateAdaRoundDeviceProblem(across, options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("2 output weightings do not divide the 36 rows inside 3 Hessian blocks"),
            std::string::npos)
      << refused.message();
  gpu::AdaRoundDeviceProblem no_hessian = d.Problem();
  no_hessian.hessians.clear();
  EXPECT_FALSE(gpu::ValidateAdaRoundDeviceProblem(no_hessian, options).ok());
  gpu::AdaRoundDeviceOptions zero_rate = options;
  zero_rate.learning_rate = 0.0;
  EXPECT_FALSE(gpu::ValidateAdaRoundDeviceProblem(d.Problem(), zero_rate).ok());
}

}  // namespace
}  // namespace qshard
