#include "worker/model/resident_model.h"

#include "core/status.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<ResidentModel>> ResidentModel::Load(std::shared_ptr<const TensorSource> source,
                                                                   const ModelConfig& config) {
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<DecoderModel> decoder, DecoderModel::Load(std::move(source), config));
  std::unique_ptr<ResidentModel> model(new ResidentModel(std::move(decoder)));
  for (int i = 0; i < config.num_layers; ++i) {
    QSHARD_ASSIGN_OR_RETURN(DecoderLayerWeights layer, model->decoder_->LoadLayer(i));
    model->layers_.push_back(std::move(layer));
  }
  return model;
}

absl::StatusOr<std::unique_ptr<ResidentModel>> ResidentModel::Open(const std::string& dir) {
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<CheckpointTensorSource> source, CheckpointTensorSource::Open(dir));
  const ModelConfig config = source->checkpoint().config();
  return Load(std::move(source), config);
}

absl::StatusOr<Tensor> ResidentModel::Hidden(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq) const {
  QSHARD_ASSIGN_OR_RETURN(Tensor hidden, decoder_->Embed(tokens, batch, seq));
  for (int i = 0; i < static_cast<int>(layers_.size()); ++i) decoder_->RunLayer(i, layers_[i], hidden, batch, seq);
  return hidden;
}

absl::StatusOr<Tensor> ResidentModel::HiddenCached(absl::Span<const int32_t> tokens, KvCache& cache) const {
  const int64_t seq = static_cast<int64_t>(tokens.size());
  QSHARD_ASSIGN_OR_RETURN(Tensor hidden, decoder_->Embed(tokens, 1, seq, layers_.empty() ? 0 : cache.length(0)));
  for (int i = 0; i < static_cast<int>(layers_.size()); ++i) decoder_->RunLayerCached(i, layers_[i], hidden, cache);
  return hidden;
}

absl::StatusOr<Tensor> ResidentModel::Forward(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq) const {
  QSHARD_ASSIGN_OR_RETURN(const Tensor hidden, Hidden(tokens, batch, seq));
  return decoder_->Logits(hidden);
}

}  // namespace qshard
