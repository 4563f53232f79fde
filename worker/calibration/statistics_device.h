// Statistics summed off the host. A collector (input_stats_collector.h) given a
// StatisticsDevice keeps its sums there; the device's forward pass (worker/device/forward_device.h)
// adds each window's product where it computed the window, in the order the conventions fix (one
// float32 product per window, added in window order into a float64 sum), and the collector takes
// the sum back as a HessianSum, which then reduces across shards on the host exactly as CPU sums
// do. aespa's attention statistics (attention_stats.h) likewise: the forward pass hands each
// window's attention input and rotated queries and keys, where it computed them, to an
// OffHostAttentionStats, whose sums come back as an AttentionStats that merges across shards as
// CPU partials do. The CUDA implementation is worker/cuda.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "worker/calibration/attention_stats.h"
#include "worker/calibration/hessian.h"

namespace qshard {

class OffHostHessianSum {
 public:
  virtual ~OffHostHessianSum() = default;
  virtual int64_t dim() const = 0;
  // HessianSum::AddWindows for x [rows, dim] (row-major) in the device's own memory, where its
  // forward pass left it: consecutive windows of `window` rows, one product per window, in order.
  virtual absl::Status AddResidentWindows(const float* x, int64_t rows, int64_t window) = 0;
  // Copies the sum (both triangles), the token count and the per-channel maxima into `host`,
  // whose `sum` already holds dim² elements, and frees the device's copy.
  virtual absl::Status Download(HessianSum& host) = 0;
};

// aespa's attention statistics of one shard and layer, accumulated where the forward pass runs.
class OffHostAttentionStats {
 public:
  virtual ~OffHostAttentionStats() = default;
  // Adds one window of the job's window length from the device's own memory: x the attention input
  // [seq, hidden] (group 0's input), q [seq, heads·head_dim] and k [seq, kv_heads·head_dim] the
  // projections after RoPE (unscaled), as AttentionStatsCollector::OnAttention takes them: per
  // key/value head, each query head's window product added in window order, heads in order.
  virtual absl::Status AddResidentWindow(const float* x, const float* q, const float* k) = 0;
  // Copies the sums (both triangles), token counts and maxima into `host` (AttentionStats::For
  // the same model and window length) and frees the device's copy.
  virtual absl::Status Download(AttentionStats& host) = 0;
};

class StatisticsDevice {
 public:
  virtual ~StatisticsDevice() = default;
  virtual absl::StatusOr<std::unique_ptr<OffHostHessianSum>> NewHessianSum(int64_t dim) = 0;
  // Empty attention statistics for `config`'s layers and windows of `seq` tokens;
  // RESOURCE_EXHAUSTED, saying how much they need, when they cannot fit.
  virtual absl::StatusOr<std::unique_ptr<OffHostAttentionStats>> NewAttentionStats(const ModelConfig& config,
                                                                                 int64_t seq) = 0;
};

}  // namespace qshard
