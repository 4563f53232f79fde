#include "engine/device_model_loading.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {
namespace {

// Layer `layer` with its packed linears as the checkpoint stores them; biases, norms and the
// linears stored as float weights (skipped modules) read as floats. FlattenQuant linears are
// refused, naming the linear.
absl::StatusOr<DeviceModelLayer> ReadPackedLayer(const DecoderModel& decoder, const GptqTensorSource& source,
                                                 int layer) {
  const std::string prefix = decoder.tensor_names().Layer(layer);
  DeviceModelLayer out;
  for (const LinearSpec& l : decoder.layer_spec().linears) {
    const std::string weight = prefix + l.name + ".weight";
    Linear& linear = out.weights.linears[l.name];
    if (source.IsFlattened(weight))
      return absl::FailedPreconditionError(absl::StrCat(
          weight, " is a FlattenQuant linear: no CUDA kernel runs its split columns; use --device cpu, or "
                  "--kernels dequantize on the device"));
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

absl::Status DeviceLanguageModel::RunWindows(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq) {
  tokens_.assign(tokens.begin(), tokens.end());
  seq_ = seq;
  return absl::OkStatus();
}

absl::StatusOr<Tensor> DeviceLanguageModel::Logits(int64_t window) {
  const auto span = absl::MakeConstSpan(tokens_).subspan(window * seq_, seq_);
  QSHARD_ASSIGN_OR_RETURN(const Tensor hidden, decoder_->Embed(span, 1, seq_));
  return device_->Logits(hidden, seq_ - 1);
}

void DeviceLanguageModel::Reset() {
  device_->ResetCache();
  positions_ = 0;
}

absl::StatusOr<Tensor> DeviceLanguageModel::Next(absl::Span<const int32_t> fresh) {
  const int64_t count = static_cast<int64_t>(fresh.size());
  QSHARD_ASSIGN_OR_RETURN(const Tensor hidden, decoder_->Embed(fresh, 1, count, positions_));
  QSHARD_ASSIGN_OR_RETURN(Tensor logits, device_->NextLogits(hidden));
  positions_ += count;
  return logits;
}

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
      QSHARD_ASSIGN_OR_RETURN(weights, ReadPackedLayer(*decoder, *gptq, layer));
    } else {
      QSHARD_ASSIGN_OR_RETURN(weights.weights, decoder->LoadLayer(layer));
    }
    QSHARD_RETURN_IF_ERROR(model->LoadLayer(layer, weights));
  }
  std::string described = model->Describe();
  QSHARD_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::FromModelDir(dir));
  return DeviceLoadedModel{std::make_unique<DeviceLanguageModel>(std::move(decoder), std::move(model)),
                           std::move(tokenizer), std::move(described)};
}

}  // namespace qshard
