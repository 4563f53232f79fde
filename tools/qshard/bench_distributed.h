// qshard bench distributed: one quantization job run embedded and on 1, 2, 4... workers that
// dial a WorkerPool over loopback gRPC (threads of this process, each given its share of the
// cores): seconds, the time spent solving the layers' q/k/v groups (where Z-Fold and aespa
// split their per-linear work over workers), speed-up against one worker, the service's
// overhead against embedded, bytes moved per layer, and whether every run wrote the embedded
// run's bytes.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "engine/job_spec.h"
#include "nlohmann/json.hpp"
#include "tools/qshard/bench_support.h"

namespace qshard::cli {

struct DistributedBenchOptions {
  BenchCommon common;
  JobSpec spec;  // out_dir is a scratch directory per run
  std::vector<int> workers = {1, 2, 4};
};

absl::StatusOr<std::vector<nlohmann::json>> RunDistributedBench(const DistributedBenchOptions& options);
std::vector<BenchColumn> DistributedBenchColumns();

}  // namespace qshard::cli
