#include "worker/device/cuda_device.h"

namespace qshard {

absl::StatusOr<std::shared_ptr<CudaDevice>> OpenDevice(const Device& device) {
  if (device.kind == Device::Kind::kCpu) return std::shared_ptr<CudaDevice>();
  return OpenCudaDevice(device.index, device.memory_bytes);
}

}  // namespace qshard
