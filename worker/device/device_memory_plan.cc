#include "worker/device/device_memory_plan.h"

#include "absl/strings/str_cat.h"
#include "core/format_bytes.h"

namespace qshard {
namespace {

std::string Attention(const DeviceMemoryPlan& p) {
  if (p.kv_heads == 0) return "";
  return absl::StrCat(DescribeAttentionPasses(p),
                      p.attention_passes() > 1 ? " (the later passes replay windows kept in host memory)" : "", "; ");
}

std::string HiddenStates(const DeviceMemoryPlan& p) {
  if (p.shards_on_device + p.shards_in_host == 0) return "no hidden states held";
  if (p.shards_in_host == 0) return "hidden states on the device";
  if (p.shards_on_device == 0) return "hidden states in host memory (copied up window by window)";
  return absl::StrCat("hidden states of ", p.shards_on_device, " of ", p.shards_on_device + p.shards_in_host,
                      " shards on the device, the rest in host memory");
}

}  // namespace

int64_t DeviceMemoryPlan::attention_passes() const {
  return kv_heads == 0 || value_heads <= 0 ? 0 : (kv_heads + value_heads - 1) / value_heads;
}

bool HoldsOnDevice(const DeviceMemoryPlan& p, uint64_t bytes, uint64_t free) { return bytes + p.layer_bytes <= free; }

DeviceMemoryPlan PlaceShards(DeviceMemoryPlan p, const std::vector<uint64_t>& bytes) {
  uint64_t free = p.free_bytes;
  for (const uint64_t shard : bytes) {
    if (shard == 0) continue;
    if (!HoldsOnDevice(p, shard, free)) {
      ++p.shards_in_host;
      continue;
    }
    ++p.shards_on_device;
    p.held_bytes += shard;
    free -= shard;
  }
  return p;
}

std::string DescribeAttentionPasses(const DeviceMemoryPlan& p) {
  if (p.kv_heads == 0) return "";
  if (p.attention_passes() == 1)
    return absl::StrCat("attention statistics of all ", p.kv_heads, " key/value heads in one pass");
  return absl::StrCat("attention statistics in ", p.attention_passes(), " passes of ", p.value_heads, " of ",
                      p.kv_heads, " key/value heads");
}

std::string DescribeDeviceMemoryPlan(const DeviceMemoryPlan& p) {
  return absl::StrCat("device plan: ", Attention(p), "a layer's bound ", FormatBytes(p.layer_bytes), " of ",
                      FormatBytes(p.free_bytes), " free; ", HiddenStates(p));
}

nlohmann::json DeviceMemoryPlanJson(const DeviceMemoryPlan& p) {
  nlohmann::json json = {{"free_bytes", p.free_bytes},
                         {"layer_bytes", p.layer_bytes},
                         {"shards_on_device", p.shards_on_device},
                         {"shards_in_host", p.shards_in_host}};
  if (p.kv_heads > 0)
    json["attention_statistics"] = {
        {"kv_heads", p.kv_heads}, {"heads_per_pass", p.value_heads}, {"passes", p.attention_passes()}};
  json["summary"] = DescribeDeviceMemoryPlan(p);
  return json;
}

}  // namespace qshard
