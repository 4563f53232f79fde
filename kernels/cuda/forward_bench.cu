// qshard_cuda_forward_bench: one decoder layer's forward pass on the device (layer_forward.h,
// float32 weights and activations, cuBLAS SGEMM without TF32) for OPT-1.3B-, 13B- and
// 175B-shaped layers and LLaMA-7B and LLaMA-2-70B (GQA 8:1) layers on one window of 2048 tokens,
// with synthetic weights: milliseconds per window (median of --runs after --warmup, each run
// between two CUDA events), achieved TFLOP/s against the layer's FLOP count
// (LayerForwardFlops), and the causal attention alone on the same shapes. With --json the
// table goes to stderr and stdout carries one JSON object per row.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/attention_device.h"
#include "kernels/cuda/bench_output.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/device_random.cuh"
#include "kernels/cuda/layer_forward.h"
#include "kernels/cuda/program_setup.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {
namespace {

struct Model {
  const char* name;
  LayerKind kind;
  int64_t hidden, ffn, heads, kv_heads;
};
constexpr Model kModels[] = {
    {"opt-1.3b", LayerKind::kOpt, 2048, 8192, 32, 32},
    {"opt-13b", LayerKind::kOpt, 5120, 20480, 40, 40},
    {"opt-175b", LayerKind::kOpt, 12288, 49152, 96, 96},
    {"llama-7b", LayerKind::kLlama, 4096, 11008, 32, 32},
    {"llama-2-70b", LayerKind::kLlama, 8192, 28672, 64, 8},
};

struct Options {
  bool json = false;
  int model = -1;  // index into kModels; −1: all
  int64_t tokens = 2048;
  int runs = 10;
  int warmup = 2;
};

LayerArchitecture ArchitectureOf(const Model& m) {
  LayerArchitecture a;
  a.kind = m.kind;
  a.hidden = m.hidden;
  a.ffn = m.ffn;
  a.heads = m.heads;
  a.kv_heads = m.kv_heads;
  a.head_dim = m.hidden / m.heads;
  const bool opt = m.kind == LayerKind::kOpt;
  a.norm_eps = opt ? 1e-5 : 1e-6;
  a.attention_bias = a.mlp_bias = opt;
  return a;
}

// center + U(−half_width, half_width), from a counter-based hash (no state, milliseconds per GB).
__global__ void FillUniform(float* x, int64_t count, uint64_t seed, float center, float half_width) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[e] = center + half_width * (2.0f * UnitFloat(seed, e) - 1.0f);
  }
}

CudaStatus Fill(float* x, int64_t count, uint64_t seed, float center, float half_width, cudaStream_t stream) {
  FillUniform<<<4096, 256, 0, stream>>>(x, count, seed, center, half_width);
  QSHARD_CUDA_CHECK_LAUNCH("FillUniform");
  return CudaStatus();
}

// Every tensor of one layer carved out of one allocation, filled like RandomHostLayer's.
struct BenchLayer {
  DeviceBuffer<float> storage;
  DeviceLayerWeights weights;
};

int64_t LayerFloats(const LayerArchitecture& a) {
  const int64_t linears = 2 * a.hidden * a.q_width() + 2 * a.hidden * a.kv_width() + (a.llama() ? 3 : 2) * a.hidden * a.ffn;
  const int64_t biases = a.attention_bias ? a.q_width() + 2 * a.kv_width() + a.hidden : 0;
  return linears + biases + (a.mlp_bias ? (a.llama() ? 2 : 1) * a.ffn + a.hidden : 0) + 4 * a.hidden;
}

