#include "worker/cuda/cuda_model.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "kernels/cuda/attention_device.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/layer_forward.h"
#include "kernels/cuda/layer_ops_device.h"
#include "kernels/cuda/quantized_linear_device.h"
#include "worker/cuda/cuda_forward.h"
#include "worker/cuda/cuda_linear_choice.h"
#include "worker/cuda/cuda_status_adapter.h"
#include "worker/cuda/device_layer_slots.h"

namespace qshard {
namespace {

// One layer on the device: its float tensors by name, its quantized linears, and the pointers
// the layer forward reads.
struct Layer {
  std::map<std::string, gpu::DeviceBuffer<float>> tensors;
  std::vector<std::unique_ptr<gpu::DeviceLinearKernel>> kernels;
  gpu::DeviceLayerWeights weights;
  gpu::DeviceBuffer<float> k_cache, v_cache;  // decoding: [positions, kv_width] each, made on first use
};

class CudaModel final : public DeviceModel {
 public:
  CudaModel(std::shared_ptr<CudaSession> session, const DecoderModel& model, const gpu::LayerArchitecture& arch,
            PackedLinearKernels kernels)
      : session_(std::move(session)),
        config_(model.config()),
        spec_(DecoderLayerSpec(config_)),
        arch_(arch),
        kernels_(kernels),
        linears_(LinearSlots(spec_, arch.llama())),
        norms_(NormSlots(spec_, arch.llama())),
        what_(absl::StrCat("the evaluation model on cuda:", session_->index())) {}
  ~CudaModel() override { session_->MakeCurrent(); }  // the buffers are freed on their device

  // The final norm, project_out and head, once.
  absl::Status LoadHead(const DecoderModel& model) {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    if (model.final_norm_weight().size() > 0) {
      QSHARD_ASSIGN_OR_RETURN(final_norm_weight_, Upload(head_tensors_["norm.weight"], model.final_norm_weight(),
                                                         arch_.hidden, "the final norm"));
    }
    if (model.final_norm_bias().size() > 0) {
      QSHARD_ASSIGN_OR_RETURN(final_norm_bias_, Upload(head_tensors_["norm.bias"], model.final_norm_bias(),
                                                       arch_.hidden, "the final norm"));
    }
    const Linear& project_out = model.project_out();
    if (project_out.weight.size() > 0) {
      if (project_out.has_bias()) return absl::UnimplementedError(absl::StrCat(what_, ": project_out has a bias"));
      QSHARD_ASSIGN_OR_RETURN(project_out_, Upload(head_tensors_["project_out"], project_out.weight,
                                                   arch_.hidden * project_out.weight.dim(0), "project_out"));
    }
    head_rows_ = model.head().dim(0);
    head_cols_ = model.head().dim(1);
    if (head_cols_ != (project_out_ != nullptr ? project_out.weight.dim(0) : arch_.hidden))
      return absl::InternalError(absl::StrCat(what_, ": the head's width does not match"));
    QSHARD_ASSIGN_OR_RETURN(head_, Upload(head_tensors_["head"], model.head(), head_rows_ * head_cols_, "the head"));
    return absl::OkStatus();
  }

