// Where a job keeps the solutions of its finished layers, so that the same job started again
// (after a coordinator restart) skips them: the runner rewrites them into the checkpoint from
// their solutions and the workers replay them over their shards, instead of calibrating and
// solving them again. The service keeps them in its state directory
// (coordinator/finished_layer_dir.h); the runner keeps them in memory when it has several
// workers and no store (a lost worker's shards are replayed from them); an embedded job
// keeps none.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/methods/layer_method.h"

namespace qshard {

class FinishedLayerStore {
 public:
  virtual ~FinishedLayerStore() = default;

  // How many layers, 0..k-1, earlier runs finished and kept whole; 0 when none.
  virtual absl::StatusOr<int> CountKept() = 0;

  // Finished layer `layer` (< CountKept()) as its groups' solutions in order.
  virtual absl::StatusOr<std::vector<GroupSolution>> Load(int layer) = 0;

  // Keeps `layer`'s solutions durably; called before the layer is reported finished.
  virtual absl::Status Save(int layer, const std::vector<GroupSolution>& solutions) = 0;
};

// Finished layers in memory: what a job with several workers and no durable store keeps for
// the replays of a lost worker's shards.
class FinishedLayersInMemory : public FinishedLayerStore {
 public:
  absl::StatusOr<int> CountKept() override { return static_cast<int>(layers_.size()); }
  absl::StatusOr<std::vector<GroupSolution>> Load(int layer) override { return layers_.at(layer); }
  absl::Status Save(int layer, const std::vector<GroupSolution>& solutions) override {
    layers_.resize(layer);
    layers_.push_back(solutions);
    return absl::OkStatus();
  }

 private:
  std::vector<std::vector<GroupSolution>> layers_;
};

}  // namespace qshard
