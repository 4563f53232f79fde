#include "tools/qshard/bench_kernels.h"

#include <functional>
#include <iostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "kernels/cpu/blas.h"
#include "kernels/cpu/blas_core.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gptq_cpu_gemm.h"
#include "kernels/cpu/huge_page_allocator.h"
#include "kernels/layout/gptq_packed.h"

namespace qshard::cli {
namespace {

using kernels::CpuVariant;
using kernels::GptqActivations;

// A random layer straight in the packed layout (every bit pattern is a valid set of codes), so
// that the largest shapes need no unpacked copy.
struct PackedLayer {
  std::vector<uint32_t> qweight, qzeros;
  std::vector<uint16_t> scales;
  std::vector<int32_t> g_idx;
  layout::GptqPackedView view;
};

PackedLayer RandomPackedLayer(int64_t k, int64_t n, int bits, int group_size, std::mt19937& rng) {
  PackedLayer l;
  const int64_t groups = (k + group_size - 1) / group_size;
  l.qweight.resize(layout::GptqQweightRows(k, bits) * n);
  l.qzeros.resize(groups * layout::GptqQzerosCols(n, bits));
  for (uint32_t& w : l.qweight) w = rng();
  for (uint32_t& w : l.qzeros) w = rng();
  std::uniform_real_distribution<float> scale(0.002f, 0.02f);
  l.scales.resize(groups * n);
  for (uint16_t& s : l.scales) s = FloatToHalf(scale(rng));
  l.g_idx.resize(k);
  for (int64_t i = 0; i < k; ++i) l.g_idx[i] = static_cast<int32_t>(i / group_size);
  l.view = {l.qweight.data(), l.qzeros.data(), l.scales.data(), l.g_idx.data(), k, n, groups, bits};
  return l;
}

nlohmann::json Row(const std::string& kernel, int weight_bits, int act_bits, int64_t k, int64_t n, int64_t tokens,
                   double seconds, double weight_bytes, double blas_seconds) {
  return {{"kernel", kernel},
          {"weight_bits", weight_bits},
          {"act_bits", act_bits},
          {"k", k},
          {"n", n},
          {"tokens", tokens},
          {"seconds", seconds},
          {"gb_per_s", weight_bytes / seconds / 1e9},
          {"gflop_per_s", 2.0 * static_cast<double>(tokens * k * n) / seconds / 1e9},
          {"vs_blas", blas_seconds / seconds}};
}

std::vector<CpuVariant> VariantsToRun(GptqActivations a, bool all) {
  std::vector<CpuVariant> run;
  if (!all) return {kernels::BestGptqVariant(a)};
  for (CpuVariant v : kernels::GptqVariants(a))
    if (v != CpuVariant::kGeneric && kernels::CpuHasVariant(v)) run.push_back(v);
  return run;
}

}  // namespace

absl::StatusOr<std::vector<nlohmann::json>> RunKernelBench(const KernelBenchOptions& options) {
  const int threads = options.common.threads;
  kernels::SetBlasThreads(threads);
  ThreadPool pool(threads);
  std::mt19937 rng(1);
  std::vector<nlohmann::json> rows;
  for (const auto& [k, n] : options.shapes) {
    int64_t max_tokens = 1;
    for (int64_t t : options.tokens) max_tokens = std::max(max_tokens, t);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(max_tokens * k), y(max_tokens * n);
    // The BLAS baseline's weight in huge pages too, as the tiled codes are: the same TLB footing.
    std::vector<float, kernels::HugePageAllocator<float>> dense(k * n);
    for (float& v : x) v = normal(rng);
    for (float& v : dense) v = normal(rng) * 0.01f;
    std::vector<std::pair<int, kernels::GptqTiledWeights>> layers;
    for (int bits : options.bits) {
      std::cerr << "bench kernels: K " << k << " N " << n << " W" << bits << ": packing" << std::endl;
      const PackedLayer packed = RandomPackedLayer(k, n, bits, options.group_size, rng);
      QSHARD_ASSIGN_OR_RETURN(kernels::GptqTiledWeights tiled, kernels::TileGptq(packed.view));
      layers.emplace_back(bits, std::move(tiled));
    }
    for (int64_t tokens : options.tokens) {
      std::cerr << "bench kernels: K " << k << " N " << n << " tokens " << tokens << std::endl;
      std::vector<TimedCandidate> candidates;
      candidates.push_back({"fp32-blas", 32, 32, 4.0 * k * n, [&] {
                              if (tokens == 1) {
                                kernels::Gemv(n, k, dense.data(), x.data(), y.data());
                              } else {
                                kernels::Gemm(tokens, n, k, x.data(), dense.data(), /*b_transposed=*/true, y.data());
                              }
                            },
                            {}});
      absl::Status status;
      for (const auto& [bits, tiled] : layers) {
        const double weight_bytes = static_cast<double>(tiled.CodeBytes()) +
                                    static_cast<double>(tiled.scale.size() + tiled.bias.size()) * sizeof(float);
        for (GptqActivations a : {GptqActivations::kFp32, GptqActivations::kInt8}) {
          for (CpuVariant v : VariantsToRun(a, options.all_variants)) {
            const int act_bits = a == GptqActivations::kFp32 ? 32 : 8;
            candidates.push_back({absl::StrCat("w", bits, "a", act_bits, "-", kernels::CpuVariantName(v)), bits,
                                  act_bits, weight_bytes, [&, a, v, layer = &tiled] {
                                    status.Update(kernels::GptqGemm(*layer, x.data(), tokens, y.data(), a, v, &pool));
                                  },
                                  {}});
          }
        }
      }
      TimeInterleaved(options.common.repeats, candidates);
      QSHARD_RETURN_IF_ERROR(status);
      const double blas = Median(candidates[0].seconds);
      for (const TimedCandidate& c : candidates)
        rows.push_back(Row(c.kernel, c.weight_bits, c.act_bits, k, n, tokens, Median(c.seconds), c.weight_bytes, blas));
    }
  }
  for (nlohmann::json& row : rows) {
    row["cpu"] = CpuModelName();
    row["cpu_features"] = kernels::GetCpuFeatures().ToString();
    row["blas_core"] = kernels::BlasCoreName();  // the fp32 baseline's kernels
    row["threads"] = threads;
    row["group_size"] = options.group_size;
  }
  return rows;
}

std::vector<BenchColumn> KernelBenchColumns() {
  return {{"kernel", "kernel"},         {"k", "K"},
          {"n", "N"},                   {"tokens", "tokens"},
          {"seconds", "median s", 6},   {"gb_per_s", "weight GB/s", 1},
          {"gflop_per_s", "GFLOP/s", 1}, {"vs_blas", "x fp32 BLAS", 2}};
}

}  // namespace qshard::cli
