// qshard_cuda_solver_bench: per-layer calibration statistics and GPTQ solve times on the
// device for OPT-1.3B, -13B and -175B layer shapes (synthetic inputs and weights, real shapes,
// 2048-token windows). Statistics are timed per window with CUDA events and projected to the
// 128 windows of the GPTQ paper's calibration set (the big models run fewer windows so that
// the whole run fits a short GPU session); the factorization and the sweep are timed on the
// host clock around calls that end synchronized. One row per layer shape, plus one projection
// per model; with --json the table goes to stderr and stdout carries one JSON object per row.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/bench_output.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/device_random.cuh"
#include "kernels/cuda/gptq_factor_device.h"
#include "kernels/cuda/gptq_solve_device.h"
#include "kernels/cuda/hessian_device.h"
#include "kernels/cuda/program_setup.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {
namespace {

constexpr int64_t kWindowTokens = 2048;
constexpr int kPaperWindows = 128;  // GPTQ's calibration set: 128 windows of 2048 tokens

struct Model {
  const char* name;
  int64_t hidden, ffn;
  int blocks;   // transformer blocks
  int windows;  // windows this benchmark runs per layer
};
constexpr Model kModels[] = {
    {"opt-1.3b", 2048, 8192, 24, 32},
    {"opt-13b", 5120, 20480, 40, 16},
    {"opt-175b", 12288, 49152, 96, 4},
};

// The three shapes of a block's linear layers: q, k, v and out (hidden → hidden), fc1 and fc2.
struct Layer {
  const char* name;
  bool in_is_ffn, out_is_ffn;
};
constexpr Layer kLayers[] = {{"attention", false, false}, {"fc1", false, true}, {"fc2", true, false}};

struct Options {
  bool json = false;
  int model = -1;    // index into kModels; −1: all
  int windows = 0;   // 0: the model's default
  GptqSolveSpec spec;
};

struct Timing {
  double stats_s_per_window = 0.0, factor_s = 0.0, sweep_s = 0.0;
};

// Calibration-like inputs: channels whose scales span 20× (so act-order has work), N(0, 1)
// by a Box–Muller pair of hashes, per channel scale by a third.
__global__ void FillInputs(float* x, int64_t rows, int64_t dim, uint64_t seed) {
  const int64_t count = rows * dim;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float u1 = fmaxf(UnitFloat(seed, 2 * e), 1e-7f), u2 = UnitFloat(seed, 2 * e + 1);
    const float normal = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    const float scale = expf(3.0f * UnitFloat(seed ^ 0x5bd1e995ull, e % dim) - 1.5f);
    x[e] = scale * normal;
  }
}

// Weights roughly N(0, 0.02²) (a sum of four uniforms, scaled to that variance).
__global__ void FillWeights(float* w, int64_t count, uint64_t seed) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int k = 0; k < 4; ++k) sum += UnitFloat(seed, 4 * e + k);
    w[e] = 0.02f * 1.7320508f * (sum - 2.0f);
  }
}

constexpr unsigned kFillBlocks = 4096;
constexpr unsigned kFillThreads = 256;

// Peak device bytes of BenchLayer (gptq_factor_device.h, gptq_solve_device.h): statistics hold
// the float64 sum, its float32 scratch and a window; the factorization the sum, the float64
// work matrix, the float32 coefficients and the weight; the sweep the sum, the coefficients,
// the weight, its three working copies and the codes.
double PeakBytes(int64_t in, int64_t out) {
  const double square = static_cast<double>(in) * in, weight = static_cast<double>(in) * out;
  const double statistics = 12 * square + 4.0 * kWindowTokens * in;
  const double factorization = 20 * square + 4 * weight;
  const double sweep = 12 * square + 20 * weight;
  return std::max({statistics, factorization, sweep});
}

