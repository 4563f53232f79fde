// Where a worker runs the heavy steps of a block: the CPU, or a CUDA device (`--device
// cpu|cuda[:N]` on `qshard quantize` and `qshard worker`). The device belongs to the worker,
// not to the job: a submitted job says what to compute, each worker says where it computes.
// It still decides bits: a checkpoint depends on its spec, its seed and the device kind that
// collected its statistics and solved it (docs/cuda.md, "The worker's device").
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace qshard {

struct Device {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  int index = 0;  // the CUDA device ordinal (cudaSetDevice); 0 on the CPU
  // --device-memory: the bytes of the CUDA device's memory this process may use, as its memory
  // decisions count them (worker/cuda/cuda_session.h, DeviceMemoryBudget); 0: the whole device.
  uint64_t memory_bytes = 0;

  bool operator==(const Device&) const = default;
};

// "cpu", "cuda" (ordinal 0) or "cuda:N" (N a non-negative decimal ordinal). Anything else is
// INVALID_ARGUMENT naming `flag` and the accepted forms.
absl::StatusOr<Device> ParseDevice(std::string_view text, std::string_view flag = "--device");

// Gives `--device-memory bytes` (0: none) to each CUDA device of `devices`, the ones a command
// opens; INVALID_ARGUMENT when bytes is not 0 and all of them are the CPU, which has no device
// memory to cap.
absl::Status ApplyDeviceMemory(uint64_t bytes, std::initializer_list<Device*> devices);

// "cpu" or "cuda:N": what ParseDevice reads back, and what a worker's hello carries.
std::string DeviceName(const Device& device);

}  // namespace qshard