  absl::Status LoadLayer(int index, const DeviceModelLayer& host) override {
    if (index != static_cast<int>(layers_.size()))
      return absl::InternalError(absl::StrCat(what_, ": layer ", index, " loaded out of order"));
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    Layer& layer = layers_.emplace_back();
    layer.weights.arch = arch_;
    for (const LinearSlot& slot : linears_) {
      const auto spec = std::find_if(spec_.linears.begin(), spec_.linears.end(),
                                     [&](const LinearSpec& s) { return s.name == slot.name; });
      const auto linear = host.weights.linears.find(slot.name);
      if (spec == spec_.linears.end() || linear == host.weights.linears.end())
        return absl::InternalError(absl::StrCat(what_, ": layer ", index, " has no linear '", slot.name, "'"));
      const auto packed_it = host.packed.find(slot.name);
      const GptqLinearTensors* packed = packed_it == host.packed.end() ? nullptr : &packed_it->second;
      const std::string name = absl::StrCat("layer ", index, " ", slot.name);
      QSHARD_ASSIGN_OR_RETURN(const CudaLinearKernel kernel, ChooseCudaLinear(name, packed, kernels_));
      gpu::DeviceLinear& device = layer.weights.*slot.field;
      if (packed != nullptr && (packed->in_features != spec->in_features || packed->out_features != spec->out_features))
        return absl::InvalidArgumentError(absl::StrCat(name, ": packed [in ", packed->in_features, ", out ",
                                                       packed->out_features, "], expected [in ", spec->in_features,
                                                       ", out ", spec->out_features, "]"));
      QSHARD_RETURN_IF_ERROR(LoadLinear(kernel, linear->second, packed, name, *spec, layer, device));
      if (spec->has_bias) {
        QSHARD_ASSIGN_OR_RETURN(device.bias, Upload(layer.tensors[slot.name + ".bias"], linear->second.bias,
                                                    spec->out_features, name + ".bias"));
      }
      used_[CudaLinearKernelName(kernel, packed != nullptr ? packed->bits : 32, 1)].insert(slot.name);
    }
    for (const NormSlot& slot : norms_) {
      const auto it = host.weights.norms.find(slot.name);
      if (it == host.weights.norms.end())
        return absl::InternalError(absl::StrCat(what_, ": layer ", index, " has no ", slot.name));
      const auto norm =
          std::find_if(spec_.norms.begin(), spec_.norms.end(), [&](const NormSpec& n) { return n.name == slot.name; });
      QSHARD_ASSIGN_OR_RETURN(layer.weights.*slot.field,
                              Upload(layer.tensors[slot.name], it->second, norm->size, slot.name));
    }
    return Check(gpu::ValidateDeviceLayer(layer.weights));
  }

  absl::StatusOr<Tensor> Logits(const Tensor& hidden, int64_t rows) override {
    const int64_t tokens = hidden.rows();
    if (rows < 1 || rows > tokens) return absl::InternalError(absl::StrCat(what_, ": ", rows, " rows of logits"));
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    QSHARD_RETURN_IF_ERROR(UploadHidden(hidden));
    for (const Layer& layer : layers_)
      QSHARD_RETURN_IF_ERROR(Check(gpu::RunLayerForwardOnDevice(session_->context(), layer.weights, hidden_.get(),
                                                                hidden_.get(), tokens, scratch_)));
    return Head(hidden_.get(), rows);
  }

  absl::StatusOr<Tensor> NextLogits(const Tensor& hidden) override {
    const int64_t tokens = hidden.rows();
    const int64_t positions = std::min<int64_t>(config_.max_positions, gpu::kCachedAttentionMaxKeys);
    if (cached_ + tokens > positions)
      return absl::OutOfRangeError(
          absl::StrCat(what_, ": ", cached_ + tokens, " positions exceed the cache's ", positions));
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    const int64_t cache_floats = positions * arch_.kv_width();
    QSHARD_RETURN_IF_ERROR(UploadHidden(hidden));
    for (Layer& layer : layers_) {
      QSHARD_RETURN_IF_ERROR(Check(Grow(layer.k_cache, cache_floats)));
      QSHARD_RETURN_IF_ERROR(Check(Grow(layer.v_cache, cache_floats)));
      QSHARD_RETURN_IF_ERROR(
          Check(gpu::RunLayerCachedOnDevice(session_->context(), layer.weights, hidden_.get(), tokens, cached_,
                                            layer.k_cache.get(), layer.v_cache.get(), scratch_)));
    }
    cached_ += tokens;
    return Head(hidden_.get() + (tokens - 1) * arch_.hidden, 1);
  }

  void ResetCache() override { cached_ = 0; }

