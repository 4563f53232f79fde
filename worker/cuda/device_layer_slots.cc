#include "worker/cuda/device_layer_slots.h"

namespace qshard {

using gpu::DeviceLayerWeights;

std::vector<LinearSlot> LinearSlots(const LayerSpec& spec, bool llama) {
  const auto& g = spec.groups;
  std::vector<LinearSlot> slots = {{g[0][0], &DeviceLayerWeights::q},
                                   {g[0][1], &DeviceLayerWeights::k},
                                   {g[0][2], &DeviceLayerWeights::v},
                                   {g[1][0], &DeviceLayerWeights::o}};
  if (llama) {
    slots.push_back({g[2][0], &DeviceLayerWeights::gate});
    slots.push_back({g[2][1], &DeviceLayerWeights::up});
  } else {
    slots.push_back({g[2][0], &DeviceLayerWeights::up});
  }
  slots.push_back({g[3][0], &DeviceLayerWeights::down});
  return slots;
}

std::vector<NormSlot> NormSlots(const LayerSpec& spec, bool llama) {
  const auto& n = spec.norms;
  if (llama) return {{n[0].name, &DeviceLayerWeights::norm1_weight}, {n[1].name, &DeviceLayerWeights::norm2_weight}};
  return {{n[0].name, &DeviceLayerWeights::norm1_weight},
          {n[1].name, &DeviceLayerWeights::norm1_bias},
          {n[2].name, &DeviceLayerWeights::norm2_weight},
          {n[3].name, &DeviceLayerWeights::norm2_bias}};
}

}  // namespace qshard
