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
#include "worker/cuda/cuda_session.h"
#include "worker/device/cuda_device_memory.h"
#include "worker/device/forward_device.h"

namespace qshard {

// The job's device plan at its start, before any work: PlanDeviceMemory
// (worker/device/cuda_device_memory.h, the bound and the attention statistics' slices) with the
// device's free memory now, a refusal naming --device-memory where it caps the device.
absl::StatusOr<DeviceMemoryPlan> PlanForwardNow(CudaSession& session, const ModelConfig& config, int64_t seqlen,
                                                const ForwardStatistics& statistics);

// The forward pass, whose bound (`plan.layer_bytes`, LayerDeviceBytes) makes room for
// `plan.value_heads` key/value heads' attention statistics at a time (the number the job's
// NewCudaAttentionStats are then given).
absl::StatusOr<std::unique_ptr<ForwardDevice>> NewCudaForward(std::shared_ptr<CudaSession> session,
                                                             const ModelConfig& config, int64_t seqlen,
                                                             const DeviceMemoryPlan& plan);

}  // namespace qshard
