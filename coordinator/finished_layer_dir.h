// The service's FinishedLayerStore: one file per finished layer in a directory of the job's
// own under the coordinator's state dir, `layer-00012.pb` holding the layer's group solutions
// as a record file (remote/record_file.h), one CRC-checked GroupSolutionData record per group
// in group order (the message a replaying worker receives per group), so no message holds a
// whole layer. Each file is written atomically, so a crash leaves a layer either kept whole or
// not at all; a file that is damaged, cut short or of an older format (one LayerSolutions
// message) ends the run of kept layers there (those after it are solved again).
#pragma once

#include <string>
#include <vector>

#include "core/env.h"
#include "engine/finished_layers.h"

namespace qshard {

class FinishedLayerDir : public FinishedLayerStore {
 public:
  explicit FinishedLayerDir(std::string dir, Env* env = Env::Default()) : dir_(std::move(dir)), env_(env) {}

  // Parses every file from layer 0 on, one at a time; the first missing or damaged one ends the run.
  absl::StatusOr<int> CountKept() override;
  absl::StatusOr<std::vector<GroupSolution>> Load(int layer) override;
  absl::Status Save(int layer, const std::vector<GroupSolution>& solutions) override;

  // Removes the directory (the job finished, failed or was cancelled).
  absl::Status Remove();

 private:
  std::string LayerPath(int layer) const;

  std::string dir_;
  Env* env_;
};

}  // namespace qshard
