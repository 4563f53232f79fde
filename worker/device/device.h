// Where a worker runs the heavy steps of a block: the CPU, or a CUDA device (`--device
// cpu|cuda[:N]` on `qshard quantize` and `qshard worker`). The device belongs to the worker,
// not to the job: a submitted job says what to compute, each worker says where it computes.
// It still decides bits: a checkpoint depends on its spec, its seed and the device kind that
// collected its statistics and solved it (docs/cuda.md, "The worker's device").
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace qshard {

struct Device {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  int index = 0;  // the CUDA device ordinal (cudaSetDevice); 0 on the CPU

  bool operator==(const Device&) const = default;
};

// "cpu", "cuda" (ordinal 0) or "cuda:N" (N a non-negative decimal ordinal). Anything else is
// INVALID_ARGUMENT naming `flag` and the accepted forms.
absl::StatusOr<Device> ParseDevice(std::string_view text, std::string_view flag = "--device");

// "cpu" or "cuda:N": what ParseDevice reads back, and what a worker's hello carries.
std::string DeviceName(const Device& device);

}  // namespace qshard
