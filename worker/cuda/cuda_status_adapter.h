// The one conversion from the CUDA kernels' CudaStatus (kernels/cuda/cuda_status.h, kept free
// of Abseil for the CUDA-only build) to absl::Status: device memory exhausted is
// RESOURCE_EXHAUSTED, anything else INTERNAL, the message prefixed with what was being done.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_status.h"

namespace qshard {

absl::Status FromCudaStatus(const gpu::CudaStatus& status, std::string_view doing);

}  // namespace qshard
