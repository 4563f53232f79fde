// aespa's attention statistics on a CUDA device (worker/calibration/statistics_device.h): each
// window's attention input and rotated q/k, where the device forward pass (cuda_forward) left
// them, go to gpu::DeviceAttentionStats (probabilities, A_h X and the window products on the
// device, added in window order into float64 sums), and the sums come back to the host once,
// when their shard is done, as an AttentionStats that merges across shards like a CPU partial.
//
// The values' sums (a hidden² float64 sum per key/value head: 116 GB at OPT-175B) may not all fit
// on the device. Then they are taken in slices of heads (the job's forward pass decides how many
// heads a slice holds from the device's free memory at its start, ValueHeadsPerPass in
// worker/device/cuda_device_memory.h), and the
// shard's pass fills the first slice
// (and every head's query and key sums) and keeps each window's x, q and k in host memory; when
// the shard is done, each later slice's sums are made by a pass over the kept windows. A head's
// sum takes the same terms in the same order either way, so slicing changes time, not bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "worker/calibration/statistics_device.h"
#include "worker/cuda/cuda_session.h"
#include "worker/device/cuda_device_memory.h"

namespace qshard {

// Statistics whose values' sums are held `value_heads` key/value heads at a time (all of them
// when that is at least num_kv_heads; ValueHeadsPerPass makes room for the number; their device
// bytes: AttentionStatsDeviceBytes, worker/device/cuda_device_memory.h); RESOURCE_EXHAUSTED, saying what they need and what is free, when they cannot fit now.
absl::StatusOr<std::unique_ptr<OffHostAttentionStats>> NewCudaAttentionStats(std::shared_ptr<CudaSession> session,
                                                                             const ModelConfig& config, int64_t seq,
                                                                             int64_t value_heads);

}  // namespace qshard
