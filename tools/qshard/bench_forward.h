// `qshard bench forward`: tokens/s of the C++ forward pass (token ids to logits, best of the
// repeats; worker/eval/forward_benchmark.h) and, in the same run, of the plain-PyTorch
// reference (bench/forward_reference.py) on the same token ids, windows and thread count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tools/qshard/bench_support.h"

namespace qshard::cli {

struct ForwardBenchOptions {
  BenchCommon common;
  std::string model;
  std::string text;  // token ids from this text (evaluation protocol); empty: seeded random ids
  int64_t seqlen = 512;
  int64_t windows = 40;
  int64_t batch_windows = 4;
  uint32_t seed = 0;
};

absl::StatusOr<nlohmann::json> RunForwardBench(const ForwardBenchOptions& options);

std::vector<BenchColumn> ForwardBenchColumns();

}  // namespace qshard::cli