CudaStatus MakeLayer(const LayerArchitecture& a, cudaStream_t stream, BenchLayer& layer) {
  QSHARD_CUDA_RETURN_IF_ERROR(layer.storage.Allocate(static_cast<size_t>(LayerFloats(a))));
  float* next = layer.storage.get();
  uint64_t seed = 1;
  const auto take = [&](int64_t count, float center, float half_width, const float*& pointer) -> CudaStatus {
    float* block = next;
    next += count;
    pointer = block;
    return Fill(block, count, seed++ * 0x9E3779B97F4A7C15ull, center, half_width, stream);
  };
  const auto linear = [&](int64_t out, int64_t in, bool bias, DeviceLinear& l) -> CudaStatus {
    QSHARD_CUDA_RETURN_IF_ERROR(take(out * in, 0.0f, std::sqrt(3.0f / in), l.weight));
    return bias ? take(out, 0.0f, 0.1f, l.bias) : CudaStatus();
  };
  DeviceLayerWeights& w = layer.weights;
  w.arch = a;
  QSHARD_CUDA_RETURN_IF_ERROR(linear(a.q_width(), a.hidden, a.attention_bias, w.q));
  QSHARD_CUDA_RETURN_IF_ERROR(linear(a.kv_width(), a.hidden, a.attention_bias, w.k));
  QSHARD_CUDA_RETURN_IF_ERROR(linear(a.kv_width(), a.hidden, a.attention_bias, w.v));
  QSHARD_CUDA_RETURN_IF_ERROR(linear(a.hidden, a.q_width(), a.attention_bias, w.o));
  QSHARD_CUDA_RETURN_IF_ERROR(linear(a.ffn, a.hidden, a.mlp_bias, w.up));
  if (a.llama()) QSHARD_CUDA_RETURN_IF_ERROR(linear(a.ffn, a.hidden, a.mlp_bias, w.gate));
  QSHARD_CUDA_RETURN_IF_ERROR(linear(a.hidden, a.ffn, a.mlp_bias, w.down));
  QSHARD_CUDA_RETURN_IF_ERROR(take(a.hidden, 1.0f, 0.2f, w.norm1_weight));
  QSHARD_CUDA_RETURN_IF_ERROR(take(a.hidden, 1.0f, 0.2f, w.norm2_weight));
  if (!a.llama()) {
    QSHARD_CUDA_RETURN_IF_ERROR(take(a.hidden, 0.0f, 0.1f, w.norm1_bias));
    QSHARD_CUDA_RETURN_IF_ERROR(take(a.hidden, 0.0f, 0.1f, w.norm2_bias));
  }
  return ValidateDeviceLayer(w);
}

// Two events, destroyed on every way out.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  ~EventPair() {
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
  }
};

// Median and minimum milliseconds of `run` over options.runs calls after options.warmup, each
// between two events on `stream`.
CudaStatus TimeRuns(const std::function<CudaStatus()>& run, const Options& options, cudaStream_t stream,
                    double& median_ms, double& min_ms) {
  for (int i = 0; i < options.warmup; ++i) QSHARD_CUDA_RETURN_IF_ERROR(run());
  EventPair events;
  QSHARD_CUDA_TRY(cudaEventCreate(&events.start));
  QSHARD_CUDA_TRY(cudaEventCreate(&events.stop));
  std::vector<float> times(options.runs);
  for (float& ms : times) {
    QSHARD_CUDA_TRY(cudaEventRecord(events.start, stream));
    QSHARD_CUDA_RETURN_IF_ERROR(run());
    QSHARD_CUDA_TRY(cudaEventRecord(events.stop, stream));
    QSHARD_CUDA_TRY(cudaEventSynchronize(events.stop));
    QSHARD_CUDA_TRY(cudaEventElapsedTime(&ms, events.start, events.stop));
  }
  std::sort(times.begin(), times.end());
  median_ms = times[times.size() / 2];
  min_ms = times.front();
  return CudaStatus();
}

struct Row {
  double median_ms = 0.0, min_ms = 0.0, attention_ms = 0.0, flops = 0.0, attention_flops = 0.0,
         executed_attention_flops = 0.0, weight_bytes = 0.0, scratch_bytes = 0.0;
};

