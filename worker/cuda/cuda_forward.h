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
// and staging, and the larger of the four groups' statistics at once (12·width² each: parallel
// propagation), with aespa's attention statistics when `attention_statistics`
// (AttentionStatsDeviceBytes), and its largest GPTQ solve (max(20·in², 12·in² + 16·in·out)).
size_t LayerDeviceBytes(const ModelConfig& config, int64_t seqlen, bool attention_statistics);

// With `attention_statistics`, RESOURCE_EXHAUSTED when that bound exceeds the device's free
// memory now, before any work (aespa at OPT-175B: 116 GB of sums).
absl::StatusOr<std::unique_ptr<ForwardDevice>> NewCudaForward(std::shared_ptr<CudaSession> session,
                                                             const ModelConfig& config, int64_t seqlen,
                                                             bool attention_statistics);

}  // namespace qshard
