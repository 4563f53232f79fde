// Where each linear and norm of a layer goes in kernels/cuda's DeviceLayerWeights, by the names
// worker/model's layer spec gives them; shared by the calibration forward pass (cuda_forward) and
// the evaluation model (cuda_model).
#pragma once

#include <string>
#include <vector>

#include "kernels/cuda/layer_forward.h"
#include "worker/model/layer_spec.h"

namespace qshard {

struct LinearSlot {
  std::string name;
  gpu::DeviceLinear gpu::DeviceLayerWeights::*field;
};
struct NormSlot {
  std::string name;
  const float* gpu::DeviceLayerWeights::*field;
};

// Groups [q,k,v], [o], [gate,up] (LLaMA) or [fc1] (OPT), [down].
std::vector<LinearSlot> LinearSlots(const LayerSpec& spec, bool llama);
// The norms in front of the attention and of the MLP, with OPT's biases after each weight.
std::vector<NormSlot> NormSlots(const LayerSpec& spec, bool llama);

}  // namespace qshard
