// The worker's CUDA glue that needs the CUDA headers but no GPU (built with CUDA only): the
// QuantSpec → GptqSolveSpec conversion the device solver runs on, and CudaStatus → absl::Status.
// The device-memory rules are plain C++ (tests/device/cuda_device_memory_test.cc).
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/cuda/cuda_gptq_solver.h"
#include "worker/cuda/cuda_status_adapter.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;

TEST(DeviceGlueTest, DeviceSpecCarriesEveryField) {
  QuantSpec spec;  // every field away from its default
  spec.bits = 3;
  spec.group_size = 48;
  spec.sym = true;
  spec.act_order = true;
  spec.static_groups = true;
  spec.fp16_scales = false;
  spec.nonzero_zero_point = false;
  spec.damp = 0.05;
  spec.block_size = 64;
  spec.damp_growth = 4.0;
  spec.max_damp_retries = 2;
  spec.mse_clip = true;
  auto device = DeviceGptqSpec(spec);
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->bits, 3);
  EXPECT_EQ(device->group_size, 48);
  EXPECT_TRUE(device->sym);
  EXPECT_TRUE(device->act_order);
  EXPECT_TRUE(device->static_groups);
  EXPECT_FALSE(device->fp16_scales);
  EXPECT_FALSE(device->nonzero_zero_point);
  EXPECT_EQ(device->damp, 0.05);
  EXPECT_EQ(device->block_size, 64);
  EXPECT_EQ(device->damp_growth, 4.0);
  EXPECT_EQ(device->max_damp_retries, 2);
  // --mse's search, with the options QuantSpec fits its grids with.
  const GridOptions grid = spec.grid_options();
  EXPECT_TRUE(device->mse_clip);
  EXPECT_EQ(device->mse_norm, grid.mse_norm);
  EXPECT_EQ(device->mse_grid, grid.mse_grid);
  EXPECT_EQ(device->mse_max_shrink, grid.mse_max_shrink);
}

TEST(DeviceGlueTest, DeviceSpecRefusesWhatIsInvalid) {
  QuantSpec bad;
  bad.block_size = 0;
  auto refused = DeviceGptqSpec(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("block_size"));
}

TEST(DeviceGlueTest, CudaStatusBecomesAStatusWithItsContext) {
  EXPECT_TRUE(FromCudaStatus(gpu::CudaStatus(), "anything").ok());
  const absl::Status oom = FromCudaStatus(
      gpu::CallSiteError("f.cu", 7, "cudaMalloc(&p, n)", gpu::DescribeCudaError(cudaErrorMemoryAllocation)), "layer 3 fc2");
  EXPECT_EQ(oom.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(oom.message(), HasSubstr("layer 3 fc2: f.cu:7: cudaMalloc(&p, n): cudaErrorMemoryAllocation"));
  const absl::Status other = FromCudaStatus(gpu::CudaStatus::Error("hessian: not positive definite"), "solve");
  EXPECT_EQ(other.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(other.message(), "solve: hessian: not positive definite");
}

}  // namespace
}  // namespace qshard
