// The device plan a job's forward pass makes at its start (worker/cuda/cuda_forward.h,
// PlanForwardNow; shown by the log and quant_report.json's device_plan): on the host emulation of
// CUDA with its free memory set by a filler, aespa's attention statistics in slices where all heads'
// do not fit, the bound and the free memory it was made from, and which held shards spilled.
// Needs the emulation (QSHARD_CUDA=EMULATED): a GPU's free memory cannot be set.
#include <cstdlib>

#include "gtest/gtest.h"
#include "tests/cuda/free_memory.h"
#include "worker/cuda/cuda_forward.h"

namespace qshard {
namespace {

#ifdef QSHARD_CUDA_EMULATED

TEST(CudaForwardPlanTest, SaysHowManyHeadsAPassHoldsAndWhereTheShardsLie) {
  ASSERT_EQ(setenv("QSHARD_EMULATED_DEVICE_GB", "0.02", 1), 0);  // read at the emulation's first call
  auto session = CudaSession::Open(0);
  ASSERT_TRUE(session.ok()) << session.status();
  ModelConfig config;  // LLaMA GQA 2:1, its MLP narrow so that the attention statistics decide the bound
  config.arch = Architecture::kLlama;
  config.hidden_size = 160;
  config.intermediate_size = 64;
  config.num_heads = 10;
  config.num_kv_heads = 5;
  config.head_dim = 16;
  constexpr int64_t kSeq = 24;
  constexpr ForwardStatistics kAespa{.all_groups = false, .attention = true};
  const size_t three = LayerDeviceBytes(config, kSeq, kAespa, 3);
  ASSERT_LT(three, LayerDeviceBytes(config, kSeq, kAespa));

  // Room for three heads' (and one window's hidden states beside them): two passes of three.
  const size_t window = 4 * kSeq * config.hidden_size;
  const testing::FreeMemory room(three + 2 * window);
  auto plan = PlanForwardNow(**session, config, kSeq, kAespa);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->free_bytes, three + 2 * window);
  EXPECT_EQ(plan->kv_heads, 5);
  EXPECT_EQ(plan->value_heads, ValueHeadsPerPass(config, kSeq, kAespa, 0, three + 2 * window).value_or(-1));
  EXPECT_EQ(plan->value_heads, 3);
  EXPECT_EQ(plan->attention_passes(), 2);
  EXPECT_EQ(plan->layer_bytes, three);

  // A one-window shard fits beside the bound; a three-window one then spills to host memory.
  auto forward = NewCudaForward(*session, config, kSeq, *plan);
  ASSERT_TRUE(forward.ok()) << forward.status();
  ASSERT_TRUE((*forward)->HoldShard(0, Tensor({kSeq, config.hidden_size})).ok());
  ASSERT_TRUE((*forward)->HoldShard(1, Tensor({3 * kSeq, config.hidden_size})).ok());
  ASSERT_TRUE((*forward)->HoldShard(2, Tensor({0, config.hidden_size})).ok());  // no windows: neither
  const DeviceMemoryPlan held = (*forward)->MemoryPlan();
  EXPECT_EQ(held.shards_on_device, 1);
  EXPECT_EQ(held.shards_in_host, 1);
  EXPECT_EQ(held.value_heads, 3);

  // Without attention statistics no heads are counted, and the bound is the plain one.
  auto plain = PlanForwardNow(**session, config, kSeq, ForwardStatistics{});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->kv_heads, 0);
  EXPECT_EQ(plain->attention_passes(), 0);
  EXPECT_EQ(plain->layer_bytes, LayerDeviceBytes(config, kSeq, ForwardStatistics{}));
}

#else

TEST(CudaForwardPlanTest, NeedsTheHostEmulation) { GTEST_SKIP() << "sets the free memory of the emulated device"; }

#endif

}  // namespace
}  // namespace qshard
