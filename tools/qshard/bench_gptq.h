// `qshard bench gptq`: time the GPTQ solver on a synthetic layer (random weight, correlated
// activations with outlier channels, H summed by HessianSum) and, in the same run, the
// published algorithm in PyTorch (bench/gptq_torch.py) on the same W and H, with the relative
// output error tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) of both results so the speeds compare like for like.
// Beside seconds: the solve's FLOP count and rate, its factorization timed on its own, and
// the sgemm rate measured in the same run, so each row says how far it is from the machine's.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tools/qshard/bench_support.h"

namespace qshard::cli {

struct GptqBenchOptions {
  BenchCommon common;
  std::vector<std::pair<int64_t, int64_t>> shapes;  // (rows, cols) of each layer
  std::vector<int> group_sizes;                     // -1: per channel
  int64_t tokens = 8192;                            // calibration tokens behind H
  int bits = 4;
  bool act_order = false;
  uint32_t seed = 0;
};

// One row per (shape, group size), shapes in the outer loop.
absl::StatusOr<std::vector<nlohmann::json>> RunGptqBench(const GptqBenchOptions& options);

std::vector<BenchColumn> GptqBenchColumns();

}  // namespace qshard::cli
