// The rows and summary of quant_report.json: one row per quantized linear (relative output
// error, solve seconds, damping, the exported bits, FlattenQuant's activation bits and added
// inputs), and the job's summary over them.
#pragma once

#include <map>
#include <string>

#include "nlohmann/json.hpp"
#include "worker/methods/layer_method.h"
#include "worker/quant/quantized_weight.h"

namespace qshard {

nlohmann::json ReportRow(int layer, const LinearReport& r, const std::map<std::string, QuantizedWeight>& linears);

// Wall seconds of a job by phase, as the runner sees them (a phase's workers run concurrently).
struct JobPhases {
  double setup = 0.0;          // model headers, plan, checkpoint writer
  double start_workers = 0.0;  // calibration windows tokenized and embedded (and replays)
  double calibration = 0.0;    // forward passes up to each group's input, statistics, reduction
  double solve = 0.0;          // the groups' solves (owners in parallel)
  double propagation = 0.0;    // solutions applied, the rest of each layer's forward pass
  double write = 0.0;          // checkpoint tensors, index, configs, report

  nlohmann::json ToJson() const;
};

// Errors are null in the summary where they were not measured (no calibration data).
// seconds_solve sums the linears' own solve times; phases are the runner's wall clock.
nlohmann::json Summary(const nlohmann::json& modules, double seconds_total, double seconds_solve,
                       const JobPhases& phases);

}  // namespace qshard
