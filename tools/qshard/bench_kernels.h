// `qshard bench kernels`: the CPU GPTQ kernels (kernels/cpu/gptq_cpu_gemm.h) on synthetic layers
// of K×N inputs×outputs for several token counts: median seconds after a warm-up, GB/s of
// weights streamed, GFLOP/s, and the ratio to fp32 BLAS (sgemv at one token, sgemm above)
// measured in the same run on the same shape.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tools/qshard/bench_support.h"

namespace qshard::cli {

struct KernelBenchOptions {
  BenchCommon common;
  std::vector<std::pair<int64_t, int64_t>> shapes;  // (K, N)
  std::vector<int64_t> tokens;
  std::vector<int> bits;
  int group_size = 128;
  bool all_variants = false;  // also the slower variants this CPU has, not only the best
};

absl::StatusOr<std::vector<nlohmann::json>> RunKernelBench(const KernelBenchOptions& options);

std::vector<BenchColumn> KernelBenchColumns();

}  // namespace qshard::cli