CudaStatus BenchModel(const SolverContext& context, const Model& m, const Options& options, Row& row) {
  const LayerArchitecture a = ArchitectureOf(m);
  const cudaStream_t stream = context.stream();
  const int64_t tokens = options.tokens;
  BenchLayer layer;
  QSHARD_CUDA_RETURN_IF_ERROR(MakeLayer(a, stream, layer));
  DeviceBuffer<float> in, out;
  QSHARD_CUDA_RETURN_IF_ERROR(in.Allocate(static_cast<size_t>(tokens * a.hidden)));
  QSHARD_CUDA_RETURN_IF_ERROR(out.Allocate(in.size()));
  QSHARD_CUDA_RETURN_IF_ERROR(Fill(in.get(), static_cast<int64_t>(in.size()), 99, 0.0f, 1.7f, stream));
  LayerForwardScratch scratch;
  QSHARD_CUDA_RETURN_IF_ERROR(TimeRuns(
      [&] { return RunLayerForwardOnDevice(context, layer.weights, in.get(), out.get(), tokens, scratch); }, options,
      stream, row.median_ms, row.min_ms));

  // The attention alone on q, k, v of the same shapes (random: its cost does not depend on values).
  const AttentionDims dims{tokens, a.heads, a.kv_heads, a.head_dim};
  DeviceBuffer<float> q, kv, scores, attention_out;
  QSHARD_CUDA_RETURN_IF_ERROR(q.Allocate(static_cast<size_t>(tokens * a.q_width())));
  QSHARD_CUDA_RETURN_IF_ERROR(kv.Allocate(static_cast<size_t>(2 * tokens * a.kv_width())));
  QSHARD_CUDA_RETURN_IF_ERROR(scores.Allocate(static_cast<size_t>(AttentionScratchFloats(dims))));
  QSHARD_CUDA_RETURN_IF_ERROR(attention_out.Allocate(q.size()));
  QSHARD_CUDA_RETURN_IF_ERROR(Fill(q.get(), static_cast<int64_t>(q.size()), 5, 0.0f, 1.7f, stream));
  QSHARD_CUDA_RETURN_IF_ERROR(Fill(kv.get(), static_cast<int64_t>(kv.size()), 6, 0.0f, 1.7f, stream));
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.head_dim)));
  double attention_min_ms = 0.0;
  QSHARD_CUDA_RETURN_IF_ERROR(TimeRuns(
      [&] {
        return CausalAttentionOnDevice(context.blas(), stream, dims, q.get(), kv.get(), kv.get() + tokens * a.kv_width(),
                                       scale, scores.get(), attention_out.get());
      },
      options, stream, row.attention_ms, attention_min_ms));
  row.flops = LayerForwardFlops(a, tokens);
  row.attention_flops = CausalAttentionFlops(dims);
  row.executed_attention_flops = ExecutedAttentionFlops(dims);
  row.weight_bytes = static_cast<double>(layer.storage.bytes());
  row.scratch_bytes = static_cast<double>(scratch.bytes());
  return CudaStatus();
}

void PrintRow(const Options& options, const Model& m, const Row& r, const std::string& device, const std::string& date) {
  const LayerArchitecture a = ArchitectureOf(m);
  const double tflops = r.flops / (r.median_ms * 1e-3) / 1e12;
  const double attention_tflops = r.attention_flops / (r.attention_ms * 1e-3) / 1e12;
  std::FILE* table = options.json ? stderr : stdout;
  std::fprintf(table, "%-12s %6lld %6lld %4lld/%-3lld %6lld %10.3f %10.3f %8.2f %10.3f %8.2f %7.1f%%\n", m.name,
               static_cast<long long>(a.hidden), static_cast<long long>(a.ffn), static_cast<long long>(a.heads),
               static_cast<long long>(a.kv_heads), static_cast<long long>(options.tokens), r.median_ms, r.min_ms,
               tflops, r.attention_ms, attention_tflops, 100.0 * r.attention_ms / r.median_ms);
  if (options.json) {
    std::printf("{\"kernel\":\"fp32-cublas-layer\",\"model\":\"%s\",\"arch\":\"%s\",\"hidden\":%lld,\"ffn\":%lld,"
                "\"heads\":%lld,\"kv_heads\":%lld,\"head_dim\":%lld,\"tokens\":%lld,\"runs\":%d,\"median_ms\":%.4f,"
                "\"min_ms\":%.4f,\"flops\":%.6g,\"tflops\":%.4f,\"attention_ms\":%.4f,\"attention_flops\":%.6g,"
                "\"attention_executed_flops\":%.6g,\"attention_tflops\":%.4f,\"weight_bytes\":%.0f,"
                "\"scratch_bytes\":%.0f,\"device\":\"%s\",\"date\":\"%s\"}\n",
                m.name, a.llama() ? "llama" : "opt", static_cast<long long>(a.hidden), static_cast<long long>(a.ffn),
                static_cast<long long>(a.heads), static_cast<long long>(a.kv_heads),
                static_cast<long long>(a.head_dim), static_cast<long long>(options.tokens), options.runs, r.median_ms,
                r.min_ms, r.flops, tflops, r.attention_ms, r.attention_flops, r.executed_attention_flops,
                attention_tflops, r.weight_bytes, r.scratch_bytes, JsonEscape(device).c_str(), date.c_str());
  }
  std::fflush(table);
  std::fflush(stdout);
}