  std::string Describe() const override {
    std::vector<std::string> parts;
    for (const auto& [kernel, names] : used_) parts.push_back(absl::StrCat(absl::StrJoin(names, ","), ": ", kernel));
    std::string text = absl::StrJoin(parts, "; ");
    if (kernels_ == PackedLinearKernels::kWeightOnly && used_.size() > used_.count("fp32-cublas"))
      absl::StrAppend(&text, " (windows over ", kFusedMaxTokens,
                      " tokens: dequantized to fp16 on the device + cuBLAS)");
    return text;
  }

 private:
  // Checks that every layer is loaded and `hidden` [tokens, hidden] is a model's input, then copies
  // it into hidden_; the caller holds the session's lock.
  absl::Status UploadHidden(const Tensor& hidden) {
    if (static_cast<int>(layers_.size()) != config_.num_layers || head_ == nullptr)
      return absl::InternalError(
          absl::StrCat(what_, ": ", layers_.size(), " of ", config_.num_layers, " layers loaded"));
    if (hidden.cols() != arch_.hidden || hidden.rows() < 1)
      return absl::InternalError(absl::StrCat(what_, ": hidden states of the wrong shape"));
    QSHARD_RETURN_IF_ERROR(Check(Grow(hidden_, hidden.size())));
    return session_->Copy(hidden_.get(), hidden.data(), hidden.size() * sizeof(float), cudaMemcpyHostToDevice,
                          what_.c_str());
  }

  // DecoderModel::Logits on `rows` hidden rows at `hidden` (device): the final norm (RMSNorm, or
  // OPT's LayerNorm where it has one), OPT's project_out, the head; the logits to the host. The
  // caller holds the session's lock.
  absl::StatusOr<Tensor> Head(const float* hidden, int64_t rows) {
    const cudaStream_t stream = session_->stream();
    QSHARD_RETURN_IF_ERROR(Check(Grow(normed_, rows * arch_.hidden)));
    QSHARD_RETURN_IF_ERROR(Check(Grow(projected_, rows * head_cols_)));
    QSHARD_RETURN_IF_ERROR(Check(Grow(logits_, rows * head_rows_)));
    const float* x = hidden;
    if (arch_.llama()) {
      QSHARD_RETURN_IF_ERROR(
          Check(gpu::RmsNormRows(x, final_norm_weight_, arch_.norm_eps, rows, arch_.hidden, normed_.get(), stream)));
      x = normed_.get();
    } else if (final_norm_weight_ != nullptr) {
      QSHARD_RETURN_IF_ERROR(Check(gpu::LayerNormRows(x, final_norm_weight_, final_norm_bias_, arch_.norm_eps, rows,
                                                      arch_.hidden, normed_.get(), stream)));
      x = normed_.get();
    }
    if (project_out_ != nullptr) {
      QSHARD_RETURN_IF_ERROR(
          Check(gpu::LinearForward(session_->context().blas(), stream, project_out_, nullptr, head_cols_, arch_.hidden,
                                   x, rows, projected_.get(), false, gpu::Activation::kNone)));
      x = projected_.get();
    }
    QSHARD_RETURN_IF_ERROR(
        Check(gpu::LinearForward(session_->context().blas(), stream, head_, nullptr, head_rows_, head_cols_, x, rows,
                                 logits_.get(), false, gpu::Activation::kNone)));
    Tensor logits({rows, head_rows_});
    QSHARD_RETURN_IF_ERROR(session_->Copy(logits.data(), logits_.get(), logits.size() * sizeof(float),
                                          cudaMemcpyDeviceToHost, what_.c_str()));
    return logits;
  }

  absl::Status Check(const gpu::CudaStatus& status) const { return FromCudaStatus(status, what_); }

  static gpu::CudaStatus Grow(gpu::DeviceBuffer<float>& buffer, int64_t count) {
    if (static_cast<int64_t>(buffer.size()) >= count) return gpu::CudaStatus();
    return buffer.Allocate(static_cast<size_t>(count));
  }

