// The worker's CUDA glue that needs the CUDA headers but no GPU (built with CUDA only): the
// QuantSpec → GptqSolveSpec conversion the device solver runs on, ModelConfig → the device
// layer's architecture and the device bytes a layer needs, and CudaStatus → absl::Status.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/layer_forward.h"
#include "worker/cuda/cuda_attention_stats.h"
#include "worker/cuda/cuda_forward.h"
#include "worker/cuda/cuda_gptq_solver.h"
#include "worker/cuda/cuda_status_adapter.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;

const Device kCuda{Device::Kind::kCuda, 0};

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
  auto device = DeviceGptqSpec(spec, kCuda);
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
}

TEST(DeviceGlueTest, DeviceSpecRefusesWhatTheDeviceLacksAndWhatIsInvalid) {
  QuantSpec mse;
  mse.mse_clip = true;
  EXPECT_EQ(DeviceGptqSpec(mse, kCuda).status().code(), absl::StatusCode::kUnimplemented);
  QuantSpec bad;
  bad.block_size = 0;
  auto refused = DeviceGptqSpec(bad, kCuda);
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

TEST(DeviceGlueTest, ModelConfigBecomesTheDeviceLayer) {
  ModelConfig opt;  // OPT-350M-like: post-LN, biases
  opt.arch = Architecture::kOpt;
  opt.hidden_size = 96;
  opt.intermediate_size = 200;
  opt.num_heads = opt.num_kv_heads = 4;
  opt.head_dim = 24;
  opt.do_layer_norm_before = false;
  opt.enable_bias = true;
  opt.layer_norm_eps = 1e-5;
  auto a = LayerArchitectureOf(opt);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->kind, gpu::LayerKind::kOpt);
  EXPECT_FALSE(a->norm_before);
  EXPECT_TRUE(a->attention_bias && a->mlp_bias);
  EXPECT_EQ(a->norm_eps, 1e-5);
  EXPECT_EQ(a->ffn, 200);

  ModelConfig llama;  // GQA 4:1, biases on the attention only
  llama.hidden_size = 64;
  llama.intermediate_size = 176;
  llama.num_heads = 8;
  llama.num_kv_heads = 2;
  llama.head_dim = 10;
  llama.rms_norm_eps = 1e-6;
  llama.rope_theta = 5e5;
  llama.attention_bias = true;
  llama.do_layer_norm_before = false;  // an OPT field: LLaMA ignores it
  a = LayerArchitectureOf(llama);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->kind, gpu::LayerKind::kLlama);
  EXPECT_TRUE(a->norm_before);
  EXPECT_EQ(a->q_width(), 80);
  EXPECT_EQ(a->kv_width(), 20);
  EXPECT_TRUE(a->attention_bias);
  EXPECT_FALSE(a->mlp_bias);
  EXPECT_EQ(a->rope_theta, 5e5);

  llama.head_dim = 9;  // RoPE pairs channels
  EXPECT_EQ(LayerArchitectureOf(llama).status().code(), absl::StatusCode::kUnimplemented);
}

TEST(DeviceGlueTest, LayerDeviceBytesCountWeightsScratchAndTheLargerOfStatisticsAndSolve) {
  ModelConfig opt;  // OPT-1.3B's layer
  opt.arch = Architecture::kOpt;
  opt.hidden_size = 2048;
  opt.intermediate_size = 8192;
  opt.num_heads = opt.num_kv_heads = 32;
  opt.head_dim = 64;
  const size_t h = 2048, f = 8192, tokens = 2048;
  const auto arch = LayerArchitectureOf(opt);
  ASSERT_TRUE(arch.ok());
  const size_t weights = 4 * (4 * h * h + 4 * h + 2 * h * f + f + h) + 4 * 4 * h;
  const size_t solve = 20 * f * f;  // fc2's factorization, the largest
  const size_t statistics = 12 * (3 * h * h + f * f);
  ASSERT_GT(solve, statistics);
  const size_t scratch = gpu::LayerForwardScratchBytes(*arch, tokens), staging = 4 * tokens * h;
  EXPECT_EQ(LayerDeviceBytes(opt, tokens, false), weights + scratch + staging + solve);

  // aespa's attention statistics join the statistics: 32 hidden² float64 sums (1.07 GB) push
  // them past the solve.
  const size_t attention = AttentionStatsDeviceBytes(opt, tokens);
  EXPECT_EQ(attention, 32 * (8 * h * h + 4 * h) + 2 * 32 * (8 * 64 * 64 + 4 * 64) + 4 * (h * h + 64 * 64) +
                           4 * tokens * tokens + 4 * tokens * h + 4 * tokens * 64);
  ASSERT_GT(statistics + attention, solve);
  EXPECT_EQ(LayerDeviceBytes(opt, tokens, true), weights + scratch + staging + statistics + attention);
}

}  // namespace
}  // namespace qshard
