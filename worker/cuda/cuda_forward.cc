#include "worker/cuda/cuda_forward.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/layer_forward.h"
#include "worker/cuda/cuda_attention_stats.h"
#include "worker/cuda/cuda_status_adapter.h"
#include "worker/cuda/device_layer_slots.h"
#include "worker/model/layer_spec.h"

namespace qshard {
namespace {

using gpu::DeviceLayerWeights;

// Key/value heads per slice when at most `fitting` (≥ 1) of `all` fit at once: the fewest slices,
// as even as they go (96 heads with 56 fitting: two slices of 48).
int64_t EvenSlice(int64_t all, int64_t fitting) {
  const int64_t slices = (all + fitting - 1) / fitting;
  return (all + slices - 1) / slices;
}

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
    if (bytes + plan_.layer_bytes > free) {
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

absl::StatusOr<gpu::LayerArchitecture> LayerArchitectureOf(const ModelConfig& c) {
  const bool llama = c.arch == Architecture::kLlama;
  gpu::LayerArchitecture a;
  a.kind = llama ? gpu::LayerKind::kLlama : gpu::LayerKind::kOpt;
  a.hidden = c.hidden_size;
  a.ffn = c.intermediate_size;
  a.heads = c.num_heads;
  a.kv_heads = c.num_kv_heads;
  a.head_dim = c.head_dim;
  a.norm_eps = llama ? c.rms_norm_eps : c.layer_norm_eps;
  a.norm_before = llama || c.do_layer_norm_before;
  a.rope_theta = c.rope_theta;
  a.attention_bias = llama ? c.attention_bias : c.enable_bias;
  a.mlp_bias = llama ? c.mlp_bias : c.enable_bias;
  if (const gpu::CudaStatus valid = gpu::ValidateLayerArchitecture(a); !valid.ok())
    return absl::UnimplementedError(
        absl::StrCat("the device forward pass cannot compute this model's layers: ", valid.message()));
  return a;
}

size_t LayerDeviceBytes(const ModelConfig& config, int64_t seqlen, const ForwardStatistics& statistics,
                        int64_t value_heads) {
  const LayerSpec spec = DecoderLayerSpec(config);
  size_t weights = 0, solve = 0;
  for (const LinearSpec& l : spec.linears) {
    const size_t in = l.in_features, out = l.out_features;
    weights += 4 * (in * out + (l.has_bias ? out : 0));
    // The sum, the float64 factor and the float32 coefficients; then the sum, the coefficients
    // and the sweep's buffers (docs/cuda.md, "Calibration statistics and GPTQ on the device").
    solve = std::max({solve, 20 * in * in, 12 * in * in + 16 * in * out});
  }
  for (const NormSpec& n : spec.norms) weights += 4 * static_cast<size_t>(n.size);
  // A group's sum and its window product's scratch (cuda_hessian_sum.h), per group in order.
  const int64_t widths[] = {config.hidden_size, config.num_heads * config.head_dim, config.hidden_size,
                            config.intermediate_size};
  size_t sums = 0;
  for (size_t g = 0; g < std::size(widths); ++g) {
    size_t group = 12 * static_cast<size_t>(widths[g]) * static_cast<size_t>(widths[g]);
    if (g == 0 && statistics.attention) group += AttentionStatsDeviceBytes(config, seqlen, value_heads);
    sums = statistics.all_groups ? sums + group : std::max(sums, group);
  }
  const auto arch = LayerArchitectureOf(config);
  const size_t scratch = arch.ok() ? gpu::LayerForwardScratchBytes(*arch, seqlen) : 0;
  const size_t staging = 4 * static_cast<size_t>(seqlen * config.hidden_size);
  return weights + scratch + staging + std::max(sums, solve);
}

size_t LayerDeviceBytes(const ModelConfig& config, int64_t seqlen, const ForwardStatistics& statistics) {
  return LayerDeviceBytes(config, seqlen, statistics, config.num_kv_heads);
}

absl::StatusOr<int64_t> ValueHeadsPerPass(const ModelConfig& config, int64_t seqlen,
                                          const ForwardStatistics& statistics, int index, size_t free) {
  const int64_t all = config.num_kv_heads;
  if (!statistics.attention || LayerDeviceBytes(config, seqlen, statistics) <= free) return all;
  // The bound grows with the heads held at once. Room for the slices' even size, not for the most
  // that fit, leaves the rest to hidden states at no extra slice.
  for (int64_t heads = all - 1; heads > 0; --heads)
    if (LayerDeviceBytes(config, seqlen, statistics, heads) <= free) return EvenSlice(all, heads);
  // Not even one head's beside the layer's largest solve or sums: refused before any work.
  return absl::ResourceExhaustedError(absl::StrFormat(
      "aespa on cuda:%d: a layer needs %.2f GB of device memory under %s besides the calibration hidden states "
      "with one key/value head's attention statistics at a time (a %d × %d float64 sum per head; all %d heads' at "
      "once would take %.2f GB), and %.2f GB are free: use --device cpu, or a device with more memory",
      index, LayerDeviceBytes(config, seqlen, statistics, 1) / 1e9,
      statistics.all_groups ? "parallel propagation (every group's statistics at once)"
                            : "sequential propagation (one group's statistics at a time)",
      config.hidden_size, config.hidden_size, all, AttentionStatsDeviceBytes(config, seqlen) / 1e9, free / 1e9));
}

absl::StatusOr<DeviceMemoryPlan> PlanForwardNow(CudaSession& session, const ModelConfig& config, int64_t seqlen,
                                                const ForwardStatistics& statistics) {
  QSHARD_ASSIGN_OR_RETURN(auto lock, session.Enter());
  QSHARD_ASSIGN_OR_RETURN(const size_t free, session.FreeBytes("the forward pass's memory"));
  absl::StatusOr<int64_t> heads = ValueHeadsPerPass(config, seqlen, statistics, session.index(), free);
  if (!heads.ok()) return session.WithBudget(heads.status());
  DeviceMemoryPlan plan;
  plan.free_bytes = free;
  plan.layer_bytes = LayerDeviceBytes(config, seqlen, statistics, *heads);
  plan.kv_heads = statistics.attention ? config.num_kv_heads : 0;
  plan.value_heads = *heads;
  return plan;
}

absl::StatusOr<std::unique_ptr<ForwardDevice>> NewCudaForward(std::shared_ptr<CudaSession> session,
                                                             const ModelConfig& config, int64_t seqlen,
                                                             const DeviceMemoryPlan& plan) {
  QSHARD_ASSIGN_OR_RETURN(const gpu::LayerArchitecture arch, LayerArchitectureOf(config));
  return std::make_unique<CudaForward>(std::move(session), config, arch, seqlen, plan);
}

}  // namespace qshard