CudaStatus BenchLayer(const SolverContext& context, int64_t in, int64_t out, int windows, const GptqSolveSpec& spec,
                      Timing& timing, DeviceGptqResult& result) {
  const cudaStream_t stream = context.stream();
  DeviceHessianSum hessian;
  QSHARD_CUDA_RETURN_IF_ERROR(hessian.Reset(in, stream));
  {
    DeviceBuffer<float> x;
    QSHARD_CUDA_RETURN_IF_ERROR(x.Allocate(static_cast<size_t>(kWindowTokens) * in));
    cudaEvent_t start = nullptr, stop = nullptr;
    QSHARD_CUDA_TRY(cudaEventCreate(&start));
    QSHARD_CUDA_TRY(cudaEventCreate(&stop));
    float total_ms = 0.0f;
    CudaStatus status;
    for (int w = 0; w < windows && status.ok(); ++w) {
      FillInputs<<<kFillBlocks, kFillThreads, 0, stream>>>(x.get(), kWindowTokens, in, 1000 + w);
      cudaEventRecord(start, stream);
      status = hessian.AddWindow(context, x.get(), kWindowTokens);
      cudaEventRecord(stop, stream);
      float ms = 0.0f;
      if (status.ok() && cudaEventSynchronize(stop) == cudaSuccess && cudaEventElapsedTime(&ms, start, stop) == cudaSuccess)
        total_ms += ms;
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    QSHARD_CUDA_RETURN_IF_ERROR(status);
    QSHARD_CUDA_TRY(cudaGetLastError());
    timing.stats_s_per_window = total_ms / 1000.0 / windows;
  }
  hessian.ReleaseScratch();

  DeviceBuffer<float> weight;
  QSHARD_CUDA_RETURN_IF_ERROR(weight.Allocate(static_cast<size_t>(out) * in));
  FillWeights<<<kFillBlocks, kFillThreads, 0, stream>>>(weight.get(), static_cast<int64_t>(weight.size()), 7);
  QSHARD_CUDA_CHECK_LAUNCH("FillWeights");
  QSHARD_CUDA_TRY(cudaStreamSynchronize(stream));

  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  DeviceInverseHessianFactor factor;
  QSHARD_CUDA_RETURN_IF_ERROR(FactorInverseHessianOnDevice(context, hessian, spec, factor));
  const auto t1 = Clock::now();
  QSHARD_CUDA_RETURN_IF_ERROR(SweepGptqOnDevice(context, weight.get(), out, in, factor, spec, result));
  const auto t2 = Clock::now();
  timing.factor_s = std::chrono::duration<double>(t1 - t0).count();
  timing.sweep_s = std::chrono::duration<double>(t2 - t1).count();
  return CudaStatus();
}

void PrintLayer(const Options& options, const Model& model, const Layer& layer, int64_t in, int64_t out, int windows,
                const Timing& t, const DeviceGptqResult& result, const std::string& device, const std::string& date) {
  const double layer_s = kPaperWindows * t.stats_s_per_window + t.factor_s + t.sweep_s;
  std::FILE* table = options.json ? stderr : stdout;
  std::fprintf(table, "%-9s %-9s %6lld %6lld %4d %12.4f %12.3f %9.3f %9.3f %11.3f %6g %11.5g\n", model.name,
               layer.name, static_cast<long long>(in), static_cast<long long>(out), windows, t.stats_s_per_window,
               kPaperWindows * t.stats_s_per_window, t.factor_s, t.sweep_s, layer_s, result.damp_used,
               result.proxy_error);
  if (options.json) {
    std::printf("{\"row\":\"layer\",\"model\":\"%s\",\"layer\":\"%s\",\"in\":%lld,\"out\":%lld,\"bits\":%d,"
                "\"group_size\":%d,\"act_order\":%s,\"window_tokens\":%lld,\"windows\":%d,"
                "\"stats_s_per_window\":%.6f,\"stats_s_128_windows\":%.4f,\"factor_s\":%.4f,\"sweep_s\":%.4f,"
                "\"layer_s_128_windows\":%.4f,\"damp\":%g,\"damp_retries\":%d,\"proxy_error\":%.6g,"
                "\"device\":\"%s\",\"date\":\"%s\"}\n",
                model.name, layer.name, static_cast<long long>(in), static_cast<long long>(out), options.spec.bits,
                options.spec.group_size, options.spec.act_order ? "true" : "false",
                static_cast<long long>(kWindowTokens), windows, t.stats_s_per_window,
                kPaperWindows * t.stats_s_per_window, t.factor_s, t.sweep_s, layer_s, result.damp_used,
                result.damp_retries, result.proxy_error, JsonEscape(device).c_str(), date.c_str());
  }
  std::fflush(table);
  std::fflush(stdout);
}

// A block has three inputs of width hidden (q/k/v share one, out and fc1 one each) and one of
// width ffn, and solves four attention layers, fc1 and fc2. Forward passes are not counted.
void PrintModel(const Options& options, const Model& model, const Timing timings[3], const std::string& device,
                const std::string& date) {
  const Timing &attention = timings[0], &fc1 = timings[1], &fc2 = timings[2];
  const double stats_s = kPaperWindows * (3 * attention.stats_s_per_window + fc2.stats_s_per_window);
  const double solve_s = 4 * (attention.factor_s + attention.sweep_s) + fc1.factor_s + fc1.sweep_s + fc2.factor_s +
                         fc2.sweep_s;
  const double model_h = model.blocks * (stats_s + solve_s) / 3600.0;
  std::FILE* table = options.json ? stderr : stdout;
  std::fprintf(table, "%-9s block: statistics %.3f s + solves %.3f s; %d blocks: %.3f h (no forward passes)\n",
               model.name, stats_s, solve_s, model.blocks, model_h);
  if (options.json) {
    std::printf("{\"row\":\"model\",\"model\":\"%s\",\"blocks\":%d,\"block_stats_s_128_windows\":%.4f,"
                "\"block_solve_s\":%.4f,\"model_h_without_forward\":%.4f,\"device\":\"%s\",\"date\":\"%s\"}\n",
                model.name, model.blocks, stats_s, solve_s, model_h, JsonEscape(device).c_str(), date.c_str());
  }
  std::fflush(table);
  std::fflush(stdout);
}

int Main(int argc, char** argv) {
  Options options;
  options.spec.group_size = 128;
  for (int a = 1; a < argc; ++a) {
    const bool has_value = a + 1 < argc;
    if (std::strcmp(argv[a], "--json") == 0) {
      options.json = true;
    } else if (std::strcmp(argv[a], "--act-order") == 0) {
      options.spec.act_order = true;
    } else if (std::strcmp(argv[a], "--model") == 0 && has_value) {
      options.model = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--windows") == 0 && has_value) {
      options.windows = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--group-size") == 0 && has_value) {
      options.spec.group_size = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--bits") == 0 && has_value) {
      options.spec.bits = std::atoi(argv[++a]);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--json] [--model 0|1|2] [--windows N] [--bits B] [--group-size G] [--act-order]\n"
                   "models: 0 opt-1.3b, 1 opt-13b, 2 opt-175b\n",
                   argv[0]);
      return 1;
    }
  }
  const CudaStatus valid = ValidateGptqSolveSpec(options.spec);
  if (!valid.ok() || options.windows < 0 || options.model >= static_cast<int>(std::size(kModels))) {
    std::fprintf(stderr, "bad options: %s\n", valid.ok() ? "model or windows out of range" : valid.message().c_str());
    return 1;
  }
  cudaDeviceProp props{};
  cudaStream_t stream = nullptr;
  if (const int exit_now = StartBench(props, stream); exit_now >= 0) return exit_now;
  const std::string date = UtcTimestamp();
  std::FILE* table = options.json ? stderr : stdout;
  std::fprintf(table, "device: %s (sm_%d%d, %.0f GiB), %s; %d-bit, group %d, act-order %s, %lld-token windows\n",
               props.name, props.major, props.minor, props.totalGlobalMem / 1073741824.0, date.c_str(),
               options.spec.bits, options.spec.group_size, options.spec.act_order ? "on" : "off",
               static_cast<long long>(kWindowTokens));
  std::fprintf(table, "%-9s %-9s %6s %6s %4s %12s %12s %9s %9s %11s %6s %11s\n", "model", "layer", "in", "out", "win",
               "stats_s/win", "stats_s/128", "factor_s", "sweep_s", "layer_s/128", "damp", "proxy");
  return RunOnContext(stream, stderr, [&](const SolverContext& context) {
    int status = 0;
    for (int m = 0; m < static_cast<int>(std::size(kModels)); ++m) {
      if (options.model >= 0 && options.model != m) continue;
      const Model& model = kModels[m];
      const int windows = options.windows > 0 ? options.windows : model.windows;
      Timing timings[3];
      bool complete = true;
      for (int l = 0; l < 3 && complete; ++l) {
        const Layer& layer = kLayers[l];
        const int64_t in = layer.in_is_ffn ? model.ffn : model.hidden, out = layer.out_is_ffn ? model.ffn : model.hidden;
        size_t free_bytes = 0, total_bytes = 0;
        if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess && PeakBytes(in, out) > 0.95 * free_bytes) {
          std::fprintf(stderr, "SKIP %s %s: needs about %.1f GB, %.1f GB free\n", model.name, layer.name,
                       PeakBytes(in, out) / 1e9, free_bytes / 1e9);
          complete = false;
          break;
        }
        DeviceGptqResult result;
        const CudaStatus run = BenchLayer(context, in, out, windows, options.spec, timings[l], result);
        if (!run.ok()) {
          // A failure ends this model, not the run.
          std::fprintf(stderr, "ERROR %s %s: %s\n", model.name, layer.name, run.message().c_str());
          complete = false;
          status = kExitCudaError;
          cudaGetLastError();
          break;
        }
        PrintLayer(options, model, layer, in, out, windows, timings[l], result, props.name, date);
      }
      if (complete) PrintModel(options, model, timings, props.name, date);
    }
    return status;
  });
}

}  // namespace
}  // namespace qshard::gpu

int main(int argc, char** argv) { return qshard::gpu::Main(argc, argv); }
