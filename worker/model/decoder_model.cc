#include "worker/model/decoder_model.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "kernels/cpu/blas.h"
#include "worker/model/decoder_layers.h"
#include "worker/model/layer_ops.h"

namespace qshard {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ","), "]"); }

LayerObserver& NoObserver() {
  static LayerObserver* const observer = new LayerObserver();
  return *observer;
}

}  // namespace

LayerObserver::~LayerObserver() = default;

DecoderModel::DecoderModel(std::shared_ptr<const TensorSource> source, const ModelConfig& config)
    : source_(std::move(source)),
      config_(config),
      names_(TensorNamesFor(config_, *source_)),
      spec_(DecoderLayerSpec(config_)),
      rotary_(config_.head_dim, config_.rope_theta),
      pool_(std::make_unique<ThreadPool>(0)) {}

void DecoderModel::SetThreads(int threads) {
  pool_ = std::make_unique<ThreadPool>(threads);
  kernels::SetBlasThreads(pool_->threads());
}

absl::StatusOr<Tensor> DecoderModel::ReadChecked(const std::string& name, const std::vector<int64_t>& shape) const {
  QSHARD_ASSIGN_OR_RETURN(Tensor t, source_->Read(name));
  if (t.shape() != shape)
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ", ShapeString(t.shape()),
                                                   " but the model config implies ", ShapeString(shape)));
  return t;
}

absl::StatusOr<std::unique_ptr<DecoderModel>> DecoderModel::Load(std::shared_ptr<const TensorSource> source,
                                                                 const ModelConfig& config, ModelParts parts) {
  std::unique_ptr<DecoderModel> m(new DecoderModel(std::move(source), config));
  const ModelConfig& c = m->config_;
  const ModelTensorNames& n = m->names_;
  const bool opt = c.arch == Architecture::kOpt;
  const int64_t embed_dim = opt ? c.word_embed_proj_dim : c.hidden_size;
  const std::vector<int64_t> embed_shape = {c.vocab_size, embed_dim};

  // A tied head is kept once, in embed_tokens_, whichever of the two names stores it.
  const bool has_embed = m->source_->Has(n.embed_tokens);
  const bool has_head = m->source_->Has(n.lm_head);
  if (!has_embed && !(has_head && c.tie_word_embeddings))
    return absl::NotFoundError(absl::StrCat("tensor '", n.embed_tokens, "' not found"));
  if (!has_head && !c.tie_word_embeddings)
    return absl::NotFoundError(absl::StrCat("tensor '", n.lm_head, "' not found and tie_word_embeddings is false"));
  if (parts == ModelParts::kLayers) return m;
  QSHARD_ASSIGN_OR_RETURN(m->embed_tokens_, m->ReadChecked(has_embed ? n.embed_tokens : n.lm_head, embed_shape));
  if (!c.tie_word_embeddings) {
    QSHARD_ASSIGN_OR_RETURN(m->lm_head_, m->ReadChecked(n.lm_head, embed_shape));
  }

  if (opt) {
    QSHARD_ASSIGN_OR_RETURN(m->embed_positions_, m->ReadChecked(n.embed_positions, {c.max_positions + 2, c.hidden_size}));
    if (c.word_embed_proj_dim != c.hidden_size) {
      QSHARD_ASSIGN_OR_RETURN(m->project_in_.weight, m->ReadChecked(n.project_in, {c.hidden_size, embed_dim}));
      QSHARD_ASSIGN_OR_RETURN(m->project_out_.weight, m->ReadChecked(n.project_out, {embed_dim, c.hidden_size}));
    }
    // HF builds the decoder's final LayerNorm only for pre-norm models (OPT-350M has none).
    if (c.do_layer_norm_before) {
      QSHARD_ASSIGN_OR_RETURN(m->final_norm_weight_, m->ReadChecked(n.final_norm + ".weight", {c.hidden_size}));
      QSHARD_ASSIGN_OR_RETURN(m->final_norm_bias_, m->ReadChecked(n.final_norm + ".bias", {c.hidden_size}));
    }
  } else {
    QSHARD_ASSIGN_OR_RETURN(m->final_norm_weight_, m->ReadChecked(n.final_norm + ".weight", {c.hidden_size}));
  }
  return m;
}

