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

// aespa's AdaRound of each linear on `device`'s busiest worker, as the CUDA learner plans it with
// the free memory it reads at the solve. Assumed for that memory: the free bytes at the job's start
// less the hidden states the worker holds on the device and the layer's resident bytes (weights,
// scratch, staging); the statistics and the GPTQ solves are freed by then. Each linear whole, as a
// worker solves it unless the job splits its heads among workers (then each solves fewer).
void PlanRounding(const JobSpec& spec, const ModelConfig& config, int64_t seqlen, DeviceJobPlan& device) {
  const uint64_t taken = device.memory->held_bytes + LayerResidentBytes(config, seqlen);
  device.rounding_free_bytes = device.free_bytes > taken ? device.free_bytes - taken : 0;
  for (const LinearSpec& linear : DecoderLayerSpec(config).linears) {
    DeviceJobPlan::Rounding r{linear.name, AespaRoundingShape(config, linear, spec.method.spec.bits), {}};
    if (!gpu::PlanAdaRoundSlices(r.problem, device.rounding_free_bytes, r.slices).ok()) r.slices.clear();
    if (r.slices.size() != 1) device.rounding.push_back(std::move(r));
  }
}

// "AdaRound of self_attn.v_proj in 2 slices of 48 of 96 heads (46.70 GB each, 93.30 GB whole)". The
// units of an aespa linear in slices are heads: q/k_proj's weightings, v_proj's per-head Hessians.
std::string DescribeSlices(const DeviceJobPlan::Rounding& r) {
  const gpu::AdaRoundSlice &first = r.slices.front(), &last = r.slices.back();
  const bool even = first.units == last.units;
  return absl::StrCat("AdaRound of ", r.linear, " in ", r.slices.size(), " slices of ", first.units,
                      even ? "" : absl::StrCat(" to ", last.units), " of ", gpu::AdaRoundUnits(r.problem),
                      " heads (", FormatBytes(gpu::AdaRoundSliceBytes(r.problem, last)), even ? " each" : " the largest",
                      ", ", FormatBytes(gpu::AdaRoundSliceBytes(r.problem, {0, gpu::AdaRoundUnits(r.problem)})),
                      " whole)");
}

std::string DescribeRounding(const DeviceJobPlan::Rounding& r, uint64_t free) {
  return r.slices.empty() ? absl::StrCat(r.linear, ": ", AdaRoundRefusal(r.problem, kCuda.index, free))
                          : DescribeSlices(r);
}

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
  if (device.roles.rounding == DevicePlan::Place::kDevice) PlanRounding(spec, config, plan.seqlen, device);
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
  if (!rounding.empty())
    lines.push_back(absl::StrCat("  aespa's AdaRound with ", FormatBytes(rounding_free_bytes),
                                 " free at its solves (less the held hidden states and the layer's weights):"));
  for (const Rounding& r : rounding) lines.push_back(absl::StrCat("    ", DescribeRounding(r, rounding_free_bytes)));
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
  if (roles.rounding != DevicePlan::Place::kDevice) return json;
  nlohmann::json& adaround = json["adaround"] = {{"free_bytes", rounding_free_bytes}, {"linears", nlohmann::json::array()}};
  for (const Rounding& r : rounding) {
    nlohmann::json linear = {{"linear", r.linear}, {"summary", DescribeRounding(r, rounding_free_bytes)}};
    if (!r.slices.empty()) {
      linear["slice_units"] = nlohmann::json::array();
      for (const gpu::AdaRoundSlice& slice : r.slices) linear["slice_units"].push_back(slice.units);
    }
    adaround["linears"].push_back(std::move(linear));
  }
  return json;
}

}  // namespace qshard
