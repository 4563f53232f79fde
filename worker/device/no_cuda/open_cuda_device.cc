// OpenCudaDevice in a build without CUDA (QSHARD_CUDA=OFF, or AUTO without nvcc): there is no
// device code to run, so `--device cuda` is refused up front.
#include "absl/strings/str_cat.h"
#include "worker/device/cuda_device.h"

namespace qshard {

bool BuiltWithCuda() { return false; }

absl::StatusOr<std::shared_ptr<CudaDevice>> OpenCudaDevice(int index, uint64_t) {
  return absl::UnimplementedError(absl::StrCat("--device cuda:", index,
                                               ": this build has no CUDA support (rebuild with -DQSHARD_CUDA=ON and "
                                               "the CUDA toolkit installed)"));
}

}  // namespace qshard
