// The Hugging Face names of a decoder-only model's tensors outside its layers, and the prefix
// of each layer's tensors. OPT checkpoints exist both with the "model." prefix (saved from
// OPTForCausalLM) and without it (facebook's original OPTModel saves): the source decides.
#pragma once

#include <string>

#include "core/model_config.h"
#include "worker/model/tensor_source.h"

namespace qshard {

struct ModelTensorNames {
  std::string embed_tokens;
  std::string embed_positions;  // OPT only
  std::string project_in;       // OPT only, present when word_embed_proj_dim != hidden_size
  std::string project_out;
  std::string final_norm;       // without ".weight" / ".bias"
  std::string lm_head;
  std::string layers;           // "model.layers." or "model.decoder.layers."

  // "model.layers.3." — the prefix of layer `layer`'s tensors.
  std::string Layer(int layer) const { return layers + std::to_string(layer) + "."; }
};

ModelTensorNames TensorNamesFor(const ModelConfig& config, const TensorSource& source);

}  // namespace qshard
