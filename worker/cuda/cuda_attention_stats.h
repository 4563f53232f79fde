// aespa's attention statistics on a CUDA device (worker/calibration/statistics_device.h): each
// window's attention input and rotated q/k, where the device forward pass (cuda_forward) left
// them, go to gpu::DeviceAttentionStats (probabilities, A_h X and the window products on the
// device, added in window order into float64 sums), and the sums come back to the host once,
// when their shard is done, as an AttentionStats that merges across shards like a CPU partial.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "worker/calibration/statistics_device.h"
#include "worker/cuda/cuda_session.h"

namespace qshard {

// Device bytes of `config`'s attention statistics for windows of `seq` tokens
// (gpu::DeviceAttentionStatsBytes).
size_t AttentionStatsDeviceBytes(const ModelConfig& config, int64_t seq);

// RESOURCE_EXHAUSTED, saying what they need and what is free, when they cannot fit now.
absl::StatusOr<std::unique_ptr<OffHostAttentionStats>> NewCudaAttentionStats(std::shared_ptr<CudaSession> session,
                                                                             const ModelConfig& config, int64_t seq);

}  // namespace qshard
