// A decoder model with every layer held in memory, for evaluation and generation: one call
// runs token ids to logits. Layers stay reachable so quantized weights can be swapped in.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "worker/model/decoder_model.h"
#include "worker/model/kv_cache.h"

namespace qshard {

class ResidentModel {
 public:
  static absl::StatusOr<std::unique_ptr<ResidentModel>> Load(std::shared_ptr<const TensorSource> source,
                                                             const ModelConfig& config);
  // Loads the Hugging Face model directory `dir`.
  static absl::StatusOr<std::unique_ptr<ResidentModel>> Open(const std::string& dir);

  const ModelConfig& config() const { return decoder_->config(); }
  const DecoderModel& decoder() const { return *decoder_; }
  DecoderLayerWeights& layer(int i) { return layers_[i]; }
  const DecoderLayerWeights& layer(int i) const { return layers_[i]; }
  void SetThreads(int threads) { decoder_->SetThreads(threads); }

  // Hidden states after the last layer (before the final norm), [batch*seq, hidden_size].
  absl::StatusOr<Tensor> Hidden(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq) const;
  // Hidden states after the last layer of `tokens`, one sequence continuing the positions
  // `cache` holds (none for a fresh cache), [tokens, hidden_size]; their keys and values are
  // appended to the cache. The prompt's call runs the window kernels like Hidden; later calls
  // cost one matrix-vector product per linear and token.
  absl::StatusOr<Tensor> HiddenCached(absl::Span<const int32_t> tokens, KvCache& cache) const;
  // Next-token logits for every position, [batch*seq, vocab].
  absl::StatusOr<Tensor> Forward(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq) const;

 private:
  explicit ResidentModel(std::unique_ptr<DecoderModel> decoder) : decoder_(std::move(decoder)) {}

  std::unique_ptr<DecoderModel> decoder_;
  std::vector<DecoderLayerWeights> layers_;
};

}  // namespace qshard