absl::StatusOr<DecoderLayerWeights> DecoderModel::LoadLayer(int layer) const {
  if (layer < 0 || layer >= config_.num_layers)
    return absl::OutOfRangeError(absl::StrCat("layer ", layer, " out of range [0, ", config_.num_layers, ")"));
  const std::string prefix = names_.Layer(layer);
  DecoderLayerWeights w;
  for (const LinearSpec& l : spec_.linears) {
    Linear& linear = w.linears[l.name];
    const std::string weight = prefix + l.name + ".weight";
    QSHARD_ASSIGN_OR_RETURN(linear.kernel, source_->ReadLinearKernel(weight));
    if (linear.kernel == nullptr) {
      QSHARD_ASSIGN_OR_RETURN(linear.weight, ReadChecked(weight, {l.out_features, l.in_features}));
    } else if (linear.weight_shape() != std::vector<int64_t>{l.out_features, l.in_features}) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", weight, "' has shape ", ShapeString(linear.weight_shape()),
                                                     ", expected ", ShapeString({l.out_features, l.in_features})));
    }
    if (l.has_bias) {
      QSHARD_ASSIGN_OR_RETURN(linear.bias, ReadChecked(prefix + l.name + ".bias", {l.out_features}));
    }
  }
  for (const NormSpec& norm : spec_.norms) {
    QSHARD_ASSIGN_OR_RETURN(w.norms[norm.name], ReadChecked(prefix + norm.name, {norm.size}));
  }
  return w;
}

