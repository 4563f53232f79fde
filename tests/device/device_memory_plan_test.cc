// The device plan's one line and report entry (worker/device/device_memory_plan.h): slices of
// attention statistics, all heads at once, no attention statistics, and where hidden states lie;
// the rule that places shards on the device or spills them, shard by shard in order.
#include "worker/device/device_memory_plan.h"

#include "gtest/gtest.h"

namespace qshard {
namespace {

TEST(DeviceMemoryPlanTest, OneLineSaysWhatTheJobKeepsOnTheDevice) {
  // OPT-175B's aespa layer on an 80 GB card (docs/cuda.md): two slices of 48 heads.
  DeviceMemoryPlan sliced{.free_bytes = 80'000'000'000, .layer_bytes = 69'300'000'000, .kv_heads = 96,
                          .value_heads = 48, .shards_on_device = 8};
  EXPECT_EQ(sliced.attention_passes(), 2);
  EXPECT_EQ(DescribeDeviceMemoryPlan(sliced),
            "device plan: attention statistics in 2 passes of 48 of 96 key/value heads (the later passes replay "
            "windows kept in host memory); a layer's bound 69.30 GB of 80.00 GB free; hidden states on the device");
  // An uneven last slice still counts as a pass.
  EXPECT_EQ((DeviceMemoryPlan{.kv_heads = 5, .value_heads = 2}.attention_passes()), 3);

  const DeviceMemoryPlan whole{.free_bytes = 141'000'000'000, .layer_bytes = 127'000'000'000, .kv_heads = 96,
                               .value_heads = 96, .shards_on_device = 3, .shards_in_host = 5};
  EXPECT_EQ(DescribeDeviceMemoryPlan(whole),
            "device plan: attention statistics of all 96 key/value heads in one pass; a layer's bound 127.00 GB of "
            "141.00 GB free; hidden states of 3 of 8 shards on the device, the rest in host memory");

  const DeviceMemoryPlan spilled{.free_bytes = 2'000'000'000, .layer_bytes = 1'900'000'000, .shards_in_host = 2};
  EXPECT_EQ(spilled.attention_passes(), 0);
  EXPECT_EQ(DescribeDeviceMemoryPlan(spilled),
            "device plan: a layer's bound 1.90 GB of 2.00 GB free; hidden states in host memory (copied up window by "
            "window)");
  EXPECT_EQ(DescribeDeviceMemoryPlan(DeviceMemoryPlan{.free_bytes = 4'000'000'000, .layer_bytes = 5'100'000}),
            "device plan: a layer's bound 5.1 MB of 4.00 GB free; no hidden states held");
}

TEST(DeviceMemoryPlanTest, TheReportEntryCarriesTheNumbersAndTheLine) {
  const DeviceMemoryPlan sliced{.free_bytes = 80'000'000'000, .layer_bytes = 69'300'000'000, .kv_heads = 96,
                                .value_heads = 48, .shards_on_device = 1, .shards_in_host = 2};
  const nlohmann::json json = DeviceMemoryPlanJson(sliced);
  EXPECT_EQ(json["free_bytes"], 80'000'000'000u);
  EXPECT_EQ(json["layer_bytes"], 69'300'000'000u);
  EXPECT_EQ(json["shards_on_device"], 1);
  EXPECT_EQ(json["shards_in_host"], 2);
  EXPECT_EQ(json["attention_statistics"], nlohmann::json({{"kv_heads", 96}, {"heads_per_pass", 48}, {"passes", 2}}));
  EXPECT_EQ(json["summary"], DescribeDeviceMemoryPlan(sliced));
  EXPECT_FALSE(DeviceMemoryPlanJson(DeviceMemoryPlan{}).contains("attention_statistics"));
}

TEST(DeviceMemoryPlanTest, ShardsStayOnTheDeviceWhileTheyLeaveTheLayersBoundFree) {
  const DeviceMemoryPlan plan{.free_bytes = 100, .layer_bytes = 60};
  EXPECT_TRUE(HoldsOnDevice(plan, 40, 100));  // exactly the bound left free
  EXPECT_FALSE(HoldsOnDevice(plan, 41, 100));
  // In order, each held shard taking its bytes: 15 and 20 fit (35 of the 40 spare), 10 does not
  // then, 5 still does; empty shards are held nowhere.
  const DeviceMemoryPlan placed = PlaceShards(plan, {15, 0, 20, 10, 5});
  EXPECT_EQ(placed.shards_on_device, 3);
  EXPECT_EQ(placed.shards_in_host, 1);
  EXPECT_EQ(placed.free_bytes, 100u);  // the free memory at the job's start, as the log gives it
  // A bound beyond the free memory spills every shard.
  const DeviceMemoryPlan spilled = PlaceShards({.free_bytes = 50, .layer_bytes = 60}, {1, 1});
  EXPECT_EQ(spilled.shards_on_device, 0);
  EXPECT_EQ(spilled.shards_in_host, 2);
}

}  // namespace
}  // namespace qshard
