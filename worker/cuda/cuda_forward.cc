#include "worker/cuda/cuda_forward.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/layer_forward.h"
#include "worker/cuda/cuda_status_adapter.h"
#include "worker/cuda/device_layer_slots.h"
#include "worker/model/layer_spec.h"

namespace qshard {
namespace {

using gpu::DeviceLayerWeights;

class CudaForward final : public ForwardDevice {
 public:
  CudaForward(std::shared_ptr<CudaSession> session, const ModelConfig& config, const gpu::LayerArchitecture& arch,
              int64_t seqlen, const DeviceMemoryPlan& plan)
      : session_(std::move(session)),
        spec_(DecoderLayerSpec(config)),
        linears_(LinearSlots(spec_, arch.llama())),
        norms_(NormSlots(spec_, arch.llama())),
        seqlen_(seqlen),
        plan_(plan),
        what_(absl::StrCat("the forward pass on cuda:", session_->index())) {
    weights_.arch = arch;
  }
  ~CudaForward() override { session_->MakeCurrent(); }  // the buffers are freed on their device

  absl::Status HoldShard(int shard, const Tensor& hidden) override {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    Held& held = shards_[shard];
    held = Held();
    held.rows = hidden.rows();
    if (hidden.size() == 0) return absl::OkStatus();
    const size_t bytes = hidden.size() * sizeof(float);
    QSHARD_ASSIGN_OR_RETURN(const size_t free, session_->FreeBytes(what_.c_str()));
    // Spilled: kept in host memory when holding it would leave too little for a layer.
    if (!HoldsOnDevice(plan_, bytes, free)) {
      held.host.assign(hidden.data(), hidden.data() + hidden.size());
      return absl::OkStatus();
    }
    QSHARD_RETURN_IF_ERROR(Check(held.device.Allocate(hidden.size())));
    return session_->Copy(held.device.get(), hidden.data(), bytes, cudaMemcpyHostToDevice, what_.c_str());
  }

  absl::Status ReadShard(int shard, Tensor& hidden) override {
    QSHARD_ASSIGN_OR_RETURN(Held * held, Find(shard));
    if (hidden.rows() != held->rows || hidden.cols() != weights_.arch.hidden)
      return absl::InternalError(absl::StrCat(what_, ": shard ", shard, " read into a tensor of the wrong shape"));
    if (!held->host.empty() || held->rows == 0) {
      std::copy(held->host.begin(), held->host.end(), hidden.data());
      return absl::OkStatus();
    }
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    return session_->Copy(hidden.data(), held->device.get(), hidden.size() * sizeof(float), cudaMemcpyDeviceToHost,
                          what_.c_str());
  }

  absl::Status LoadLayer(int layer, const DecoderLayerWeights& weights) override {
    std::vector<std::string> all;
    for (const LinearSlot& slot : linears_) all.push_back(slot.name);
    QSHARD_RETURN_IF_ERROR(UpdateLinears(weights, all));
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    for (const NormSlot& slot : norms_) {
      auto it = weights.norms.find(slot.name);
      if (it == weights.norms.end()) return absl::InternalError(absl::StrCat(what_, ": the layer has no ", slot.name));
      QSHARD_ASSIGN_OR_RETURN(weights_.*slot.field, Upload(slot.name, it->second, weights_.arch.hidden));
    }
    return Check(gpu::ValidateDeviceLayer(weights_));
  }

