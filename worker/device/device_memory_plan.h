// What a job keeps on its CUDA device, chosen once at its start from the device's free memory
// (docs/cuda.md, "The worker's device"): how many key/value heads' attention statistics one pass
// sums (aespa; the rest in later passes over windows kept in host memory), the bound a layer needs
// with them, and which shards' hidden states stay on the device. The CUDA forward pass fills it
// (ForwardDevice::MemoryPlan); the job's log and quant_report.json's `device_plan` show it, so a
// job that runs slower on a small card (or under --device-memory) says why.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace qshard {

struct DeviceMemoryPlan {
  uint64_t free_bytes = 0;   // the device's free memory at the job's start (within --device-memory)
  uint64_t layer_bytes = 0;  // what a layer needs there besides the hidden states (LayerDeviceBytes)
  int64_t kv_heads = 0;      // aespa: the model's key/value heads; 0: no attention statistics
  int64_t value_heads = 0;   // of them, those whose values' sums one pass holds
  int shards_on_device = 0;  // shards whose hidden states the device holds
  int shards_in_host = 0;    // spilled: in host memory, each window copied up for each pass
  uint64_t held_bytes = 0;   // the hidden states of the shards on the device

  // Passes over a shard's windows for its attention statistics (0 without them).
  int64_t attention_passes() const;
};

// Whether a shard's hidden states of `bytes` stay on the device when `free` bytes are free as they
// are handed over: they must leave the layer's bound free, else they spill to host memory (the
// CUDA forward pass's rule).
bool HoldsOnDevice(const DeviceMemoryPlan& plan, uint64_t bytes, uint64_t free);

// `plan` with shards of `bytes` each handed over in that order on a device with plan.free_bytes
// free, each one held there (HoldsOnDevice) taking its bytes from what is free, counted into
// shards_on_device (their bytes into held_bytes) and shards_in_host; empty shards are in neither, as the forward pass counts
// them. So the first shards fill the device and the rest spill.
DeviceMemoryPlan PlaceShards(DeviceMemoryPlan plan, const std::vector<uint64_t>& bytes);

// "attention statistics in 2 passes of 48 of 96 key/value heads", or "... of all 96 key/value
// heads in one pass"; empty without attention statistics. The log line's and `qshard plan`'s.
std::string DescribeAttentionPasses(const DeviceMemoryPlan& plan);

// The one line for the log: "device plan: attention statistics in 2 passes of 48 of 96 key/value
// heads (...); a layer's bound 69.30 GB of 80.00 GB free; hidden states on the device".
std::string DescribeDeviceMemoryPlan(const DeviceMemoryPlan& plan);

// quant_report.json's entry: the numbers, and the line under "summary".
nlohmann::json DeviceMemoryPlanJson(const DeviceMemoryPlan& plan);

}  // namespace qshard
