// What a job would do on CUDA workers with so much device memory free, from config.json alone
// (`qshard plan --device-memory`), by the worker's own rules: what runs on the device
// (PlanOnDevice, and its refusal of a method without a rule), and where the job calibrates there,
// the device plan its busiest worker would make at the job's start (PlanDeviceMemory: the layer's
// bound, aespa's attention statistics in passes, the refusal of a layer that cannot fit even one
// key/value head's) with that worker's shards placed as its forward pass places them
// (PlaceShards), and aespa's AdaRound of each linear, whole or in slices (PlanAdaRoundSlices) or
// refused, in the memory its solve would find. Arithmetic only, in every build: no CUDA, no device, no weights.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "engine/job_plan.h"
#include "engine/job_spec.h"
#include "kernels/cuda/adaround_plan.h"
#include "nlohmann/json.hpp"
#include "worker/device/device_memory_plan.h"
#include "worker/device/device_support.h"
#include "worker/device/forward_device.h"
#include "worker/methods/method_registry.h"

namespace qshard {

// What a job's device forward passes collect at once: every group's sums under parallel
// propagation, and aespa's attention statistics beside group 0's.
ForwardStatistics ForwardStatisticsOf(const JobSpec& spec, const MethodRegistration& method);

struct DeviceJobPlan {
  uint64_t free_bytes = 0;
  DevicePlan roles;
  // The busiest worker's device plan, as its log line would give it; none for a method without
  // calibration (nothing of it on the device).
  std::optional<DeviceMemoryPlan> memory;
  uint64_t kept_attention_window_bytes = 0;  // aespa in passes: AddKeptAttentionWindows's term

  // aespa's AdaRound of a linear that does not run whole: its shapes, and its slices (none where
  // one unit does not fit: the worker's refusal at that solve fails the job).
  struct Rounding {
    std::string linear;
    gpu::AdaRoundDeviceProblem problem;
    std::vector<gpu::AdaRoundSlice> slices;
  };
  uint64_t rounding_free_bytes = 0;  // what each AdaRound is assumed to find free (device_job_plan.cc)
  std::vector<Rounding> rounding;    // the linears in slices or refused, in the layer's order

  // Whether a layer's bound fits the free memory. Where it does not (never for aespa, refused
  // instead), the worker still starts the job: every shard spills to host memory, and a layer's
  // own allocations may fail mid-job.
  bool layer_fits() const { return !memory || memory->layer_bytes <= memory->free_bytes; }
  // `qshard plan`'s text: a line on what runs on the device, then indented ones on the memory.
  std::vector<std::string> Lines() const;
  nlohmann::json ToJson() const;
};

// The plan of `spec` on `config` for CUDA workers with `free_bytes` free; adds aespa's kept
// windows to `plan` (its PlanJob) where its attention statistics are taken in passes. The
// worker's refusals, in the worker's order and words: UNIMPLEMENTED for a method without a rule,
// RESOURCE_EXHAUSTED (after "--device-memory N: ") for aespa's layer that cannot fit,
// UNIMPLEMENTED for layers the device forward pass cannot compute.
absl::StatusOr<DeviceJobPlan> PlanJobOnCudaWorkers(const JobSpec& spec, const ModelConfig& config,
                                                   uint64_t free_bytes, JobPlan& plan);

}  // namespace qshard