  absl::Status UpdateLinears(const DecoderLayerWeights& weights, const std::vector<std::string>& linears) override {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    for (const std::string& name : linears) {
      const auto slot =
          std::find_if(linears_.begin(), linears_.end(), [&](const LinearSlot& s) { return s.name == name; });
      const auto spec = std::find_if(spec_.linears.begin(), spec_.linears.end(),
                                     [&](const LinearSpec& s) { return s.name == name; });
      auto it = weights.linears.find(name);
      if (slot == linears_.end() || spec == spec_.linears.end() || it == weights.linears.end())
        return absl::InternalError(absl::StrCat(what_, ": no linear '", name, "' in the layer"));
      if (it->second.kernel != nullptr)
        return absl::InternalError(absl::StrCat(what_, ": ", name, " is packed; the device takes float weights"));
      gpu::DeviceLinear& linear = weights_.*slot->field;
      QSHARD_ASSIGN_OR_RETURN(linear.weight,
                              Upload(name + ".weight", it->second.weight, spec->out_features * spec->in_features));
      linear.bias = nullptr;
      if (spec->has_bias) {
        QSHARD_ASSIGN_OR_RETURN(linear.bias, Upload(name + ".bias", it->second.bias, spec->out_features));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Run(int shard, const ForwardPass& pass, const std::array<OffHostHessianSum*, 4>& sums,
                   OffHostAttentionStats* attention) override {
    if ((pass.first != 0 && pass.first != 2) || pass.last < pass.first || pass.last > 3)
      return absl::InternalError(absl::StrCat(what_, ": no pass over groups ", pass.first, "..", pass.last));
    if (attention != nullptr && pass.first != 0)
      return absl::InternalError(absl::StrCat(what_, ": attention statistics from a pass without group 0"));
    QSHARD_ASSIGN_OR_RETURN(Held * held, Find(shard));
    bool changes = false;  // whether the pass adds an output to the residual
    for (int g = pass.first; g <= pass.last; ++g) changes |= AddsOutput(pass, g);
    const int64_t width = weights_.arch.hidden, window_floats = seqlen_ * width;
    for (int64_t start = 0; start < held->rows; start += seqlen_) {
      float* residual = nullptr;
      {
        QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
        if (held->host.empty()) {
          residual = held->device.get() + start * width;
        } else {
          if (staging_.size() < static_cast<size_t>(window_floats))
            QSHARD_RETURN_IF_ERROR(Check(staging_.Allocate(window_floats)));
          residual = staging_.get();
          QSHARD_RETURN_IF_ERROR(Check([&]() -> gpu::CudaStatus {
            QSHARD_CUDA_TRY(cudaMemcpyAsync(residual, held->host.data() + start * width, window_floats * sizeof(float),
                                            cudaMemcpyHostToDevice, session_->stream()));
            return gpu::CudaStatus();
          }()));
        }
      }
      for (int g = pass.first; g <= pass.last; ++g) {
        const auto group = static_cast<gpu::LayerGroup>(g);
        {
          QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
          QSHARD_RETURN_IF_ERROR(Check(gpu::ComputeGroupInputOnDevice(session_->context(), weights_, group, residual,
                                                                      seqlen_, scratch_)));
        }
        // The sum's product is queued on the same stream, after the input it reads.
        if (sums[g] != nullptr)
          QSHARD_RETURN_IF_ERROR(sums[g]->AddResidentWindows(scratch_.group_input(group), seqlen_, seqlen_));
        // aespa's statistics read group 0's input and the q/k of group 1's attention, computed
        // here when the pass stops at group 0 (the attention output is then unused).
        if (attention != nullptr && g == std::min(pass.last, 1)) {
          if (g == 0) {
            QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
            QSHARD_RETURN_IF_ERROR(Check(gpu::ComputeGroupInputOnDevice(
                session_->context(), weights_, gpu::LayerGroup::kOutInput, residual, seqlen_, scratch_)));
          }
          QSHARD_RETURN_IF_ERROR(attention->AddResidentWindow(scratch_.group_input(gpu::LayerGroup::kAttentionInput),
                                                              scratch_.attention_queries(),
                                                              scratch_.attention_keys()));
        }
        if (AddsOutput(pass, g)) {
          QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
          QSHARD_RETURN_IF_ERROR(Check(
              gpu::AddGroupOutputOnDevice(session_->context(), weights_, group, residual, seqlen_, scratch_)));
        }
      }
      if (!held->host.empty() && changes) {
        QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
        QSHARD_RETURN_IF_ERROR(session_->Copy(held->host.data() + start * width, residual,
                                              window_floats * sizeof(float), cudaMemcpyDeviceToHost, what_.c_str()));
      }
    }
    return absl::OkStatus();
  }

  DeviceMemoryPlan MemoryPlan() const override {
    DeviceMemoryPlan plan = plan_;
    for (const auto& [shard, held] : shards_) {
      if (held.rows == 0) continue;
      ++(held.host.empty() ? plan.shards_on_device : plan.shards_in_host);
    }
    return plan;
  }

 private:
  // A shard's hidden states [rows, hidden]: on the device, or (spilled) in host memory.
  struct Held {
    int64_t rows = 0;
    gpu::DeviceBuffer<float> device;
    std::vector<float> host;
  };

  absl::Status Check(const gpu::CudaStatus& status) const { return FromCudaStatus(status, what_); }

  absl::StatusOr<Held*> Find(int shard) {
    auto it = shards_.find(shard);
    if (it == shards_.end()) return absl::InternalError(absl::StrCat(what_, ": shard ", shard, " is not held"));
    return &it->second;
  }

  // `tensor` ([count] floats) into the device buffer kept under `key`; the caller holds the lock.
  absl::StatusOr<const float*> Upload(const std::string& key, const Tensor& tensor, int64_t count) {
    if (tensor.size() != count)
      return absl::InternalError(absl::StrCat(what_, ": ", key, " has ", tensor.size(), " values, not ", count));
    gpu::DeviceBuffer<float>& buffer = tensors_[key];
    if (buffer.size() != static_cast<size_t>(count)) QSHARD_RETURN_IF_ERROR(Check(buffer.Allocate(count)));
    QSHARD_RETURN_IF_ERROR(session_->Copy(buffer.get(), tensor.data(), count * sizeof(float), cudaMemcpyHostToDevice,
                                          what_.c_str()));
    return buffer.get();
  }

  std::shared_ptr<CudaSession> session_;
  LayerSpec spec_;
  std::vector<LinearSlot> linears_;
  std::vector<NormSlot> norms_;
  int64_t seqlen_;
  DeviceMemoryPlan plan_;  // made at the job's start; layer_bytes is what held shards leave free
  std::string what_;
  std::map<std::string, gpu::DeviceBuffer<float>> tensors_;  // the layer's weights, by name
  DeviceLayerWeights weights_;                                // pointers into tensors_
  std::map<int, Held> shards_;
  gpu::LayerForwardScratch scratch_;
  gpu::DeviceBuffer<float> staging_;  // one window of a spilled shard
};

}  // namespace

absl::StatusOr<DeviceMemoryPlan> PlanForwardNow(CudaSession& session, const ModelConfig& config, int64_t seqlen,
                                                const ForwardStatistics& statistics) {
  QSHARD_ASSIGN_OR_RETURN(auto lock, session.Enter());
  QSHARD_ASSIGN_OR_RETURN(const size_t free, session.FreeBytes("the forward pass's memory"));
  absl::StatusOr<DeviceMemoryPlan> plan = PlanDeviceMemory(config, seqlen, statistics, session.index(), free);
  if (!plan.ok()) return session.WithBudget(plan.status());
  return plan;
}

absl::StatusOr<std::unique_ptr<ForwardDevice>> NewCudaForward(std::shared_ptr<CudaSession> session,
                                                             const ModelConfig& config, int64_t seqlen,
                                                             const DeviceMemoryPlan& plan) {
  QSHARD_ASSIGN_OR_RETURN(const gpu::LayerArchitecture arch, LayerArchitectureOf(config));
  return std::make_unique<CudaForward>(std::move(session), config, arch, seqlen, plan);
}

}  // namespace qshard
