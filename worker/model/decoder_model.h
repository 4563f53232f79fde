// A decoder-only causal LM (LLaMA family or OPT) run one layer at a time on the CPU in float32.
// The model object holds what surrounds the layers (embeddings, final norm, head); layer
// weights are loaded separately, so a caller can keep one layer in memory at a time and swap
// in rewritten (quantized) weights. Hidden states between layers are plain [tokens, hidden]
// tensors of `batch` windows of `seq` tokens each.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/model_config.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "worker/model/layer_spec.h"
#include "worker/model/layer_weights.h"
#include "worker/model/model_tensor_names.h"
#include "worker/model/rotary.h"
#include "worker/model/tensor_source.h"

namespace qshard {

struct LayerRun;  // decoder_layers.h
class KvCache;    // kv_cache.h

// Calibration hooks called from inside RunLayer; the defaults do nothing.
class LayerObserver {
 public:
  virtual ~LayerObserver();
  // The input X [tokens, in] of a group of linears that read the same input, named by the
  // group's first linear (LayerSpec::groups): LLaMA "self_attn.q_proj", "self_attn.o_proj",
  // "mlp.gate_proj", "mlp.down_proj"; OPT "self_attn.q_proj", "self_attn.out_proj", "fc1", "fc2".
  virtual void OnLinearInput(int layer, const std::string& linear, const Tensor& x) {}
  // Attention internals, asked for only when WantsAttention(layer) (they cost memory):
  // probs [batch, heads, seq, seq] after the causal softmax; q [batch*seq, heads*head_dim] and
  // k [batch*seq, kv_heads*head_dim] after RoPE (LLaMA) or after projection + bias (OPT, q not
  // yet multiplied by head_dim^-0.5).
  virtual bool WantsAttention(int layer) const { return false; }
  virtual void OnAttention(int layer, const Tensor& probs, const Tensor& q, const Tensor& k, int64_t batch,
                           int64_t seq) {}
  // Where the probabilities go, if the observer keeps a tensor for them across batches (null: a
  // temporary). A fresh one is zeroed and page-faulted in by one thread, for every batch: a
  // quarter of aespa's calibration time on TinyStories-656K.
  virtual Tensor* ProbabilitiesScratch(int layer) { return nullptr; }
};

// What DecoderModel::Load reads besides the layers (which are read one at a time, LoadLayer).
enum class ModelParts {
  kAll,     // the embeddings, OPT's positions and projections, the final norm and the head
  kLayers,  // none of them: for a job's runner, which stitches layers and never embeds or
            // predicts (an OPT-175B embedding is 2.5 GB in float32); their presence is checked
};

class DecoderModel {
 public:
  // Reads the model's parts outside its layers (all of them unless `parts` says kLayers). Tied
  // heads are stored once (LLaMA checkpoints may keep only lm_head.weight, OPT only the
  // embeddings); either direction works.
  static absl::StatusOr<std::unique_ptr<DecoderModel>> Load(std::shared_ptr<const TensorSource> source,
                                                            const ModelConfig& config,
                                                            ModelParts parts = ModelParts::kAll);

  const ModelConfig& config() const { return config_; }
  const TensorSource& source() const { return *source_; }
  const ModelTensorNames& tensor_names() const { return names_; }
  const LayerSpec& layer_spec() const { return spec_; }

  // Reads layer `layer`'s weights from the source and checks their shapes against the config.
  absl::StatusOr<DecoderLayerWeights> LoadLayer(int layer) const;
  // Checks that `weights` has every linear and norm of a layer with the configured shapes.
  absl::Status ValidateLayer(const DecoderLayerWeights& weights) const;
  // The linears of a layer in true-sequential groups (LayerSpec::groups).
  std::vector<std::vector<std::string>> LinearGroups() const { return spec_.groups; }

