#include "engine/device_model_loading.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {
namespace {

// The host's half of a device model: it embeds each window and hands it to the device.
class DeviceWindowLogits final : public WindowLogits {
 public:
  DeviceWindowLogits(std::unique_ptr<DecoderModel> decoder, std::unique_ptr<DeviceModel> device)
      : decoder_(std::move(decoder)), device_(std::move(device)) {}
  const ModelConfig& config() const override { return decoder_->config(); }
  ThreadPool& pool() override { return decoder_->pool(); }
  absl::Status RunWindows(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq) override {
    tokens_.assign(tokens.begin(), tokens.end());
    seq_ = seq;
    return absl::OkStatus();
  }
  absl::StatusOr<Tensor> Logits(int64_t window) override {
    const auto span = absl::MakeConstSpan(tokens_).subspan(window * seq_, seq_);
    QSHARD_ASSIGN_OR_RETURN(const Tensor hidden, decoder_->Embed(span, 1, seq_));
    return device_->Logits(hidden, seq_ - 1);
  }

 private:
  std::unique_ptr<DecoderModel> decoder_;
  std::unique_ptr<DeviceModel> device_;
  std::vector<int32_t> tokens_;  // the last RunWindows's
  int64_t seq_ = 0;
};

// Layer `layer` with its packed linears as the checkpoint stores them; biases, norms and the
// linears stored as float weights (skipped modules) read as floats.
absl::StatusOr<DeviceModelLayer> ReadPackedLayer(const DecoderModel& decoder, const GptqTensorSource& source,
                                                 int layer) {
  const std::string prefix = decoder.tensor_names().Layer(layer);
  DeviceModelLayer out;
  for (const LinearSpec& l : decoder.layer_spec().linears) {
    const std::string weight = prefix + l.name + ".weight";
    Linear& linear = out.weights.linears[l.name];
    if (source.IsPacked(weight)) {
      QSHARD_ASSIGN_OR_RETURN(out.packed[l.name], source.ReadPacked(weight));
    } else {
      QSHARD_ASSIGN_OR_RETURN(linear.weight, source.Read(weight));
    }
    if (l.has_bias) {
      QSHARD_ASSIGN_OR_RETURN(linear.bias, source.Read(prefix + l.name + ".bias"));
    }
  }
  for (const NormSpec& norm : decoder.layer_spec().norms) {
    QSHARD_ASSIGN_OR_RETURN(out.weights.norms[norm.name], source.Read(prefix + norm.name));
  }
  return out;
}

}  // namespace

absl::StatusOr<DeviceLoadedModel> LoadModelOnDevice(const std::string& dir, int threads, GptqLinearMode kernels,
                                                    CudaDevice& device) {
  QSHARD_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  // Read as floats where the device takes floats: the packed linears are read apart.
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<const TensorSource> source,
                          OpenModelSource(dir, {GptqLinearMode::kDequantize, threads}));
  const auto* gptq = dynamic_cast<const GptqTensorSource*>(source.get());
  const bool packed = gptq != nullptr && kernels != GptqLinearMode::kDequantize;
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<DecoderModel> decoder, DecoderModel::Load(source, config));
  decoder->SetThreads(threads);
  QSHARD_ASSIGN_OR_RETURN(
      std::unique_ptr<DeviceModel> model,
      device.NewModel(*decoder, kernels == GptqLinearMode::kInt8 ? PackedLinearKernels::kInt8Activations
                                                                 : PackedLinearKernels::kWeightOnly));
  for (int layer = 0; layer < config.num_layers; ++layer) {
    DeviceModelLayer weights;
    if (packed) {
      const std::string first =
          decoder->tensor_names().Layer(layer) + decoder->layer_spec().linears[0].name + ".weight";
      if (gptq->IsFlattened(first))
        return absl::FailedPreconditionError(
            absl::StrCat(dir,
                         " is a FlattenQuant checkpoint: no CUDA kernel runs its split columns; use --device cpu, or "
                         "--kernels dequantize on the device"));
      QSHARD_ASSIGN_OR_RETURN(weights, ReadPackedLayer(*decoder, *gptq, layer));
    } else {
      QSHARD_ASSIGN_OR_RETURN(weights.weights, decoder->LoadLayer(layer));
    }
    QSHARD_RETURN_IF_ERROR(model->LoadLayer(layer, weights));
  }
  std::string described = model->Describe();
  QSHARD_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::FromModelDir(dir));
  return DeviceLoadedModel{std::make_unique<DeviceWindowLogits>(std::move(decoder), std::move(model)),
                           std::move(tokenizer), std::move(described)};
}

}  // namespace qshard
