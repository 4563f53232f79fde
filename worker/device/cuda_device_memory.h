// The CUDA worker's device-memory rules as arithmetic on the model's config (docs/cuda.md, "The
// device plan"): the bound a layer needs on the device beside the shards' hidden states, aespa's
// attention statistics' share of it, how many key/value heads' attention statistics one pass
// holds with so much free memory, and the plan a job makes from them at its start. Plain C++,
// built in every build: the CUDA glue (worker/cuda) decides with these, and `qshard plan
// --device-memory` gives the same answers without CUDA and without a device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "kernels/cuda/adaround_plan.h"
#include "kernels/cuda/device_memory_bytes.h"
#include "kernels/cuda/layer_architecture.h"
#include "worker/device/device_memory_plan.h"
#include "worker/device/forward_device.h"
#include "worker/model/layer_spec.h"

namespace qshard {

// The device layer's description of `config`'s layers; UNIMPLEMENTED where the device cannot
// compute them.
absl::StatusOr<gpu::LayerArchitecture> LayerArchitectureOf(const ModelConfig& config);

// The device attention statistics' dimensions of `config`'s layers.
gpu::AttentionStatsDims AttentionStatsDimsOf(const ModelConfig& config);

// Device bytes of `config`'s attention statistics for windows of `seq` tokens with the values'
// sums of `value_heads` key/value heads held at once (gpu::DeviceAttentionStatsBytes) and, when
// that is fewer than all, one window's x, q and k for the later slices' passes.
size_t AttentionStatsDeviceBytes(const ModelConfig& config, int64_t seq, int64_t value_heads);
// The same with every head's values' sums: no slicing.
size_t AttentionStatsDeviceBytes(const ModelConfig& config, int64_t seq);

// Device bytes a layer needs besides the shards' hidden states, the bound a shard's states must
// leave free to be held on the device: the layer's float32 weights, one window's forward scratch
// and staging, and the larger of the statistics alive at once and its largest GPTQ solve
// (max(20·in², 12·in² + 16·in·out)), which never overlap (a layer's solves start once its last
// shard's sums are downloaded and freed). The statistics are one shard's sums of the groups a
// pass collects, 12·width² each: all four groups' under parallel propagation (`all_groups`), the
// widest group's under sequential; aespa's attention statistics, with the values' sums of
// `value_heads` key/value heads at once (AttentionStatsDeviceBytes), live beside group 0's.
size_t LayerDeviceBytes(const ModelConfig& config, int64_t seqlen, const ForwardStatistics& statistics,
                        int64_t value_heads);
// The same with every key/value head's values' sums at once.
size_t LayerDeviceBytes(const ModelConfig& config, int64_t seqlen, const ForwardStatistics& statistics);

// The key/value heads whose attention statistics' values' sums a layer's bound makes room for on
// device `index` with `free` bytes free: all of them when the bound with all fits (and when the job
// collects no attention statistics), else as many as the fewest slices that fit need, spread
// evenly (96 heads with 56 fitting: two slices of 48; each later slice is a pass over the
// shard's kept windows, worker/cuda/cuda_attention_stats.h). RESOURCE_EXHAUSTED, naming the bound
// with one head at a time, the attention statistics' share, the propagation and `free`, when not
// even one head's fit.
absl::StatusOr<int64_t> ValueHeadsPerPass(const ModelConfig& config, int64_t seqlen,
                                          const ForwardStatistics& statistics, int index, size_t free);

// A job's device plan with `free` bytes free at its start, before any work: ValueHeadsPerPass
// (its refusal too), and the layer's bound with that many heads; no shards held yet.
absl::StatusOr<DeviceMemoryPlan> PlanDeviceMemory(const ModelConfig& config, int64_t seqlen,
                                                  const ForwardStatistics& statistics, int index, size_t free);

// The part of a layer's bound that stays on the device through its solves: the float32 weights,
// one window's forward scratch and staging (LayerDeviceBytes less its statistics or largest solve).
size_t LayerResidentBytes(const ModelConfig& config, int64_t seqlen);

// The shapes (no arrays) of aespa's AdaRound problem for a whole `linear` of `bits`, as the aespa
// method builds it (worker/methods/aespa_method.cc): q_proj and k_proj one Hessian and an output
// weighting per head of theirs, v_proj a Hessian per key/value head, every other linear one Hessian.
gpu::AdaRoundDeviceProblem AespaRoundingShape(const ModelConfig& config, const LinearSpec& linear, int bits);

// The CUDA learner's refusal of `problem` when one unit (a head, else a Hessian block) does not
// fit the `free` bytes of device `index` (gpu::PlanAdaRoundSlices fails).
std::string AdaRoundRefusal(const gpu::AdaRoundDeviceProblem& problem, int index, size_t free);

}  // namespace qshard
