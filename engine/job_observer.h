// Hooks for watching jobs from outside, for the coordinator's metrics (coordinator_metrics.h):
// the engine (job_runner.h) reports solved linears and blocks, lost workers and redone layers;
// whoever runs jobs (the coordinator's scheduler) reports their end. Every hook does nothing
// by default, so an observer overrides only what it counts. Hooks may run on several threads.
#pragma once

#include <string>

#include "engine/job_spec.h"
#include "nlohmann/json.hpp"
#include "worker/methods/layer_method.h"

namespace qshard {

class JobObserver {
 public:
  virtual ~JobObserver() = default;

  // One quantized linear, as it appears in the job's report.
  virtual void LinearSolved(const std::string& method, const LinearReport& report) {}
  // One decoder layer (block) finished, `seconds` from its start to its solution applied. Layers
  // a resumed job restores from an earlier run are not solved, so not reported.
  virtual void BlockSolved(const std::string& method, double seconds) {}
  // Group `group` (an index into the layer's linear groups) of a layer solved on its own, in
  // `seconds` from its reduced statistics to its joined solution, however many owners shared
  // it (groups solved all at once under parallel propagation are not reported).
  virtual void GroupSolved(const std::string& method, int group, double seconds) {}
  // A worker the job was using stopped answering (its calls failed UNAVAILABLE).
  virtual void WorkerLost() {}
  // A layer is redone after its lost workers' shards moved to the survivors.
  virtual void LayerRedone() {}

  // The job ended after `seconds` of running, in `state` ("SUCCEEDED", "FAILED",
  // "CANCELLED"); `report` is its report, null unless it succeeded.
  virtual void JobEnded(const std::string& job_id, const JobSpec& spec, const std::string& state, double seconds,
                        const nlohmann::json* report) {}
};

}  // namespace qshard
