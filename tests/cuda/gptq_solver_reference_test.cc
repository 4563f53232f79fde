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
#include "worker/quant/quant_grid.h"
#include "worker/solvers/solver.h"

namespace qshard::gpu {
namespace {

struct Case {
  const char* name;
  int64_t in, out;
  int bits, group_size;
  bool sym, act_order, static_groups;
  // What Z-Fold and aespa hand the solver (solver.h's LayerProblem).
  int heads = 1;           // Hessians, one per equal block of rows
  bool fixed = false;      // grids decided beforehand (0.85× the min-max ones)
  bool zeta = false;       // per-column step multipliers in [0.6, 1.6]
  bool unrounded = false;  // the values before rounding, returned
  bool mse = false;        // GPTQ's --mse clipping search for the grids
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
  spec.mse_clip = c.mse;
  return spec;
}

// Grids a search might have chosen: the min-max grids of the weight, steps shrunk to 85%.
FixedGrids ShrunkGrids(const std::vector<float>& weight, const Case& c) {
  std::vector<float> transposed(c.in * c.out);
  for (int64_t r = 0; r < c.out; ++r)
    for (int64_t k = 0; k < c.in; ++k) transposed[k * c.out + r] = weight[r * c.in + k];
  FixedGrids grids;
  grids.scales = Tensor({GroupCount(c.in, c.group_size), c.out});
  grids.zeros.resize(grids.scales.size());
  FitGroupGrids(SpecFor<QuantSpec>(c).grid_options(), transposed.data(), c.in, c.out, c.group_size,
                grids.scales.data(), grids.zeros.data(), c.out);
  for (int64_t i = 0; i < grids.scales.size(); ++i) grids.scales.data()[i] = RoundScaleToFp16(0.85f * grids.scales.data()[i]);
  return grids;
}

class ReferenceAgainstCpuSolver : public ::testing::TestWithParam<Case> {};

TEST_P(ReferenceAgainstCpuSolver, SameCodesUpToNearTieFlips) {
  const Case c = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(c.in * 1000 + c.out));
  std::vector<HessianSum> cpu_sums;
  std::vector<std::vector<double>> sums;
  for (int h = 0; h < c.heads; ++h) {
    const auto windows = RandomCalibrationWindows(c.in, 2, 400, /*silent=*/{c.in / 3 + h}, rng);
    HessianSum& cpu_sum = cpu_sums.emplace_back(c.in);
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
    sums.emplace_back(cpu_sum.sum.begin(), cpu_sum.sum.end());
  }
  const std::vector<float> weight = RandomLayerWeight(c.out, c.in, rng);
  std::vector<float> zeta;
  std::uniform_real_distribution<float> multiplier(0.6f, 1.6f);
  if (c.zeta)
    for (int64_t k = 0; k < c.in; ++k) zeta.push_back(multiplier(rng));
  const FixedGrids fixed = c.fixed ? ShrunkGrids(weight, c) : FixedGrids();
  const std::vector<double> fixed_scales(fixed.scales.data(), fixed.scales.data() + fixed.scales.size());

  auto solver = MakeSolver("gptq", SpecFor<QuantSpec>(c));
  ASSERT_TRUE(solver.ok()) << solver.status();
  const Tensor w({c.out, c.in}, weight);
  LayerProblem problem;
  problem.weight = &w;
  for (const HessianSum& sum : cpu_sums) problem.hessians.push_back(&sum);
  problem.column_scale = zeta;
  problem.fixed_grids = c.fixed ? &fixed : nullptr;
  problem.keep_unrounded = c.unrounded;
  auto cpu = (*solver)->Solve(problem);
  ASSERT_TRUE(cpu.ok()) << cpu.status();

  ReferenceGptqProblem reference_problem;
  reference_problem.weight = &weight;
  reference_problem.out = c.out;
  reference_problem.in = c.in;
  for (int h = 0; h < c.heads; ++h) reference_problem.hessians.push_back({&sums[h], cpu_sums[h].tokens});
  if (c.fixed) {
    reference_problem.fixed_scales = &fixed_scales;
    reference_problem.fixed_zeros = &fixed.zeros;
  }
  reference_problem.column_scale = c.zeta ? &zeta : nullptr;
  reference_problem.keep_unrounded = c.unrounded;
  const GptqSolveSpec reference_spec = SpecFor<GptqSolveSpec>(c);
  ReferenceGptqResult reference, followed;
  ASSERT_TRUE(ReferenceGptq(reference_problem, reference_spec, reference).ok());
  const std::vector<double> cpu_scales(cpu->weight.scales.data(), cpu->weight.scales.data() + cpu->weight.scales.size());
  const FollowedSolution cpu_solution{&cpu->weight.codes, &cpu_scales, &cpu->weight.zeros};
  ASSERT_TRUE(ReferenceGptq(reference_problem, reference_spec, followed, &cpu_solution, 1e-2).ok());

