// `qshard bench bf16`: AdaRound's gradient products (kernels/cpu/bf16_gemm.h) on one thread, as
// AdaRound runs them: C[m, K] = A[m, K]·B[K, K] with B converted once, through vdpbf16ps where
// the CPU has it and through the AVX2 emulation, against float32 sgemm (OpenBLAS, one thread) on
// the same operands in the same run: seconds per product, GFLOP/s and the ratio to sgemm.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tools/qshard/bench_support.h"

namespace qshard::cli {

struct Bf16BenchOptions {
  BenchCommon common;
  std::vector<int64_t> widths = {128, 384, 1024};  // K: a linear's inputs (AdaRound's H is K × K)
  int64_t rows = 32;                               // m: AdaRound's product tile
};

absl::StatusOr<std::vector<nlohmann::json>> RunBf16Bench(const Bf16BenchOptions& options);

std::vector<BenchColumn> Bf16BenchColumns();

}  // namespace qshard::cli
