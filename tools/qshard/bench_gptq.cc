#include "tools/qshard/bench_gptq.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/cpu/blas.h"
#include "tools/qshard/bench_flops.h"
#include "worker/calibration/hessian.h"
#include "worker/solvers/inverse_hessian.h"
#include "worker/solvers/proxy_error.h"
#include "worker/solvers/solver.h"

namespace qshard::cli {
namespace {

// Activations are built window by window, as calibration feeds them.
constexpr int64_t kWindowTokens = 512;
// Shape of the synthetic activations: a few dominant latent directions with decaying strength
// (real activations are far from isotropic), a full-rank noise floor, channel scales spread
// over about an order of magnitude, and a handful of channels ~20x larger than the rest, as
// LLaMA's outlier features are.
constexpr int64_t kLatentRank = 64;
constexpr float kNoise = 0.5f;
constexpr float kChannelScaleSpread = 0.5f;  // σ of log(channel scale)
constexpr int64_t kOutlierChannels = 4;
constexpr float kOutlierScale = 20.0f;

struct SyntheticLayer {
  Tensor weight;  // [rows, cols]
  HessianSum hessian;
};

SyntheticLayer MakeSyntheticLayer(int64_t rows, int64_t cols, int64_t tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  SyntheticLayer layer{Tensor({rows, cols}), HessianSum(cols)};
  const float weight_scale = 1.0f / std::sqrt(static_cast<float>(cols));
  for (float& v : layer.weight.values()) v = normal(rng) * weight_scale;

  const int64_t rank = std::min(kLatentRank, cols);
  std::vector<float> mixing(rank * cols);  // [rank, cols]
  for (int64_t k = 0; k < rank; ++k)
    for (int64_t c = 0; c < cols; ++c) mixing[k * cols + c] = normal(rng) * 3.0f / std::sqrt(1.0f + k);
  std::vector<float> channel_scale(cols);
  for (float& s : channel_scale) s = std::exp(kChannelScaleSpread * normal(rng));
  std::vector<int64_t> channels(cols);
  for (int64_t c = 0; c < cols; ++c) channels[c] = c;
  std::shuffle(channels.begin(), channels.end(), rng);
  for (int64_t i = 0; i < std::min(kOutlierChannels, cols); ++i) channel_scale[channels[i]] *= kOutlierScale;

  std::vector<float> latent(kWindowTokens * rank), x(kWindowTokens * cols);
  for (int64_t first = 0; first < tokens; first += kWindowTokens) {
    const int64_t n = std::min(kWindowTokens, tokens - first);
    for (int64_t i = 0; i < n * rank; ++i) latent[i] = normal(rng);
    kernels::Gemm(n, cols, rank, latent.data(), mixing.data(), /*b_transposed=*/false, x.data());
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < cols; ++c) x[t * cols + c] = (x[t * cols + c] + kNoise * normal(rng)) * channel_scale[c];
    layer.hessian.AddWindow(x.data(), n);
  }
  return layer;
}

struct QshardTiming {
  std::vector<double> seconds;
  std::vector<double> factor_seconds;  // FactorInverseHessian alone, timed apart from the solves
  Tensor dequantized;
};

absl::StatusOr<QshardTiming> TimeQshard(const SyntheticLayer& layer, const QuantSpec& spec, int repeats,
                                        ThreadPool& pool) {
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> solver, MakeSolver("gptq", spec));
  LayerProblem problem;
  problem.name = "bench layer";
  problem.weight = &layer.weight;
  problem.hessians = {&layer.hessian};
  problem.pool = &pool;
  QshardTiming timing;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    QSHARD_ASSIGN_OR_RETURN(QuantizedLinear result, solver->Solve(problem));
    timing.seconds.push_back(SecondsSince(start));
    timing.dequantized = std::move(result.dequantized);
  }
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    QSHARD_RETURN_IF_ERROR(FactorInverseHessian(layer.hessian, spec, &pool).status());
    timing.factor_seconds.push_back(SecondsSince(start));
  }
  return timing;
}

// Runs bench/gptq_torch.py on the files in `scratch` and measures its result's error; adds the
// baseline's fields to `row`, or a note saying why there is none.
void AddTorchBaseline(const GptqBenchOptions& options, const ScratchDir& scratch, const SyntheticLayer& layer,
                      int group_size, double reference_energy, nlohmann::json& row) {
  const auto fail = [&row](const absl::Status& status) {
    std::cerr << "bench gptq: no torch baseline: " << status.message() << std::endl;
    row["note"] = absl::StrCat("no torch baseline: ", std::string(status.message()));
  };
  const absl::StatusOr<std::string> script = BaselineScript(options.common.scripts, "gptq_torch.py");
  if (!script.ok()) return fail(script.status());
  const int64_t rows = layer.weight.dim(0), cols = layer.weight.dim(1);
  std::vector<std::string> argv = {options.common.python, *script,
                                   "--weight", scratch.File("weight.f32"),
                                   "--hessian", scratch.File("hessian.f32"),
                                   "--rows", std::to_string(rows),
                                   "--cols", std::to_string(cols),
                                   "--bits", std::to_string(options.bits),
                                   "--group-size", std::to_string(group_size),
                                   "--threads", std::to_string(options.common.threads),
                                   "--repeats", std::to_string(options.common.repeats),
                                   "--out", scratch.File("torch_result.f32")};
  if (options.act_order) argv.push_back("--act-order");
  const absl::StatusOr<nlohmann::json> baseline = RunForJson(argv);
  if (!baseline.ok()) return fail(baseline.status());
  Tensor dequantized({rows, cols});
  const absl::Status read =
      ReadRawFile(scratch.File("torch_result.f32"), dequantized.data(), rows * cols * sizeof(float));
  if (!read.ok()) return fail(read);
  const HessianSum* hessians[] = {&layer.hessian};
  const double torch_seconds = baseline->value("seconds", 0.0);
  row["torch_seconds"] = torch_seconds;
  row["torch_all_seconds"] = baseline->value("all_seconds", nlohmann::json::array());
  row["torch_rel_error"] = ProxyError(layer.weight, dequantized, hessians) / reference_energy;
  row["speedup"] = torch_seconds / row["qshard_seconds"].get<double>();
  row["baseline"] = absl::StrCat("bench/gptq_torch.py, torch ", baseline->value("torch", std::string("?")));
  row["blas"] = baseline->value("blas", std::string("?"));
}

