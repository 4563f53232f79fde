// A worker's calibration forward pass on its device (`--device cuda`; docs/cuda.md, "The worker's
// device"): each shard's hidden states held there from one layer to the next, the current layer's
// weights in float32, and, window by window, the stages of worker/model/decoder_layers.h. A group
// input the job collects is added into a device sum (statistics_device.h) where it was computed,
// without a copy to the host, and so are aespa's attention statistics. The CUDA implementation
// is worker/cuda/cuda_forward.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/tensor.h"
#include "worker/device/device_memory_plan.h"
#include "worker/calibration/statistics_device.h"
#include "worker/model/layer_weights.h"

namespace qshard {

// One pass over a shard's windows. Per window: the inputs of groups first..last in order (first is
// 0 or 2, computed from the residual; groups 1 and 3 from the group before, last ≤ 3), each of
// groups 1 and 3 followed by adding its output (o / out_proj, down / fc2) to the residual, except
// the pass's last group unless `add_last`. A pass starting at 0 or 2 recomputes what an earlier
// pass of the layer computed with the same weights, so it gives the same bits: nothing is cached
// between passes.
struct ForwardPass {
  int first = 0;
  int last = 0;
  bool add_last = false;
};

// Whether `pass` adds group g's output to the residual after computing g's input.
inline bool AddsOutput(const ForwardPass& pass, int g) { return g % 2 == 1 && (g < pass.last || pass.add_last); }

// What a job's passes collect into device sums, which the device leaves room for beside each
// layer (worker/device/cuda_device_memory.h, LayerDeviceBytes). Each shard's sums are made for its pass
// and downloaded and freed before the next shard's pass, and a layer's solves start after its
// last shard's: so the sums alive at once are one shard's of the groups one pass collects.
struct ForwardStatistics {
  // Parallel propagation: every group's sums from one pass. Sequential: one group's per pass.
  bool all_groups = false;
  // aespa's attention statistics (StatisticsDevice::NewAttentionStats), made beside group 0's sums.
  bool attention = false;
};

class ForwardDevice {
 public:
  virtual ~ForwardDevice() = default;
  // Takes shard `shard`'s hidden states [windows·seqlen, hidden], replacing any it held for it.
  virtual absl::Status HoldShard(int shard, const Tensor& hidden) = 0;
  // Copies shard `shard`'s hidden states into `hidden`, already [windows·seqlen, hidden].
  virtual absl::Status ReadShard(int shard, Tensor& hidden) = 0;
  // Layer `layer`'s weights (every linear and norm, float32), replacing the previous layer's.
  virtual absl::Status LoadLayer(int layer, const DecoderLayerWeights& weights) = 0;
  // The named linears of the loaded layer replaced by `weights`' (a group's solution applied).
  virtual absl::Status UpdateLinears(const DecoderLayerWeights& weights, const std::vector<std::string>& linears) = 0;
  // Runs `pass` over every window of `shard` in window order; sums[g], where not null (a sum of
  // this device's, made for group g's width), takes group g's input of each window. `attention`,
  // where not null (this device's, for a pass from group 0), takes each window's attention
  // statistics from group 0's input and the q/k the pass's attention reads (computed for it when
  // the pass stops at group 0); the weights are the loaded layer's, as on the CPU.
  virtual absl::Status Run(int shard, const ForwardPass& pass, const std::array<OffHostHessianSum*, 4>& sums,
                           OffHostAttentionStats* attention) = 0;
  // What it keeps on the device: the choices made at the job's start and where the shards it holds
  // lie now (device_memory_plan.h).
  virtual DeviceMemoryPlan MemoryPlan() const = 0;
};

}  // namespace qshard
