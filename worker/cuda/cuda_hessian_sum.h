// A calibration collector's sum on a CUDA device (worker/calibration/statistics_device.h):
// each window, already on the device where the forward pass computed it (worker/cuda/cuda_forward),
// is added by gpu::DeviceHessianSum (cublasSsyrk into a float32 scratch, added into the float64
// sum by a kernel with one writer per element, in window order), then the whole sum comes back
// to the host once, when its shard is done.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cuda/hessian_device.h"
#include "worker/calibration/statistics_device.h"
#include "worker/cuda/cuda_session.h"

namespace qshard {

// Device memory while it lives: 12·dim² bytes (sum and scratch).
absl::StatusOr<std::unique_ptr<OffHostHessianSum>> NewCudaHessianSum(std::shared_ptr<CudaSession> session,
                                                                      int64_t dim);

// Copies `sum` (both triangles), its token count and maxima into `host`, whose `sum` already
// holds dim² elements; the caller has entered the session.
absl::Status DownloadHessianSum(CudaSession& session, const gpu::DeviceHessianSum& sum, HessianSum& host);

}  // namespace qshard