absl::Status DecoderModel::ValidateLayer(const DecoderLayerWeights& w) const {
  for (const LinearSpec& l : spec_.linears) {
    const auto it = w.linears.find(l.name);
    if (it == w.linears.end()) return absl::InvalidArgumentError(absl::StrCat("layer weights lack linear '", l.name, "'"));
    const std::vector<int64_t> shape = {l.out_features, l.in_features};
    if (it->second.weight_shape() != shape)
      return absl::InvalidArgumentError(absl::StrCat("linear '", l.name, "' weight has shape ",
                                                     ShapeString(it->second.weight_shape()), ", expected ", ShapeString(shape)));
    const std::vector<int64_t> bias_shape = l.has_bias ? std::vector<int64_t>{l.out_features} : std::vector<int64_t>{};
    if (it->second.has_bias() != l.has_bias || (l.has_bias && it->second.bias.shape() != bias_shape))
      return absl::InvalidArgumentError(absl::StrCat("linear '", l.name, "' bias has shape ", ShapeString(it->second.bias.shape()),
                                                     ", expected ", l.has_bias ? ShapeString(bias_shape) : "none"));
  }
  for (const NormSpec& norm : spec_.norms) {
    const auto it = w.norms.find(norm.name);
    if (it == w.norms.end() || it->second.shape() != std::vector<int64_t>{norm.size})
      return absl::InvalidArgumentError(absl::StrCat("layer weights lack norm '", norm.name, "' of shape [", norm.size, "]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> DecoderModel::Embed(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq,
                                           int64_t first_position) const {
  if (batch <= 0 || seq <= 0 || static_cast<int64_t>(tokens.size()) != batch * seq)
    return absl::InvalidArgumentError(
        absl::StrCat(tokens.size(), " token ids do not form ", batch, " windows of ", seq, " tokens"));
  if (embed_tokens_.size() == 0)
    return absl::FailedPreconditionError("the model was opened without its embeddings (ModelParts::kLayers)");
  const bool opt = config_.arch == Architecture::kOpt;
  if (opt && first_position + seq > config_.max_positions)
    return absl::InvalidArgumentError(absl::StrCat("window of ", seq, " tokens from position ", first_position,
                                                   " exceeds the model's ", config_.max_positions,
                                                   " learned positions"));
  const int64_t vocab = embed_tokens_.dim(0);
  const int64_t dim = embed_tokens_.dim(1);
  Tensor x({batch * seq, dim});
  for (int64_t t = 0; t < batch * seq; ++t) {
    const int32_t id = tokens[t];
    if (id < 0 || id >= vocab)
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " at position ", t, " outside the vocabulary [0, ", vocab, ")"));
    std::copy(embed_tokens_.row(id), embed_tokens_.row(id) + dim, x.row(t));
  }
  if (!opt) return x;
  if (project_in_.weight.size() > 0) x = ApplyLinear(x, project_in_);
  // OPTLearnedPositionalEmbedding: unpadded windows sit at positions 0..seq-1 (after any
  // cached ones), offset by 2.
  constexpr int64_t kPositionOffset = 2;
  for (int64_t t = 0; t < batch * seq; ++t) {
    const float* position = embed_positions_.row(first_position + t % seq + kPositionOffset);
    float* row = x.row(t);
    for (int64_t i = 0; i < config_.hidden_size; ++i) row[i] += position[i];
  }
  return x;
}

LayerRun DecoderModel::MakeRun(int layer, int64_t batch, int64_t seq, LayerObserver* observer, KvCache* cache) const {
  return LayerRun{config_, layer, batch, seq, *pool_, observer != nullptr ? *observer : NoObserver(), rotary_, cache};
}

std::vector<std::string> DecoderModel::GroupNames() const {
  std::vector<std::string> group_names;
  for (const auto& group : spec_.groups) group_names.push_back(group.front());
  return group_names;
}

void DecoderModel::RunLayer(int layer, const DecoderLayerWeights& weights, Tensor& hidden, int64_t batch, int64_t seq,
                            LayerObserver* observer) const {
  RunDecoderLayer(MakeRun(layer, batch, seq, observer), weights, GroupNames(), hidden);
}

void DecoderModel::RunLayerCached(int layer, const DecoderLayerWeights& weights, Tensor& hidden, KvCache& cache) const {
  RunDecoderLayer(MakeRun(layer, 1, hidden.rows(), nullptr, &cache), weights, GroupNames(), hidden);
}

Tensor DecoderModel::GroupInput(int layer, const DecoderLayerWeights& weights, int group, const Tensor& residual,
                                const Tensor& previous, int64_t batch, int64_t seq, LayerObserver* observer) const {
  return qshard::GroupInput(MakeRun(layer, batch, seq, observer), weights, group, residual, previous);
}

void DecoderModel::AddGroupOutput(int layer, const DecoderLayerWeights& weights, int group, const Tensor& input,
                                  Tensor& residual, int64_t batch, int64_t seq) const {
  qshard::AddGroupOutput(MakeRun(layer, batch, seq, nullptr), weights, group, input, residual);
}

void DecoderModel::ObserveAttention(int layer, const DecoderLayerWeights& weights, const Tensor& input, int64_t batch,
                                    int64_t seq, LayerObserver& observer) const {
  qshard::ObserveAttention(MakeRun(layer, batch, seq, &observer), weights, input);
}

Tensor DecoderModel::Logits(const Tensor& hidden) const {
  Tensor x;
  if (config_.arch == Architecture::kLlama) {
    x = RmsNorm(hidden, final_norm_weight_, config_.rms_norm_eps);
  } else {
    x = final_norm_weight_.size() > 0 ? LayerNorm(hidden, final_norm_weight_, final_norm_bias_, config_.layer_norm_eps)
                                      : hidden;
    if (project_out_.weight.size() > 0) x = ApplyLinear(x, project_out_);
  }
  const Tensor& head = this->head();
  Tensor logits({x.rows(), head.dim(0)});
  if (x.rows() == 1) {  // a decoding step (see ApplyLinear)
    kernels::Gemv(head.dim(0), x.cols(), head.data(), x.data(), logits.data());
  } else {
    kernels::Gemm(x.rows(), head.dim(0), x.cols(), x.data(), head.data(), /*b_transposed=*/true, logits.data());
  }
  return logits;
}

}  // namespace qshard