  // Token ids of `batch` windows of `seq` tokens -> hidden states [batch*seq, hidden_size].
  // Fails on ids outside the vocabulary, (OPT) windows longer than the learned positions, or a
  // model loaded with ModelParts::kLayers.
  // Each window's first token is at position `first_position` (incremental decoding).
  absl::StatusOr<Tensor> Embed(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq,
                               int64_t first_position = 0) const;
  // Runs layer `layer` on `hidden` in place. `weights` must have passed ValidateLayer.
  void RunLayer(int layer, const DecoderLayerWeights& weights, Tensor& hidden, int64_t batch, int64_t seq,
                LayerObserver* observer = nullptr) const;
  // Runs layer `layer` on the hidden states [new tokens, hidden_size] of one sequence that
  // continues the positions `cache` holds, appending their keys and values (kv_cache.h).
  void RunLayerCached(int layer, const DecoderLayerWeights& weights, Tensor& hidden, KvCache& cache) const;
  // The layer cut at its groups' inputs (decoder_layers.h), for calibration stage by stage:
  // the input of group g (0..3) for one batch, and adding group 1's or 3's output to the
  // residual. RunLayer is these stages in a row, so both give the same bits.
  Tensor GroupInput(int layer, const DecoderLayerWeights& weights, int group, const Tensor& residual,
                    const Tensor& previous, int64_t batch, int64_t seq, LayerObserver* observer = nullptr) const;
  void AddGroupOutput(int layer, const DecoderLayerWeights& weights, int group, const Tensor& input, Tensor& residual,
                      int64_t batch, int64_t seq) const;
  // The attention internals GroupInput(1) would show `observer`, from group 0's `input`, without
  // computing the attention output (aespa's statistics need only them).
  void ObserveAttention(int layer, const DecoderLayerWeights& weights, const Tensor& input, int64_t batch, int64_t seq,
                        LayerObserver& observer) const;
  // Final norm (and OPT's project_out), then the head: [tokens, hidden] -> [tokens, vocab]. Only
  // on a model loaded with ModelParts::kAll (the evaluation and generation paths).
  Tensor Logits(const Tensor& hidden) const;
  // What Logits applies, for a device that runs it (worker/device/device_model.h): the final
  // norm's weight (empty for an OPT model without one) and bias (OPT), OPT's project_out (empty
  // weight when absent, no bias) and the head [vocab, embed] (lm_head, or the tied embeddings).
  const Tensor& final_norm_weight() const { return final_norm_weight_; }
  const Tensor& final_norm_bias() const { return final_norm_bias_; }
  const Linear& project_out() const { return project_out_; }
  const Tensor& head() const { return lm_head_.size() > 0 ? lm_head_ : embed_tokens_; }

  // Threads for attention and row-wise work, and for OpenBLAS (a process-wide setting).
  // 0 means one per hardware thread, the default.
  void SetThreads(int threads);
  ThreadPool& pool() const { return *pool_; }

 private:
  DecoderModel(std::shared_ptr<const TensorSource> source, const ModelConfig& config);
  LayerRun MakeRun(int layer, int64_t batch, int64_t seq, LayerObserver* observer, KvCache* cache = nullptr) const;
  std::vector<std::string> GroupNames() const;
  absl::StatusOr<Tensor> ReadChecked(const std::string& name, const std::vector<int64_t>& shape) const;

  std::shared_ptr<const TensorSource> source_;
  ModelConfig config_;
  ModelTensorNames names_;
  LayerSpec spec_;
  RotaryEmbedding rotary_;
  std::unique_ptr<ThreadPool> pool_;

  Tensor embed_tokens_;  // [vocab, word_embed_proj_dim or hidden]
  Tensor lm_head_;       // empty when the head is embed_tokens_
  Tensor embed_positions_;  // OPT: [max_positions + 2, hidden]
  Linear project_in_;       // OPT-350M style; empty weight when absent
  Linear project_out_;
  Tensor final_norm_weight_;
  Tensor final_norm_bias_;  // OPT
};

}  // namespace qshard
