// The float64 reference that qshard_cuda_solver_check holds the device GPTQ to
// (kernels/cuda/gptq_solver_reference.h) must agree with the CPU solver, or the device check
// would test against something else than what the worker computes. Runs on the CPU only.
#include "kernels/cuda/gptq_solver_reference.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/calibration/hessian.h"
#include "worker/solvers/solver.h"

namespace qshard::gpu {
namespace {

struct Case {
  const char* name;
  int64_t in, out;
  int bits, group_size;
  bool sym, act_order, static_groups;
};

// QuantSpec and GptqSolveSpec name these fields alike.
template <typename Spec>
Spec SpecFor(const Case& c) {
  Spec spec;
  spec.bits = c.bits;
  spec.group_size = c.group_size;
  spec.sym = c.sym;
  spec.act_order = c.act_order;
  spec.static_groups = c.static_groups;
  return spec;
}

class ReferenceAgainstCpuSolver : public ::testing::TestWithParam<Case> {};

TEST_P(ReferenceAgainstCpuSolver, SameCodesUpToNearTieFlips) {
  const Case c = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(c.in * 1000 + c.out));
  const auto windows = RandomCalibrationWindows(c.in, 2, 400, /*silent=*/{c.in / 3}, rng);
  const std::vector<float> weight = RandomLayerWeight(c.out, c.in, rng);

  HessianSum cpu_sum(c.in);
  std::vector<double> exact(c.in * c.in, 0.0);
  for (const auto& x : windows) {
    cpu_sum.AddWindow(x.data(), 400);
    ReferenceAddWindow(x.data(), 400, c.in, exact);
  }
  for (int64_t i = 0; i < c.in; ++i)
    for (int64_t j = 0; j < c.in; ++j)
      ASSERT_LE(std::fabs(cpu_sum.sum[i * c.in + j] - exact[i * c.in + j]),
                1e-5 * std::sqrt(exact[i * c.in + i] * exact[j * c.in + j]))
          << i << "," << j;

  auto solver = MakeSolver("gptq", SpecFor<QuantSpec>(c));
  ASSERT_TRUE(solver.ok()) << solver.status();
  const Tensor w({c.out, c.in}, weight);
  LayerProblem problem;
  problem.weight = &w;
  problem.hessians = {&cpu_sum};
  auto cpu = (*solver)->Solve(problem);
  ASSERT_TRUE(cpu.ok()) << cpu.status();

  const GptqSolveSpec reference_spec = SpecFor<GptqSolveSpec>(c);
  const int64_t tokens = cpu_sum.tokens;
  const std::vector<double> sum(cpu_sum.sum.begin(), cpu_sum.sum.end());
  ReferenceGptqResult reference, followed;
  ASSERT_TRUE(ReferenceGptq(weight, c.out, c.in, sum, tokens, reference_spec, reference).ok());
  const std::vector<double> cpu_scales(cpu->weight.scales.data(), cpu->weight.scales.data() + cpu->weight.scales.size());
  const FollowedSolution cpu_solution{&cpu->weight.codes, &cpu_scales, &cpu->weight.zeros};
  ASSERT_TRUE(
      ReferenceGptq(weight, c.out, c.in, sum, tokens, reference_spec, followed, &cpu_solution, 1e-2).ok());

  EXPECT_EQ(reference.g_idx, cpu->weight.g_idx);
  EXPECT_EQ(reference.damp, cpu->damp_used);
  EXPECT_EQ(followed.follow.far_flips, 0) << "worst distance " << followed.follow.worst_distance;
  EXPECT_LT(followed.follow.flips, 1e-3 * c.out * c.in);
  EXPECT_LT(followed.follow.grids_adopted, 1e-2 * static_cast<double>(cpu_scales.size()));
  const double proxy_reference = ProxyError(
      weight, DequantizeCodes(reference.codes, reference.scales, reference.zeros, reference.g_idx, c.out, c.in), c.out,
      c.in, sum, tokens);
  const double proxy_cpu = ProxyError(
      weight, DequantizeCodes(cpu->weight.codes, cpu_scales, cpu->weight.zeros, cpu->weight.g_idx, c.out, c.in), c.out,
      c.in, sum, tokens);
  EXPECT_NEAR(proxy_cpu, proxy_reference, 1e-2 * proxy_reference);
  EXPECT_NEAR(cpu->proxy_error, proxy_cpu, 1e-3 * proxy_cpu);
}

INSTANTIATE_TEST_SUITE_P(Cases, ReferenceAgainstCpuSolver,
                         ::testing::Values(Case{"G64ActOrder", 300, 120, 4, 64, false, true, false},
                                           Case{"PerChannelSym3Bit", 257, 90, 3, -1, true, false, false},
                                           Case{"StaticG128ActOrder8Bit", 300, 100, 8, 128, false, true, true},
                                           Case{"G40", 200, 70, 4, 40, false, false, false}),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace qshard::gpu
