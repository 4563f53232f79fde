#include "engine/device_job_plan.h"

#include "absl/strings/str_cat.h"
#include "core/format_bytes.h"
#include "core/status.h"
#include "engine/calibration_shards.h"
#include "worker/device/cuda_device_memory.h"

namespace qshard {
namespace {

const Device kCuda{Device::Kind::kCuda, 0};

constexpr char kLayerDoesNotFit[] =
    "a layer's bound exceeds the free memory: the worker starts the job (nothing refuses it up front), every "
    "shard's hidden states spill to host memory, and the layer's own allocations on the device (its weights, "
    "statistics, largest GPTQ solve) may fail mid-job with RESOURCE_EXHAUSTED: use --device cpu, or a device with "
    "more memory";

}  // namespace

ForwardStatistics ForwardStatisticsOf(const JobSpec& spec, const MethodRegistration& method) {
  return {.all_groups = spec.calibration.propagation == Propagation::kParallel,
          .attention = method.needs.attention_stats};
}

absl::StatusOr<DeviceJobPlan> PlanJobOnCudaWorkers(const JobSpec& spec, const ModelConfig& config,
                                                   uint64_t free_bytes, JobPlan& plan) {
  DeviceJobPlan device;
  device.free_bytes = free_bytes;
  QSHARD_ASSIGN_OR_RETURN(device.roles, PlanOnDevice(spec.method, kCuda));
  if (device.roles.calibration != DevicePlan::Place::kDevice) return device;
  QSHARD_ASSIGN_OR_RETURN(const MethodRegistration* method, FindMethod(spec.method.method));
  absl::StatusOr<DeviceMemoryPlan> memory =
      PlanDeviceMemory(config, plan.seqlen, ForwardStatisticsOf(spec, *method), kCuda.index, free_bytes);
  if (!memory.ok()) return WithContext(memory.status(), absl::StrCat("--device-memory ", free_bytes));
  QSHARD_RETURN_IF_ERROR(LayerArchitectureOf(config).status());
  std::vector<uint64_t> shard_bytes;
  for (const int shard : plan.busiest_shards) {
    const int64_t windows = ShardWindows(spec.calibration.nsamples, spec.calibration.shards, shard).count;
    shard_bytes.push_back(sizeof(float) * static_cast<uint64_t>(windows * plan.seqlen * config.hidden_size));
  }
  device.memory = PlaceShards(*memory, shard_bytes);
  if (device.memory->kv_heads > 0)
    device.kept_attention_window_bytes = AddKeptAttentionWindows(plan, spec, config, device.memory->value_heads);
  return device;
}

std::vector<std::string> DeviceJobPlan::Lines() const {
  std::vector<std::string> lines = {
      absl::StrCat("on CUDA workers with ", FormatBytes(free_bytes), " free: ", DescribePlan(roles))};
  if (!memory) return lines;
  lines.push_back(absl::StrCat("  the busiest worker's ", DescribeDeviceMemoryPlan(*memory)));
  if (kept_attention_window_bytes > 0)
    lines.push_back(absl::StrCat(
        "  each worker keeps a shard's windows' x, q and k in host memory for the later passes (",
        FormatBytes(kept_attention_window_bytes), ", counted above)"));
  if (!layer_fits()) lines.push_back(absl::StrCat("  ", kLayerDoesNotFit));
  return lines;
}

nlohmann::json DeviceJobPlan::ToJson() const {
  nlohmann::json json = {{"free_bytes", free_bytes},
                         {"roles", DeviceRolesJson(roles, kCuda)},
                         {"summary", DescribePlan(roles)}};
  if (!memory) return json;
  json["device_plan"] = DeviceMemoryPlanJson(*memory);
  json["layer_fits"] = layer_fits();
  if (!layer_fits()) json["warning"] = kLayerDoesNotFit;
  if (kept_attention_window_bytes > 0) json["kept_attention_window_bytes"] = kept_attention_window_bytes;
  return json;
}

}  // namespace qshard
