// The CUDA plugin's entry point (libqshard_cuda_plugin.so, worker/device/cuda_plugin.h): a
// CudaDevice over one CudaSession, handing out the device forward pass, device sums for the
// statistics (aespa's attention statistics too), the device GPTQ solver, aespa's AdaRound and the
// evaluation model.
// The program loads this only for --device cuda.
#include <atomic>
#include <limits>

#include "core/status.h"
#include "worker/cuda/cuda_attention_stats.h"
#include "worker/cuda/cuda_forward.h"
#include "worker/cuda/cuda_gptq_solver.h"
#include "worker/cuda/cuda_hessian_sum.h"
#include "worker/cuda/cuda_model.h"
#include "worker/cuda/cuda_rounding_learner.h"
#include "worker/cuda/cuda_session.h"
#include "worker/device/cuda_plugin.h"

namespace qshard {
namespace {

class OpenedCudaDevice final : public CudaDevice {
 public:
  explicit OpenedCudaDevice(std::shared_ptr<CudaSession> session)
      : session_(std::move(session)), device_{Device::Kind::kCuda, session_->index()} {}

  const Device& device() const override { return device_; }
  std::string Describe() const override { return session_->description(); }
  absl::StatusOr<std::unique_ptr<OffHostHessianSum>> NewHessianSum(int64_t dim) override {
    return NewCudaHessianSum(session_, dim);
  }
  absl::StatusOr<std::unique_ptr<Solver>> MakeGptqSolver(const QuantSpec& spec) override {
    return MakeCudaGptqSolver(session_, spec);
  }
  absl::StatusOr<std::unique_ptr<RoundingLearner>> MakeRoundingLearner() override {
    return MakeCudaRoundingLearner(session_);
  }
  absl::StatusOr<std::unique_ptr<OffHostAttentionStats>> NewAttentionStats(const ModelConfig& config,
                                                                         int64_t seq) override {
    return NewCudaAttentionStats(session_, config, seq, value_heads_per_pass_);
  }
  absl::StatusOr<std::unique_ptr<ForwardDevice>> NewForward(const DecoderModel& model, int64_t seqlen,
                                                            const ForwardStatistics& statistics) override {
    QSHARD_ASSIGN_OR_RETURN(const DeviceMemoryPlan plan, PlanForwardNow(*session_, model.config(), seqlen, statistics));
    value_heads_per_pass_ = plan.value_heads;
    return NewCudaForward(session_, model.config(), seqlen, plan);
  }
  absl::StatusOr<std::unique_ptr<DeviceModel>> NewModel(const DecoderModel& model, PackedLinearKernels kernels) override {
    return NewCudaModel(session_, model, kernels);
  }

 private:
  std::shared_ptr<CudaSession> session_;
  Device device_;
  // The job's attention statistics hold the values' sums of this many key/value heads at a time,
  // the number its forward pass's bound made room for at the job's start (one job at a time).
  std::atomic<int64_t> value_heads_per_pass_ = std::numeric_limits<int64_t>::max();
};

absl::StatusOr<std::shared_ptr<CudaDevice>> OpenSessionDevice(int index, uint64_t memory_bytes) {
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<CudaSession> session, CudaSession::Open(index, memory_bytes));
  return std::shared_ptr<CudaDevice>(new OpenedCudaDevice(std::move(session)));
}

}  // namespace
}  // namespace qshard

// This file is compiled with hidden visibility (tools/qshard/CMakeLists.txt) and the static
// libraries' symbols are kept local: this is the only symbol the plugin exports.
extern "C" __attribute__((visibility("default"))) const qshard::CudaPluginV1* qshard_cuda_plugin_v1() {
  static const qshard::CudaPluginV1 plugin{qshard::kCudaPluginAbi, __VERSION__, &qshard::OpenSessionDevice};
  return &plugin;
}
