#include "worker/cuda/cuda_status_adapter.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace qshard {

absl::Status FromCudaStatus(const gpu::CudaStatus& status, std::string_view doing) {
  if (status.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(std::string(doing), ": ", status.message());
  // cudaMalloc's error and cuBLAS's allocation failure, as cuda_status.h's macros spell them.
  if (absl::StrContains(status.message(), "cudaErrorMemoryAllocation") ||
      absl::StrContains(status.message(), "CUBLAS_STATUS_ALLOC_FAILED"))
    return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

}  // namespace qshard
