// Where a job keeps the solutions of its finished layers, so that the same job started again
// (after a coordinator restart) skips them: the runner rewrites them into the checkpoint from
// their solutions and the workers replay them over their shards, instead of calibrating and
// solving them again. The service keeps them in its state directory
// (coordinator/finished_layer_dir.h); embedded jobs keep none.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/methods/layer_method.h"

namespace qshard {

class FinishedLayerStore {
 public:
  virtual ~FinishedLayerStore() = default;

  // The solutions of layers 0..k-1 that earlier runs of the job finished, each as its groups'
  // solutions in order; empty when none was kept.
  virtual absl::StatusOr<std::vector<std::vector<GroupSolution>>> Load() = 0;

  // Keeps `layer`'s solutions durably; called before the layer is reported finished.
  virtual absl::Status Save(int layer, const std::vector<GroupSolution>& solutions) = 0;
};

}  // namespace qshard
