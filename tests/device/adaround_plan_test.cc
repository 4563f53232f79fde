// The plain arithmetic of aespa's AdaRound on the device (kernels/cuda/adaround_plan.h), built in
// every build: the bytes docs/cuda.md quotes and the slices at OPT-175B's v_proj.
#include "kernels/cuda/adaround_plan.h"

#include <vector>

#include "gtest/gtest.h"

namespace qshard {
namespace {

TEST(AdaRoundPlanTest, TheDeviceBytesAreTheDocumentedOnes) {
  // docs/cuda.md, "aespa's AdaRound on the device": OPT-13B's fc2 and OPT-175B's fc2 and v_proj.
  EXPECT_NEAR(gpu::AdaRoundDeviceBytes(5120, 20480, 1, 0) / 1e9, 6.92, 0.01);
  EXPECT_NEAR(gpu::AdaRoundDeviceBytes(12288, 49152, 1, 0) / 1e9, 39.9, 0.1);
  EXPECT_NEAR(gpu::AdaRoundDeviceBytes(12288, 12288, 96, 0) / 1e9, 93.3, 0.1);
  // Weightings add a product per weight and their matrices.
  EXPECT_EQ(gpu::AdaRoundDeviceBytes(60, 66, 1, 5) - gpu::AdaRoundDeviceBytes(60, 66, 1, 0),
            size_t{60 * 66 * 4 + 5 * 12 * 12 * 4});
}

TEST(AdaRoundPlanTest, Opt175bVProjRunsInTwoSlicesOn80GbAndWholeOn141Gb) {
  // docs/cuda.md, "aespa's AdaRound on the device": the shapes alone (the planner reads no array).
  gpu::AdaRoundDeviceProblem v_proj;
  v_proj.rows = v_proj.cols = 12288;
  v_proj.max_code = 15;
  v_proj.hessians.assign(96, nullptr);
  EXPECT_NEAR(gpu::AdaRoundSliceBytes(v_proj, {0, 1}) / 1e9, 0.972, 0.001);
  std::vector<gpu::AdaRoundSlice> slices;
  ASSERT_TRUE(gpu::PlanAdaRoundSlices(v_proj, 80'000'000'000, slices).ok());
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(slices[1].first_unit, 48);
  EXPECT_NEAR(gpu::AdaRoundSliceBytes(v_proj, slices[0]) / 1e9, 46.7, 0.1);
  ASSERT_TRUE(gpu::PlanAdaRoundSlices(v_proj, 141'000'000'000, slices).ok());
  EXPECT_EQ(slices.size(), 1u);
  EXPECT_FALSE(gpu::PlanAdaRoundSlices(v_proj, 900'000'000, slices).ok());
}

}  // namespace
}  // namespace qshard