absl::Status WriteBaselineInputs(const SyntheticLayer& layer, const ScratchDir& scratch) {
  QSHARD_RETURN_IF_ERROR(
      WriteRawFile(scratch.File("weight.f32"), layer.weight.data(), layer.weight.size() * sizeof(float)));
  const std::vector<double> normalized = layer.hessian.Normalized();
  const std::vector<float> hessian(normalized.begin(), normalized.end());
  return WriteRawFile(scratch.File("hessian.f32"), hessian.data(), hessian.size() * sizeof(float));
}

}  // namespace

absl::StatusOr<std::vector<nlohmann::json>> RunGptqBench(const GptqBenchOptions& options) {
  kernels::SetBlasThreads(options.common.threads);
  ThreadPool pool(options.common.threads);  // the worker's threads, as a job's solver gets them
  QSHARD_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Create());
  std::cerr << "bench gptq: measuring the sgemm rate" << std::endl;
  const double sgemm_rate = MeasureSgemmRate(options.common.repeats);
  std::vector<nlohmann::json> rows;
  for (const auto& [out, in] : options.shapes) {
    const std::string shape = absl::StrCat(out, "x", in);
    std::cerr << "bench gptq: " << shape << ": building H from " << options.tokens << " tokens" << std::endl;
    const SyntheticLayer layer = MakeSyntheticLayer(out, in, options.tokens, options.seed);
    QSHARD_RETURN_IF_ERROR(WriteBaselineInputs(layer, scratch));
    const HessianSum* hessians[] = {&layer.hessian};
    const double reference_energy = ProxyError(layer.weight, Tensor({out, in}), hessians);  // tr(W H Wᵀ)

    for (const int group_size : options.group_sizes) {
      QuantSpec spec;
      spec.bits = options.bits;
      spec.group_size = group_size;
      spec.act_order = options.act_order;
      std::cerr << absl::StrFormat("bench gptq: %s, %d bits, group %d: qshard", shape, options.bits, group_size)
                << std::endl;
      QSHARD_ASSIGN_OR_RETURN(QshardTiming timing, TimeQshard(layer, spec, options.common.repeats, pool));
      const double qshard_error = ProxyError(layer.weight, timing.dequantized, hessians) / reference_energy;
      const double seconds = Median(timing.seconds), factor_seconds = Median(timing.factor_seconds);
      const double flops = GptqFactorFlops(in) + GptqSweepFlops(out, in, group_size);
      nlohmann::json row = {{"bench", "gptq"},
                            {"shape", shape},
                            {"rows", out},
                            {"cols", in},
                            {"tokens", options.tokens},
                            {"bits", options.bits},
                            {"group_size", group_size},
                            {"act_order", options.act_order},
                            {"threads", options.common.threads},
                            {"repeats", options.common.repeats},
                            {"qshard_seconds", seconds},
                            {"qshard_all_seconds", timing.seconds},
                            {"qshard_gflops", flops / seconds * 1e-9},
                            {"factor_seconds", factor_seconds},
                            {"factor_gflops", GptqFactorFlops(in) / factor_seconds * 1e-9},
                            {"sweep_seconds", seconds - factor_seconds},
                            {"sweep_gflops", GptqSweepFlops(out, in, group_size) / (seconds - factor_seconds) * 1e-9},
                            {"solve_gflop", flops * 1e-9},
                            {"sgemm_gflops", sgemm_rate * 1e-9},
                            {"fraction_of_sgemm", flops / seconds / sgemm_rate},
                            {"qshard_rel_error", qshard_error},
                            {"cpu", CpuModelName()}};
      std::cerr << "bench gptq: torch baseline" << std::endl;
      AddTorchBaseline(options, scratch, layer, group_size, reference_energy, row);
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

std::vector<BenchColumn> GptqBenchColumns() {
  return {{"shape", "shape"},
          {"bits", "bits"},
          {"group_size", "group"},
          {"act_order", "act-order"},
          {"qshard_seconds", "qshard s", 4},
          {"qshard_gflops", "GFLOP/s", 1},
          {"fraction_of_sgemm", "of sgemm", 2},
          {"factor_seconds", "factor s", 4},
          {"sweep_seconds", "sweep s", 4},
          {"sgemm_gflops", "sgemm GFLOP/s", 1},
          {"torch_seconds", "torch s", 4},
          {"speedup", "speedup", 2},
          {"qshard_rel_error", "qshard rel err", 5},
          {"torch_rel_error", "torch rel err", 5}};
}

}  // namespace qshard::cli
