#include "tools/qshard/bench_bf16.h"

#include <algorithm>
#include <random>

#include "kernels/cpu/bf16_gemm.h"
#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_features.h"

namespace qshard::cli {
namespace {

// Products per timed call: one product at these sizes takes microseconds.
int64_t ProductsPerCall(int64_t m, int64_t k) { return std::max<int64_t>(1, (int64_t{1} << 27) / (m * k * k)); }

}  // namespace

absl::StatusOr<std::vector<nlohmann::json>> RunBf16Bench(const Bf16BenchOptions& options) {
  if (options.rows <= 0) return absl::InvalidArgumentError("--rows must be positive");
  const kernels::SingleThreadedBlas one_blas_thread;  // as AdaRound calls it
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<nlohmann::json> rows;
  for (const int64_t k : options.widths) {
    if (k <= 0) return absl::InvalidArgumentError("widths must be positive");
    const int64_t m = options.rows, calls = ProductsPerCall(m, k);
    std::vector<float> a(m * k), b(k * k), c(m * k);
    for (float& v : a) v = normal(rng) * 1e-3f;
    for (float& v : b) v = normal(rng);
    const kernels::Bf16Matrix packed(b.data(), k, k);
    const auto repeat = [calls](auto product) {
      return [calls, product] {
        for (int64_t i = 0; i < calls; ++i) product();
      };
    };
    std::vector<TimedCandidate> candidates;
    candidates.push_back({"fp32-sgemm", 32, 32, 0, repeat([&] { kernels::Gemm(m, k, k, a.data(), b.data(), false, c.data()); }), {}});
    if (kernels::Bf16Accelerated())
      candidates.push_back({"bf16-vdpbf16ps", 16, 16, 0, repeat([&] { kernels::MultiplyBf16(m, a.data(), k, packed, c.data()); }), {}});
    if (kernels::GetCpuFeatures().HasAvx2Fma())
      candidates.push_back({"bf16-emulated", 16, 16, 0, repeat([&] { kernels::MultiplyBf16Emulated(m, a.data(), k, packed, c.data()); }), {}});
    TimeInterleaved(options.common.repeats, candidates);
    const double sgemm = Median(candidates.front().seconds) / static_cast<double>(calls);
    for (const TimedCandidate& candidate : candidates) {
      const double seconds = Median(candidate.seconds) / static_cast<double>(calls);
      rows.push_back({{"kernel", candidate.kernel},
                      {"m", m},
                      {"k", k},
                      {"n", k},
                      {"seconds", seconds},
                      {"gflop_per_s", 2.0 * static_cast<double>(m * k * k) / seconds / 1e9},
                      {"vs_sgemm", sgemm / seconds},
                      {"cpu", CpuModelName()},
                      {"cpu_features", kernels::GetCpuFeatures().ToString()},
                      {"threads", 1}});
    }
  }
  return rows;
}

std::vector<BenchColumn> Bf16BenchColumns() {
  return {{"kernel", "kernel"},       {"m", "m"},
          {"k", "K"},                 {"seconds", "s per product", 7},
          {"gflop_per_s", "GFLOP/s", 1}, {"vs_sgemm", "x sgemm", 2}};
}

}  // namespace qshard::cli
