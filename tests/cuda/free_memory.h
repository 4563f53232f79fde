// A filler allocation that leaves a chosen amount of the current device's memory free, for tests
// of the CUDA glue's memory decisions (slices, refusals). On the host emulation of CUDA the filler
// is real host memory: set a small QSHARD_EMULATED_DEVICE_GB before the first CUDA call.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "gtest/gtest.h"
#include "kernels/cuda/device_buffer.h"

namespace qshard::testing {

// Leaves `free` bytes of the device free while it lives.
class FreeMemory {
 public:
  explicit FreeMemory(size_t free) {
    size_t now = 0, total = 0;
    EXPECT_EQ(cudaMemGetInfo(&now, &total), cudaSuccess);
    EXPECT_GE(now, free);
    EXPECT_TRUE(filler_.Allocate(now - free).ok());
  }

 private:
  gpu::DeviceBuffer<char> filler_;
};

}  // namespace qshard::testing
