#include "kernels/cuda/adaround_slices.h"

#include <string>

namespace qshard::gpu {

CudaStatus LearnRoundingInSlices(cublasHandle_t blas, cudaStream_t stream, const AdaRoundDeviceProblem& p,
                                 const std::vector<AdaRoundSlice>& slices, const AdaRoundDeviceOptions& options,
                                 AdaRoundDeviceResult& result) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateAdaRoundDeviceProblem(p, options));
  int64_t covered = 0;
  for (const AdaRoundSlice& slice : slices) {
    if (slice.first_unit != covered || slice.units <= 0) break;
    covered += slice.units;
  }
  if (covered != AdaRoundUnits(p))
    return CudaStatus::Error("AdaRound on the device: slices that do not cover the " +
                             std::to_string(AdaRoundUnits(p)) + " units in order");
  result = AdaRoundDeviceResult();
  for (const AdaRoundSlice& slice : slices) {
    AdaRoundDeviceResult part;
    QSHARD_CUDA_RETURN_IF_ERROR(LearnRoundingOnDevice(blas, stream, AdaRoundSliceProblem(p, slice), options, part));
    result.learned.insert(result.learned.end(), part.learned.begin(), part.learned.end());
    result.initial_losses.insert(result.initial_losses.end(), part.initial_losses.begin(), part.initial_losses.end());
    result.learned_losses.insert(result.learned_losses.end(), part.learned_losses.begin(), part.learned_losses.end());
  }
  return CudaStatus();
}

}  // namespace qshard::gpu
