// The worker's calibration forward pass on a CUDA device (worker/device/forward_device.h) over
// kernels/cuda's layer forward: the layer's weights uploaded in float32, each shard's hidden
// states kept on the device when they fit beside what a layer needs there (otherwise in host
// memory, each window copied up and, when the pass changes it, back), the stage entry points called
// one window at a time, and each group input added to its device sum where it lies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "kernels/cuda/layer_architecture.h"
#include "worker/cuda/cuda_session.h"
#include "worker/device/forward_device.h"

namespace qshard {

// The device layer's description of `config`'s layers; UNIMPLEMENTED where the device cannot
// compute them.
absl::StatusOr<gpu::LayerArchitecture> LayerArchitectureOf(const ModelConfig& config);

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
// shard's kept windows, cuda_attention_stats.h). RESOURCE_EXHAUSTED, naming the bound with one head at a time, the
// attention statistics' share, the propagation and `free`, when not even one head's fit.
absl::StatusOr<int64_t> ValueHeadsPerPass(const ModelConfig& config, int64_t seqlen,
                                          const ForwardStatistics& statistics, int index, size_t free);

// The job's device plan at its start, before any work: ValueHeadsPerPass with the device's free
// memory now, and the layer's bound with that many heads (the shards are not held yet).
absl::StatusOr<DeviceMemoryPlan> PlanForwardNow(CudaSession& session, const ModelConfig& config, int64_t seqlen,
                                                const ForwardStatistics& statistics);

// The forward pass, whose bound (`plan.layer_bytes`, LayerDeviceBytes) makes room for
// `plan.value_heads` key/value heads' attention statistics at a time (the number the job's
// NewCudaAttentionStats are then given).
absl::StatusOr<std::unique_ptr<ForwardDevice>> NewCudaForward(std::shared_ptr<CudaSession> session,
                                                             const ModelConfig& config, int64_t seqlen,
                                                             const DeviceMemoryPlan& plan);

}  // namespace qshard
