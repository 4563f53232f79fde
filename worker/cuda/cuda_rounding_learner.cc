#include "worker/cuda/cuda_rounding_learner.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/cuda/adaround_device.h"
#include "kernels/cuda/adaround_slices.h"
#include "worker/cuda/cuda_status_adapter.h"
#include "worker/device/cuda_device_memory.h"

namespace qshard {
namespace {

// Float copies of float64 matrices, as the CPU's descent makes them (adaround_rounding.cc).
std::vector<std::vector<float>> FloatCopies(const std::vector<const std::vector<double>*>& matrices) {
  std::vector<std::vector<float>> copies;
  for (const std::vector<double>* m : matrices) copies.emplace_back(m->begin(), m->end());
  return copies;
}

class CudaRoundingLearner final : public RoundingLearner {
 public:
  explicit CudaRoundingLearner(std::shared_ptr<CudaSession> session) : session_(std::move(session)) {}

  absl::StatusOr<RoundingCandidates> Learn(const RoundingProblem& problem, const AdaRoundOptions& options) const override {
    const int64_t out = problem.weight->dim(0), in = problem.weight->dim(1);
    gpu::AdaRoundDeviceOptions device_options;
    device_options.iters = options.iters;
    device_options.learning_rate = options.learning_rate;
    device_options.lambda = options.lambda;
    device_options.warmup = options.warmup;
    device_options.beta_start = options.beta_start;
    device_options.beta_end = options.beta_end;

    const RoundingStart start = RoundingStartOf(problem);
    const std::vector<std::vector<float>> hessians = FloatCopies(problem.hessians);
    const std::vector<std::vector<float>> weightings = FloatCopies(problem.output_weightings);
    gpu::AdaRoundDeviceProblem device;
    device.rows = out;
    device.cols = in;
    device.max_code = start.max_code;
    device.step = start.step.data();
    device.zero = start.zero.data();
    device.floor_level = start.floor_level.data();
    device.variables = start.variables.data();
    device.weight = problem.weight->data();
    device.initial_codes = problem.initial->codes.data();
    for (const std::vector<float>& h : hessians) device.hessians.push_back(h.data());
    for (const std::vector<float>& g : weightings) device.weightings.push_back(g.data());
    if (const gpu::CudaStatus valid = gpu::ValidateAdaRoundDeviceProblem(device, device_options); !valid.ok())
      return absl::InvalidArgumentError(valid.message());

    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    // The whole problem where it fits the free memory, else the fewest slices of heads or blocks
    // that do (kernels/cuda/adaround_slices.h: on a GPU another slicing may change bits).
    QSHARD_ASSIGN_OR_RETURN(const size_t free, session_->FreeBytes("AdaRound on the device"));
    std::vector<gpu::AdaRoundSlice> slices;
    if (!gpu::PlanAdaRoundSlices(device, free, slices).ok())
      return session_->WithBudget(absl::ResourceExhaustedError(AdaRoundRefusal(device, session_->index(), free)));
    gpu::AdaRoundDeviceResult learned;
    QSHARD_RETURN_IF_ERROR(FromCudaStatus(gpu::LearnRoundingInSlices(session_->context().blas(), session_->stream(),
                                                                     device, slices, device_options, learned),
                                          absl::StrCat("AdaRound on ", session_->description())));
    RoundingCandidates candidates;
    candidates.learned = std::move(learned.learned);
    candidates.initial_losses = std::move(learned.initial_losses);
    candidates.learned_losses = std::move(learned.learned_losses);
    return candidates;
  }

 private:
  std::shared_ptr<CudaSession> session_;
};

}  // namespace

std::unique_ptr<RoundingLearner> MakeCudaRoundingLearner(std::shared_ptr<CudaSession> session) {
  return std::make_unique<CudaRoundingLearner>(std::move(session));
}

}  // namespace qshard