  EXPECT_EQ(reference.g_idx, cpu->weight.g_idx);
  EXPECT_EQ(reference.damp, cpu->damp_used);
  if (c.fixed) {
    EXPECT_EQ(reference.scales, fixed_scales);
  }
  EXPECT_EQ(followed.follow.far_flips, 0) << "worst distance " << followed.follow.worst_distance;
  EXPECT_LT(followed.follow.flips, 1e-3 * c.out * c.in);
  EXPECT_LT(followed.follow.grids_adopted, 1e-2 * static_cast<double>(cpu_scales.size()));
  const std::vector<float>* column_scale = c.zeta ? &zeta : nullptr;
  const auto proxy = [&](const std::vector<double>& scales, const std::vector<int32_t>& codes,
                         const std::vector<int32_t>& zeros) {
    return ProblemProxyError(reference_problem,
                             DequantizeCodes(codes, scales, zeros, reference.g_idx, c.out, c.in, column_scale));
  };
  const double proxy_reference = proxy(reference.scales, reference.codes, reference.zeros);
  const double proxy_cpu = proxy(cpu_scales, cpu->weight.codes, cpu->weight.zeros);
  EXPECT_NEAR(proxy_cpu, proxy_reference, 1e-2 * proxy_reference);
  EXPECT_NEAR(cpu->proxy_error, proxy_cpu, 1e-3 * proxy_cpu);
  if (c.mse) {
    // The search must have something to decide here: most grids are clipped ones.
    ReferenceGptqResult min_max;
    GptqSolveSpec plain = reference_spec;
    plain.mse_clip = false;
    ASSERT_TRUE(ReferenceGptq(reference_problem, plain, min_max).ok());
    int64_t clipped = 0;
    for (size_t i = 0; i < cpu_scales.size(); ++i) clipped += min_max.scales[i] != cpu_scales[i];
    EXPECT_GT(clipped, cpu_scales.size() / 2);
  }

  // On the followed history, each value before rounding differs from the CPU's by float32
  // noise only: a small fraction of its step (a wrong update moves it by whole steps).
  ASSERT_EQ(followed.unrounded.size(), c.unrounded ? weight.size() : 0u);
  if (!c.unrounded) return;
  double worst = 0.0;
  for (int64_t r = 0; r < c.out; ++r) {
    for (int64_t k = 0; k < c.in; ++k) {
      const double step = cpu_scales[cpu->weight.g_idx[k] * c.out + r] * (c.zeta ? zeta[k] : 1.0);
      worst = std::max(worst, std::fabs(followed.unrounded[r * c.in + k] - cpu->unrounded.data()[r * c.in + k]) / step);
    }
  }
  EXPECT_LT(worst, 1e-2);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ReferenceAgainstCpuSolver,
    ::testing::Values(Case{"G64ActOrder", 300, 120, 4, 64, false, true, false},
                      Case{"PerChannelSym3Bit", 257, 90, 3, -1, true, false, false},
                      Case{"StaticG128ActOrder8Bit", 300, 100, 8, 128, false, true, true},
                      Case{"G40", 200, 70, 4, 40, false, false, false},
                      // Z-Fold: its searched grids and ζ, with and without act-order.
                      Case{"ZFoldG64ActOrder", 300, 120, 4, 64, false, true, false, 1, true, true},
                      Case{"ZFoldPerChannel3Bit", 257, 90, 3, -1, false, false, false, 1, true, true},
                      Case{"ColumnScaleOnlyG40", 200, 70, 4, 40, false, false, false, 1, false, true},
                      // aespa: per-head Hessians of v_proj and GPTQ's values before rounding.
                      Case{"AespaThreeHeadsPerChannel", 210, 96, 4, -1, false, true, false, 3, false, false, true},
                      Case{"AespaTwoHeadsG48", 200, 70, 4, 48, false, false, false, 2, false, false, true},
                      // --mse: per channel, dynamic groups under act-order, static groups.
                      Case{"MsePerChannel3Bit", 257, 90, 3, -1, false, false, false, 1, false, false, false, true},
                      Case{"MseG40ActOrder", 200, 70, 4, 40, false, true, false, 1, false, false, false, true},
                      Case{"MseStaticG64ActOrderSym", 300, 100, 4, 64, true, true, true, 1, false, false, false, true}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace qshard::gpu