  // `tensor` ([count] floats) into `buffer`; the caller holds the session's lock.
  absl::StatusOr<const float*> Upload(gpu::DeviceBuffer<float>& buffer, const Tensor& tensor, int64_t count,
                                      const std::string& name) {
    if (tensor.size() != count)
      return absl::InternalError(absl::StrCat(what_, ": ", name, " has ", tensor.size(), " values, not ", count));
    QSHARD_RETURN_IF_ERROR(Check(buffer.Allocate(tensor.size())));
    QSHARD_RETURN_IF_ERROR(session_->Copy(buffer.get(), tensor.data(), tensor.size() * sizeof(float),
                                          cudaMemcpyHostToDevice, what_.c_str()));
    return buffer.get();
  }

  // The linear's weight, or its packed form behind the kernel chosen for it.
  absl::Status LoadLinear(CudaLinearKernel kernel, const Linear& linear, const GptqLinearTensors* packed,
                          const std::string& name, const LinearSpec& spec, Layer& layer, gpu::DeviceLinear& device) {
    if (kernel == CudaLinearKernel::kFloat32Cublas) {
      if (linear.kernel != nullptr)
        return absl::InternalError(absl::StrCat(what_, ": ", name, " is neither float nor packed"));
      QSHARD_ASSIGN_OR_RETURN(device.weight,
                              Upload(layer.tensors[name], linear.weight, spec.out_features * spec.in_features, name));
      return absl::OkStatus();
    }
    const layout::GptqPackedView view = PackedView(*packed);
    gpu::CudaStatus loaded;
    if (kernel == CudaLinearKernel::kW8A8) {
      auto w8a8 = std::make_unique<gpu::W8A8DeviceLinear>();
      loaded = w8a8->Load(view, &half_scratch_);
      device.kernel = w8a8.get();
      layer.kernels.push_back(std::move(w8a8));
    } else {
      auto gptq = std::make_unique<gpu::GptqDeviceLinear>();
      loaded = gptq->Load(view, kernel == CudaLinearKernel::kGptqW4Repacked, kFusedMaxTokens, &half_scratch_);
      device.kernel = gptq.get();
      layer.kernels.push_back(std::move(gptq));
    }
    return FromCudaStatus(loaded, absl::StrCat(what_, ": ", name));
  }

  std::shared_ptr<CudaSession> session_;
  ModelConfig config_;
  LayerSpec spec_;
  gpu::LayerArchitecture arch_;
  PackedLinearKernels kernels_;
  std::vector<LinearSlot> linears_;
  std::vector<NormSlot> norms_;
  std::string what_;
  std::vector<Layer> layers_;
  std::map<std::string, std::set<std::string>> used_;  // linears by kernel name, for Describe
  std::map<std::string, gpu::DeviceBuffer<float>> head_tensors_;
  const float* final_norm_weight_ = nullptr;
  const float* final_norm_bias_ = nullptr;
  const float* project_out_ = nullptr;
  const float* head_ = nullptr;
  int64_t head_rows_ = 0, head_cols_ = 0;  // vocab, embed
  int64_t cached_ = 0;                     // positions in the layers' key/value caches
  gpu::LayerForwardScratch scratch_;
  gpu::HalfLinearScratch half_scratch_;
  gpu::DeviceBuffer<float> hidden_, normed_, projected_, logits_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceModel>> NewCudaModel(std::shared_ptr<CudaSession> session,
                                                          const DecoderModel& model, PackedLinearKernels kernels) {
  QSHARD_ASSIGN_OR_RETURN(const gpu::LayerArchitecture arch, LayerArchitectureOf(model.config()));
  auto device = std::make_unique<CudaModel>(std::move(session), model, arch, kernels);
  QSHARD_RETURN_IF_ERROR(device->LoadHead(model));
  return std::unique_ptr<DeviceModel>(std::move(device));
}

}  // namespace qshard
