#include "tools/qshard/bench_flops.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "kernels/cpu/blas.h"
#include "tools/qshard/bench_support.h"

namespace qshard::cli {

double GptqFactorFlops(int64_t cols) { return std::pow(static_cast<double>(cols), 3) / 3.0; }

double GptqSweepFlops(int64_t rows, int64_t cols, int group_size) {
  return static_cast<double>(rows) * cols * (cols + std::max(group_size, 0));
}

double MeasureSgemmRate(int repeats) {
  constexpr int64_t n = 2048;
  std::vector<float> a(n * n, 1.0f), b(n * n, 0.5f), c(n * n);
  kernels::Gemm(n, n, n, a.data(), b.data(), false, c.data());  // warm-up: threads, pages
  double best = 0.0;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    const auto start = std::chrono::steady_clock::now();
    kernels::Gemm(n, n, n, a.data(), b.data(), false, c.data());
    best = std::max(best, 2.0 * n * n * n / SecondsSince(start));
  }
  return best;
}

}  // namespace qshard::cli
