// Statistics summed off the host. A collector (input_stats_collector.h) given a
// StatisticsDevice keeps its sums there; the device's forward pass (worker/device/forward_device.h)
// adds each window's product where it computed the window, in the order the conventions fix (one
// float32 product per window, added in window order into a float64 sum), and the collector takes
// the sum back as a HessianSum, which then reduces across shards on the host exactly as CPU sums
// do. The CUDA implementation is worker/cuda.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

class StatisticsDevice {
 public:
  virtual ~StatisticsDevice() = default;
  virtual absl::StatusOr<std::unique_ptr<OffHostHessianSum>> NewHessianSum(int64_t dim) = 0;
};

}  // namespace qshard