bool ParseOptions(int argc, char** argv, Options& options) {
  for (int a = 1; a < argc; ++a) {
    const bool has_value = a + 1 < argc;
    if (std::strcmp(argv[a], "--json") == 0) {
      options.json = true;
    } else if (std::strcmp(argv[a], "--model") == 0 && has_value) {
      options.model = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--tokens") == 0 && has_value) {
      options.tokens = std::atoll(argv[++a]);
    } else if (std::strcmp(argv[a], "--runs") == 0 && has_value) {
      options.runs = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--warmup") == 0 && has_value) {
      options.warmup = std::atoi(argv[++a]);
    } else {
      return false;
    }
  }
  return options.model < static_cast<int>(std::size(kModels)) && options.tokens > 0 && options.runs > 0 &&
         options.warmup >= 0;
}

int Main(int argc, char** argv) {
  Options options;
  if (!ParseOptions(argc, argv, options)) {
    std::fprintf(stderr,
                 "usage: %s [--json] [--model I] [--tokens T] [--runs N] [--warmup N]\n"
                 "models: 0 opt-1.3b, 1 opt-13b, 2 opt-175b, 3 llama-7b, 4 llama-2-70b\n",
                 argv[0]);
    return kExitFailed;
  }
  cudaDeviceProp props{};
  cudaStream_t stream = nullptr;
  if (const int exit_now = StartBench(props, stream); exit_now >= 0) return exit_now;
  const std::string date = UtcTimestamp();
  std::FILE* table = options.json ? stderr : stdout;
  std::fprintf(table, "device: %s (sm_%d%d, %.0f GiB), %s; float32 weights and activations, cuBLAS SGEMM (no TF32)\n",
               props.name, props.major, props.minor, props.totalGlobalMem / 1073741824.0, date.c_str());
  std::fprintf(table, "%-12s %6s %6s %8s %6s %10s %10s %8s %10s %8s %8s\n", "model", "hidden", "ffn", "heads", "tokens",
               "median_ms", "min_ms", "TFLOP/s", "attn_ms", "attn_TF", "attn%");
  return RunOnContext(stream, stderr, [&](const SolverContext& context) {
    int status = 0;
    for (int i = 0; i < static_cast<int>(std::size(kModels)); ++i) {
      if (options.model >= 0 && options.model != i) continue;
      const Model& m = kModels[i];
      const LayerArchitecture a = ArchitectureOf(m);
      const double needed = sizeof(float) * (LayerFloats(a) + 2.0 * options.tokens * a.hidden) +
                            LayerForwardScratchBytes(a, options.tokens);
      size_t free_bytes = 0, total_bytes = 0;
      if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess && needed > 0.9 * free_bytes) {
        std::fprintf(stderr, "SKIP %s: needs about %.1f GB, %.1f GB free\n", m.name, needed / 1e9, free_bytes / 1e9);
        continue;
      }
      Row row;
      const CudaStatus run = BenchModel(context, m, options, row);
      if (!run.ok()) {  // a failure ends this model, not the run
        std::fprintf(stderr, "ERROR %s: %s\n", m.name, run.message().c_str());
        status = kExitCudaError;
        cudaGetLastError();
        continue;
      }
      PrintRow(options, m, row, props.name, date);
    }
    return status;
  });
}

}  // namespace
}  // namespace qshard::gpu

int main(int argc, char** argv) { return qshard::gpu::Main(argc, argv); }
