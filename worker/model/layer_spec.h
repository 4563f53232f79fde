// What a decoder layer of a given architecture holds: its linear layers with their shapes
// and biases, its norms, and the groups of linears that read the same input (in the order
// GPTQ's "true sequential" mode quantizes them). Loading, shape checks, calibration and
// export all enumerate a layer through this one description.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model_config.h"

namespace qshard {

struct LinearSpec {
  std::string name;  // relative to the layer, e.g. "self_attn.q_proj"
  int64_t out_features = 0;
  int64_t in_features = 0;
  bool has_bias = false;
};

struct NormSpec {
  std::string name;  // relative to the layer, e.g. "input_layernorm.weight"
  int64_t size = 0;
};

struct LayerSpec {
  std::vector<LinearSpec> linears;
  std::vector<NormSpec> norms;
  // LLaMA [[q,k,v],[o],[gate,up],[down]], OPT [[q,k,v],[out],[fc1],[fc2]]. A group's first
  // linear names its shared input in LayerObserver::OnLinearInput.
  std::vector<std::vector<std::string>> groups;
};

LayerSpec DecoderLayerSpec(const ModelConfig& config);

}  // namespace qshard
