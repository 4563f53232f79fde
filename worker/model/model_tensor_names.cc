#include "worker/model/model_tensor_names.h"

namespace qshard {

ModelTensorNames TensorNamesFor(const ModelConfig& config, const TensorSource& source) {
  ModelTensorNames names;
  names.lm_head = "lm_head.weight";
  if (config.arch == Architecture::kLlama) {
    names.embed_tokens = "model.embed_tokens.weight";
    names.final_norm = "model.norm";
    names.layers = "model.layers.";
    return names;
  }
  const std::string base = source.Has("decoder.embed_tokens.weight") && !source.Has("model.decoder.embed_tokens.weight")
                               ? "decoder."
                               : "model.decoder.";
  names.embed_tokens = base + "embed_tokens.weight";
  names.embed_positions = base + "embed_positions.weight";
  names.project_in = base + "project_in.weight";
  names.project_out = base + "project_out.weight";
  names.final_norm = base + "final_layer_norm";
  names.layers = base + "layers.";
  return names;
}

}  // namespace qshard
