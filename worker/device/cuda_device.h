// A CUDA device opened by a worker (`--device cuda[:N]`): it runs the worker's calibration
// forward passes over the shards it holds, accumulates their statistics and runs its GPTQ
// solves and aespa's AdaRound, as each job's DevicePlan (device_support.h) says. The implementation is worker/cuda,
// built when nvcc is found into the CUDA plugin that worker/device/plugin loads (cuda_plugin.h);
// a build without CUDA has only worker/device/no_cuda, whose OpenCudaDevice says so.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/calibration/statistics_device.h"
#include "absl/strings/str_cat.h"
#include "worker/device/device.h"
#include "worker/device/device_model.h"
#include "worker/device/forward_device.h"
#include "worker/methods/rounding_learner.h"
#include "worker/model/decoder_model.h"
#include "worker/solvers/solver.h"

namespace qshard {

class CudaDevice : public StatisticsDevice {
 public:
  virtual const Device& device() const = 0;
  // "cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB, compute 9.0, CUDA runtime 13000, driver 13000)".
  virtual std::string Describe() const = 0;
  // GPTQ on the device for a job whose DevicePlan solves there, with the CPU solver's results
  // (codes, grids, g_idx, damping, objective; packed by worker/quant/gptq_pack like the CPU's).
  virtual absl::StatusOr<std::unique_ptr<Solver>> MakeGptqSolver(const QuantSpec& spec) = 0;
  // aespa's AdaRound on the device for a job whose DevicePlan rounds there: LearnRoundingCandidates'
  // algorithm and options, its codes up to float summation orders (kernels/cuda/adaround_device.h).
  virtual absl::StatusOr<std::unique_ptr<RoundingLearner>> MakeRoundingLearner() {
    return absl::UnimplementedError(absl::StrCat(DeviceName(device()), ": no AdaRound on this device"));
  }
  // The calibration forward pass of one job over `model`'s layers, windows of `seqlen` tokens;
  // UNIMPLEMENTED for a layer the device cannot compute. `statistics`: the sums the job's passes
  // collect at once (its propagation; aespa's attention statistics), which the device must leave
  // room for beside each layer; RESOURCE_EXHAUSTED, before any work, when a layer's needs cannot
  // fit the device at all.
  virtual absl::StatusOr<std::unique_ptr<ForwardDevice>> NewForward(const DecoderModel& model, int64_t seqlen,
                                                                    const ForwardStatistics& statistics) = 0;
  // An empty model for evaluation with `model`'s configuration, final norm and head (uploaded
  // now), to be filled layer by layer (device_model.h). UNIMPLEMENTED where the device has none.
  virtual absl::StatusOr<std::unique_ptr<DeviceModel>> NewModel(const DecoderModel& model, PackedLinearKernels kernels) {
    return absl::UnimplementedError(absl::StrCat(DeviceName(device()), ": no evaluation model on this device"));
  }
};

// Whether this build has the CUDA side (worker/cuda).
bool BuiltWithCuda();

// Opens CUDA device `index` for this process, which may use `memory_bytes` of its memory (0: all;
// Device::memory_bytes). Without CUDA in the build: UNIMPLEMENTED "this build has no CUDA
// support"; the CUDA plugin missing or not loadable: FAILED_PRECONDITION naming it and why; no
// such device (no GPU, no driver, ordinal too large): FAILED_PRECONDITION "no CUDA device ..."
// with the CUDA error's name and text; a budget the device's session takes whole on opening:
// INVALID_ARGUMENT naming --device-memory.
absl::StatusOr<std::shared_ptr<CudaDevice>> OpenCudaDevice(int index, uint64_t memory_bytes = 0);

// The worker's device opened (with its memory_bytes): null on the CPU.
absl::StatusOr<std::shared_ptr<CudaDevice>> OpenDevice(const Device& device);

}  // namespace qshard
