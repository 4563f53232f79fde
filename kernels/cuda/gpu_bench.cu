// qshard_cuda_bench: times the fused GPTQ kernels (w4a16, w8a16) against the fp16 cuBLAS
// baseline on decoding-size products of LLaMA-7B and OPT-175B layers, and W8A8 through cuBLASLt
// (activation quantization included) against the same baseline at 1 to 512 tokens on the kernel
// issue's shapes, in one run on one device.
// Each row is the median of --runs launches (after --warmup) timed with CUDA events; the layers
// are rotated among enough copies to exceed the L2 cache several times, so rows measure reads
// from device memory, not from L2. Prints a table; with --json the table goes to stderr and
// stdout carries one JSON object per row.
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "kernels/cuda/bench_output.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/device_random.cuh"
#include "kernels/cuda/gptq_baseline.h"
#include "kernels/cuda/gptq_dequant_gemm.h"
#include "kernels/cuda/gptq_layout.h"
#include "kernels/cuda/w8a8_matmul.h"
#include "kernels/layout/int8_channel_weights.h"
#include "kernels/cuda/gptq_mma_w4.h"
#include "kernels/cuda/ptx.cuh"

namespace qshard::gpu {
namespace {

constexpr int kGroupSize = 128;

struct Shape {
  const char* layer;
  int k;  // in_features
  int n;  // out_features
};
constexpr Shape kShapes[] = {
    {"opt-175b attention (12288x12288)", 12288, 12288},
    {"llama-7b mlp up (4096x11008)", 4096, 11008},
    {"opt-175b fc1 (12288x49152)", 12288, 49152},
    {"opt-125m attention (768x768)", 768, 768},
    {"llama-7b attention (4096x4096)", 4096, 4096},
};
constexpr int kTokenCounts[] = {1, 4, 8, 16};
// W8A8 (w8a8-cublaslt): the kernel issue's shapes, from decoding to 512-token windows.
constexpr Shape kW8A8Shapes[] = {
    {"opt-125m (768x768)", 768, 768},
    {"llama-7b attention (4096x4096)", 4096, 4096},
    {"opt-175b attention (12288x12288)", 12288, 12288},
    {"opt-175b fc1 (12288x49152)", 12288, 49152},
};
constexpr int kW8A8TokenCounts[] = {1, 16, 128, 512};

struct Options {
  bool json = false;
  int runs = 100;
  int warmup = 10;
  int shape = -1;   // index into each set's shapes (kShapes, kW8A8Shapes); −1: all
  int tokens = -1;  // one of the set's token counts; −1: all
  std::string only;  // "gptq" or "w8a8": one set of rows; empty: both
};

// --- Random device data (counter-based, so filling 600 MB takes milliseconds) ---

__global__ void FillRandomWords(int32_t* words, size_t count, uint64_t seed) {
  for (size_t e = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<size_t>(gridDim.x) * blockDim.x) {
    words[e] = static_cast<int32_t>(Mix(seed + e));
  }
}

// Uniform in [low, low + width).
__global__ void FillRandomHalves(__half* values, size_t count, uint64_t seed, float low, float width) {
  for (size_t e = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<size_t>(gridDim.x) * blockDim.x) {
    values[e] = __float2half_rn(low + width * UnitFloat(seed, e));
  }
}

__global__ void FillContiguousGroups(int32_t* g_idx, int in_features, int group_size) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < in_features; i += gridDim.x * blockDim.x) {
    g_idx[i] = i / group_size;
  }
}

// Random parameters of the mma layout (kernels/layout/gptq_mma_w4.h): per pair of words two fp16
// scales in [0.002, 0.02) and two true zero points in 1..16.
__global__ void FillRandomMmaParams(uint32_t* words, size_t pairs, uint64_t seed) {
  for (size_t e = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; e < pairs;
       e += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint32_t low = __half_as_ushort(__float2half_rn(0.002f + 0.018f * UnitFloat(seed, 2 * e)));
    const uint32_t high = __half_as_ushort(__float2half_rn(0.002f + 0.018f * UnitFloat(seed, 2 * e + 1)));
    const uint64_t zeros = Mix(seed + (1ull << 40) + e);
    words[2 * e] = low | high << 16;
    words[2 * e + 1] = static_cast<uint32_t>(1 + zeros % 16) | static_cast<uint32_t>(1 + (zeros >> 8) % 16) << 16;
  }
}

__global__ void FillIdentityPerm(int32_t* perm, int64_t padded_inputs, int64_t in_features) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < padded_inputs;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t input = k / layout::kMmaTileInputs * layout::kMmaTileInputs + layout::MmaIdentityInput(k % layout::kMmaTileInputs);
    perm[k] = input < in_features ? static_cast<int32_t>(input) : -1;
  }
}

// Holds the stream busy so that the host can queue every timed launch before the first runs:
// the events then time back-to-back device work instead of the host's launch latency.
__global__ void Spin(uint64_t nanoseconds) {
  const uint64_t start = ptx::GlobalTimerNanoseconds();
  do {
    __nanosleep(1000);
  } while (ptx::GlobalTimerNanoseconds() - start < nanoseconds);
}

constexpr int kFillBlocks = 1024;
constexpr int kFillThreads = 256;

// One random layer in the GPTQ layout with contiguous groups of 128, on the device.
struct DeviceLayer {
  DeviceBuffer<int32_t> qweight, qzeros, g_idx;
  DeviceBuffer<__half> scales;
  GptqMatrixView view;

  size_t bytes() const { return qweight.bytes() + qzeros.bytes() + g_idx.bytes() + scales.bytes(); }
};

CudaStatus MakeLayer(int k, int n, int bits, uint64_t seed, cudaStream_t stream, DeviceLayer& layer) {
  const int groups = (k + kGroupSize - 1) / kGroupSize;
  const int pack = layout::GptqCodesPerWord(bits);
  QSHARD_CUDA_RETURN_IF_ERROR(layer.qweight.Allocate(static_cast<size_t>(k / pack) * n));
  QSHARD_CUDA_RETURN_IF_ERROR(layer.qzeros.Allocate(static_cast<size_t>(groups) * (n / pack)));
  QSHARD_CUDA_RETURN_IF_ERROR(layer.scales.Allocate(static_cast<size_t>(groups) * n));
  QSHARD_CUDA_RETURN_IF_ERROR(layer.g_idx.Allocate(k));
  FillRandomWords<<<kFillBlocks, kFillThreads, 0, stream>>>(layer.qweight.get(), layer.qweight.size(), seed);
  QSHARD_CUDA_CHECK_LAUNCH("FillRandomWords");
  FillRandomWords<<<kFillBlocks, kFillThreads, 0, stream>>>(layer.qzeros.get(), layer.qzeros.size(), seed + (1ull << 40));
  QSHARD_CUDA_CHECK_LAUNCH("FillRandomWords");
  FillRandomHalves<<<kFillBlocks, kFillThreads, 0, stream>>>(layer.scales.get(), layer.scales.size(), seed + (2ull << 40), 0.002f, 0.018f);
  QSHARD_CUDA_CHECK_LAUNCH("FillRandomHalves");
  FillContiguousGroups<<<kFillBlocks, kFillThreads, 0, stream>>>(layer.g_idx.get(), k, kGroupSize);
  QSHARD_CUDA_CHECK_LAUNCH("FillContiguousGroups");
  layer.view.qweight = layer.qweight.get();
  layer.view.qzeros = layer.qzeros.get();
  layer.view.scales = layer.scales.get();
  layer.view.g_idx = layer.g_idx.get();
  layer.view.in_features = k;
  layer.view.out_features = n;
  layer.view.bits = bits;
  layer.view.groups = groups;
  return CudaStatus();
}

// Copies of a layer whose total size is several times the L2 cache (at least one copy).
int CopiesToOutgrowL2(size_t bytes_per_copy, int l2_bytes) {
  const size_t target = 4 * static_cast<size_t>(l2_bytes);
  return static_cast<int>(std::clamp<size_t>((target + bytes_per_copy - 1) / bytes_per_copy, 1, 64));
}

// Median (and minimum) device time of `launch(i)` over `runs` launches after `warmup` ones.
CudaStatus TimeLaunches(const std::function<CudaStatus(int)>& launch, const Options& options,
                        cudaStream_t stream, double& median_us, double& min_us) {
  for (int i = 0; i < options.warmup; ++i) QSHARD_CUDA_RETURN_IF_ERROR(launch(i));
  QSHARD_CUDA_TRY(cudaStreamSynchronize(stream));
  std::vector<cudaEvent_t> events(2 * options.runs, nullptr);
  CudaStatus status;
  auto record_all = [&]() -> CudaStatus {
    for (cudaEvent_t& event : events) QSHARD_CUDA_TRY(cudaEventCreate(&event));
    Spin<<<1, 1, 0, stream>>>(20'000'000);  // 20 ms: long enough to queue every run behind it
    QSHARD_CUDA_CHECK_LAUNCH("Spin");
    for (int r = 0; r < options.runs; ++r) {
      QSHARD_CUDA_TRY(cudaEventRecord(events[2 * r], stream));
      QSHARD_CUDA_RETURN_IF_ERROR(launch(options.warmup + r));
      QSHARD_CUDA_TRY(cudaEventRecord(events[2 * r + 1], stream));
    }
    QSHARD_CUDA_TRY(cudaStreamSynchronize(stream));
    std::vector<float> times(options.runs);
    for (int r = 0; r < options.runs; ++r) {
      QSHARD_CUDA_TRY(cudaEventElapsedTime(&times[r], events[2 * r], events[2 * r + 1]));
    }
    std::sort(times.begin(), times.end());
    median_us = 1000.0 * times[options.runs / 2];
    min_us = 1000.0 * times.front();
    return CudaStatus();
  };
  status = record_all();
  for (cudaEvent_t event : events) {
    if (event != nullptr) cudaEventDestroy(event);
  }
  return status;
}

struct Row {
  std::string kernel;
  int weight_bits;
  std::string layer;
  int tokens, k, n;
  std::string path;  // "mma" (tensor cores), "fma" (CUDA cores), "cublas" or "cublaslt"
  int k_splits;      // 0 for cuBLAS
  double median_us, min_us, bytes, speedup;
  int act_bits = 16;
  int group_size = kGroupSize;  // −1: per output channel
};

void PrintRow(const Row& row, const Options& options, const std::string& device, const std::string& date) {
  const double gbps = row.bytes / (row.median_us * 1e3);
  const double gflops = 2.0 * row.tokens * row.k * row.n / (row.median_us * 1e3);
  std::FILE* table = options.json ? stderr : stdout;
  std::fprintf(table, "%-15s %-34s %6d %6d %6d %-8s %6d %10.1f %10.1f %9.0f %9.0f %8.2fx\n",
               row.kernel.c_str(), row.layer.c_str(), row.tokens, row.k, row.n, row.path.c_str(),
               row.k_splits, row.median_us, row.min_us, gbps, gflops, row.speedup);
  if (options.json) {
    std::printf(
        "{\"kernel\":\"%s\",\"weight_bits\":%d,\"act_bits\":%d,\"layer\":\"%s\",\"tokens\":%d,"
        "\"k\":%d,\"n\":%d,\"group_size\":%d,\"path\":\"%s\",\"k_splits\":%d,\"runs\":%d,"
        "\"median_us\":%.3f,"
        "\"min_us\":%.3f,\"bytes\":%.0f,\"effective_gbps\":%.1f,\"gflops\":%.1f,"
        "\"speedup_vs_fp16_cublas\":%.3f,\"device\":\"%s\",\"date\":\"%s\"}\n",
        row.kernel.c_str(), row.weight_bits, row.act_bits, JsonEscape(row.layer).c_str(), row.tokens, row.k,
        row.n, row.weight_bits == 16 ? 0 : row.group_size, row.path.c_str(), row.k_splits, options.runs,
        row.median_us,
        row.min_us, row.bytes, gbps, gflops, row.speedup, JsonEscape(device).c_str(), date.c_str());
  }
  std::fflush(table);
  std::fflush(stdout);
}

// One shape's random fp16 input x [tokens, k] and its output y [tokens, n].
struct Activations {
  DeviceBuffer<__half> x, y;
  double bytes() const { return static_cast<double>(x.bytes() + y.bytes()); }
};

CudaStatus MakeActivations(const Shape& shape, int tokens, cudaStream_t stream, Activations& io) {
  QSHARD_CUDA_RETURN_IF_ERROR(io.x.Allocate(static_cast<size_t>(tokens) * shape.k));
  QSHARD_CUDA_RETURN_IF_ERROR(io.y.Allocate(static_cast<size_t>(tokens) * shape.n));
  FillRandomHalves<<<kFillBlocks, kFillThreads, 0, stream>>>(io.x.get(), io.x.size(), 7, -1.0f, 2.0f);
  QSHARD_CUDA_CHECK_LAUNCH("FillRandomHalves");
  return CudaStatus();
}

// Times and prints the baseline, fp16 cuBLAS on the weights of a 4-bit layer dequantized to fp16
// (realistic values); its median is every other row's reference.
CudaStatus BenchFp16Baseline(const Shape& shape, int tokens, Activations& io, const Options& options,
                             const cudaDeviceProp& props, const std::string& date, cudaStream_t stream,
                             double& baseline_us) {
  const int k = shape.k;
  const int n = shape.n;
  const size_t weight_count = static_cast<size_t>(k) * n;
  const int copies = CopiesToOutgrowL2(weight_count * sizeof(__half), props.l2CacheSize);
  std::vector<DeviceBuffer<__half>> weights(copies);
  {
    DeviceLayer source;
    QSHARD_CUDA_RETURN_IF_ERROR(MakeLayer(k, n, 4, 11, stream, source));
    for (DeviceBuffer<__half>& weight : weights) {
      QSHARD_CUDA_RETURN_IF_ERROR(weight.Allocate(weight_count));
      QSHARD_CUDA_RETURN_IF_ERROR(DequantizeGptq(source.view, weight.get(), stream));
    }
    QSHARD_CUDA_TRY(cudaStreamSynchronize(stream));
  }
  CublasHandle cublas;
  QSHARD_CUDA_RETURN_IF_ERROR(cublas.Create(stream));
  double min_us = 0;
  QSHARD_CUDA_RETURN_IF_ERROR(TimeLaunches(
      [&](int i) {
        return HalfMatmulCublas(cublas, io.x.get(), tokens, weights[i % copies].get(), k, n, io.y.get());
      },
      options, stream, baseline_us, min_us));
  PrintRow({"fp16-cublas", 16, shape.layer, tokens, k, n, "cublas", 0, baseline_us, min_us,
            weight_count * sizeof(__half) + io.bytes(), 1.0},
           options, props.name, date);
  return CudaStatus();
}

// Times GptqMmaW4Matmul (row `w4a16-repacked`) on random 4-bit layers in the mma layout with
// contiguous groups of kGroupSize (the identity order), against the baseline of the same run.
CudaStatus BenchRepacked(const Shape& shape, int tokens, const Options& options, const cudaDeviceProp& props,
                         const std::string& date, cudaStream_t stream, const __half* x, __half* y,
                         double activation_bytes, double baseline_us) {
  const layout::MmaW4Shape mma_shape =
      layout::MmaW4ShapeFor(shape.k, shape.n, (shape.k + kGroupSize - 1) / kGroupSize, kGroupSize);
  std::vector<DeviceGptqMmaW4> layers(1);
  auto make = [&](DeviceGptqMmaW4& layer, uint64_t seed) -> CudaStatus {
    layer.shape = mma_shape;
    layer.shape.identity = shape.k % kGroupSize == 0 && kGroupSize % layout::kMmaStepInputs == 0;
    QSHARD_CUDA_RETURN_IF_ERROR(layer.tiles.Allocate(mma_shape.TileWords()));
    QSHARD_CUDA_RETURN_IF_ERROR(layer.params.Allocate(mma_shape.ParamWords()));
    QSHARD_CUDA_RETURN_IF_ERROR(layer.perm.Allocate(mma_shape.padded_inputs));
    FillRandomWords<<<kFillBlocks, kFillThreads, 0, stream>>>(reinterpret_cast<int32_t*>(layer.tiles.get()),
                                                              layer.tiles.size(), seed);
    QSHARD_CUDA_CHECK_LAUNCH("FillRandomWords");
    FillRandomMmaParams<<<kFillBlocks, kFillThreads, 0, stream>>>(layer.params.get(), layer.params.size() / 2, seed + 1);
    QSHARD_CUDA_CHECK_LAUNCH("FillRandomMmaParams");
    FillIdentityPerm<<<kFillBlocks, kFillThreads, 0, stream>>>(layer.perm.get(), mma_shape.padded_inputs, shape.k);
    QSHARD_CUDA_CHECK_LAUNCH("FillIdentityPerm");
    return CudaStatus();
  };
  QSHARD_CUDA_RETURN_IF_ERROR(make(layers[0], 400));
  const double weight_bytes = static_cast<double>(layers[0].tiles.bytes() + layers[0].params.bytes());
  const int copies = CopiesToOutgrowL2(static_cast<size_t>(weight_bytes), props.l2CacheSize);
  layers.resize(copies);
  for (int c = 1; c < copies; ++c) QSHARD_CUDA_RETURN_IF_ERROR(make(layers[c], 400 + c));
  GptqWorkspace workspace;
  QSHARD_CUDA_RETURN_IF_ERROR(workspace.Reserve(shape.n, stream));
  double median_us = 0;
  double min_us = 0;
  QSHARD_CUDA_RETURN_IF_ERROR(TimeLaunches(
      [&](int i) { return GptqMmaW4Matmul(layers[i % copies].View(), x, tokens, y, workspace, stream); }, options,
      stream, median_us, min_us));
  GptqMmaW4Plan plan;
  QSHARD_CUDA_RETURN_IF_ERROR(PlanGptqMmaW4(layers[0].View(), x, tokens, plan));
  PrintRow({"w4a16-repacked", 4, shape.layer, tokens, shape.k, shape.n, "mma", plan.k_splits, median_us, min_us,
            weight_bytes + activation_bytes, baseline_us / median_us},
           options, props.name, date);
  return CudaStatus();
}

// Times the fp16 baseline and both fused kernels for one layer shape and token count.
CudaStatus BenchShape(const Shape& shape, int tokens, const Options& options,
                      const cudaDeviceProp& props, const std::string& date, cudaStream_t stream) {
  const int k = shape.k;
  const int n = shape.n;
  Activations io;
  QSHARD_CUDA_RETURN_IF_ERROR(MakeActivations(shape, tokens, stream, io));
  const DeviceBuffer<__half>& x = io.x;
  const DeviceBuffer<__half>& y = io.y;
  const double activation_bytes = io.bytes();
  double baseline_us = 0;
  QSHARD_CUDA_RETURN_IF_ERROR(BenchFp16Baseline(shape, tokens, io, options, props, date, stream, baseline_us));

  for (int bits : {4, 8}) {
    DeviceLayer first;
    QSHARD_CUDA_RETURN_IF_ERROR(MakeLayer(k, n, bits, 100 * bits, stream, first));
    const int copies = CopiesToOutgrowL2(first.bytes(), props.l2CacheSize);
    std::vector<DeviceLayer> layers(copies);
    layers[0] = std::move(first);
    for (int c = 1; c < copies; ++c) {
      QSHARD_CUDA_RETURN_IF_ERROR(MakeLayer(k, n, bits, 100 * bits + c, stream, layers[c]));
    }
    // The kernel GptqMatmul picks (row `wNa16-cuda`), then the other one (`wNa16-cuda-mma` or
    // `wNa16-cuda-fma`).
    GptqLaunchPlan automatic;
    QSHARD_CUDA_RETURN_IF_ERROR(PlanGptqMatmul(layers[0].view, x.get(), tokens, automatic));
    const GptqKernelChoice other =
        automatic.tensor_cores ? GptqKernelChoice::kCudaCores : GptqKernelChoice::kTensorCores;
    for (GptqKernelChoice choice : {GptqKernelChoice::kAuto, other}) {
      GptqWorkspace workspace;
      QSHARD_CUDA_RETURN_IF_ERROR(workspace.Reserve(n, stream));
      double median_us = 0;
      double min_us = 0;
      QSHARD_CUDA_RETURN_IF_ERROR(TimeLaunches(
          [&](int i) {
            return GptqMatmul(layers[i % copies].view, x.get(), tokens, y.get(), workspace, stream,
                              choice);
          },
          options, stream, median_us, min_us));
      GptqLaunchPlan plan;
      QSHARD_CUDA_RETURN_IF_ERROR(PlanGptqMatmul(layers[0].view, x.get(), tokens, plan, choice));
      const std::string name = "w" + std::to_string(bits) + "a16-cuda" +
                               (choice == GptqKernelChoice::kAuto ? ""
                                : plan.tensor_cores              ? "-mma"
                                                                 : "-fma");
      PrintRow({name, bits, shape.layer, tokens, k, n, plan.tensor_cores ? "mma" : "fma",
                plan.k_splits, median_us, min_us, layers[0].bytes() + activation_bytes,
                baseline_us / median_us},
               options, props.name, date);
    }
  }
  return BenchRepacked(shape, tokens, options, props, date, stream, x.get(), y.get(), activation_bytes, baseline_us);
}

// Times the fp16 baseline and W8A8Matmul (quantizing x, the int8 GEMM and the scaling, all in the
// timed region) for one shape and token count. The int8 codes are random bytes and the channel
// scales one constant: values do not change the speed of an integer GEMM.
CudaStatus BenchW8A8Shape(const Shape& shape, int tokens, const Options& options,
                          const cudaDeviceProp& props, const std::string& date, cudaStream_t stream) {
  Activations io;
  QSHARD_CUDA_RETURN_IF_ERROR(MakeActivations(shape, tokens, stream, io));
  double baseline_us = 0;
  QSHARD_CUDA_RETURN_IF_ERROR(BenchFp16Baseline(shape, tokens, io, options, props, date, stream, baseline_us));

  const size_t in_padded = layout::Int8PaddedWidth(shape.k);
  const size_t out_padded = layout::Int8PaddedWidth(shape.n);
  const size_t code_bytes = in_padded * out_padded;  // a multiple of 256: whole int32 words
  const int copies = CopiesToOutgrowL2(code_bytes, props.l2CacheSize);
  std::vector<DeviceBuffer<int8_t>> codes(copies);
  DeviceBuffer<float> scales;
  QSHARD_CUDA_RETURN_IF_ERROR(scales.Upload(std::vector<float>(out_padded, 1.0f / 4096)));
  for (int c = 0; c < copies; ++c) {
    QSHARD_CUDA_RETURN_IF_ERROR(codes[c].Allocate(code_bytes));
    FillRandomWords<<<kFillBlocks, kFillThreads, 0, stream>>>(reinterpret_cast<int32_t*>(codes[c].get()),
                                                              code_bytes / 4, 300 + c);
    QSHARD_CUDA_CHECK_LAUNCH("FillRandomWords");
  }
  W8A8Workspace workspace;
  QSHARD_CUDA_RETURN_IF_ERROR(workspace.Reserve(tokens, shape.k, shape.n));
  double median_us = 0;
  double min_us = 0;
  QSHARD_CUDA_RETURN_IF_ERROR(TimeLaunches(
      [&](int i) {
        const Int8ChannelWeightsView view{codes[i % copies].get(), scales.get(), shape.k, shape.n};
        return W8A8Matmul(view, io.x.get(), tokens, io.y.get(), workspace, stream);
      },
      options, stream, median_us, min_us));
  Row row{"w8a8-cublaslt", 8, shape.layer, tokens, shape.k, shape.n, "cublaslt", 0, median_us, min_us,
          static_cast<double>(code_bytes + scales.bytes()) + io.bytes(), baseline_us / median_us};
  row.act_bits = 8;
  row.group_size = -1;
  PrintRow(row, options, props.name, date);
  return CudaStatus();
}

bool ParseOptions(int argc, char** argv, Options& options) {
  for (int a = 1; a < argc; ++a) {
    if (std::strcmp(argv[a], "--json") == 0) {
      options.json = true;
    } else if (std::strcmp(argv[a], "--runs") == 0 && a + 1 < argc) {
      options.runs = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--warmup") == 0 && a + 1 < argc) {
      options.warmup = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--shape") == 0 && a + 1 < argc) {
      options.shape = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--tokens") == 0 && a + 1 < argc) {
      options.tokens = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--only") == 0 && a + 1 < argc) {
      options.only = argv[++a];
    } else {
      return false;
    }
  }
  return options.runs > 0 && options.warmup >= 0 &&
         (options.only.empty() || options.only == "gptq" || options.only == "w8a8");
}

using BenchFunction = CudaStatus (*)(const Shape&, int, const Options&, const cudaDeviceProp&, const std::string&,
                                     cudaStream_t);

// Runs `bench` over one set's shapes and token counts (as --shape and --tokens restrict them);
// false after a CUDA error, said on stderr.
template <size_t kShapeCount, size_t kTokenCount>
bool RunSet(const Shape (&shapes)[kShapeCount], const int (&token_counts)[kTokenCount], BenchFunction bench,
            const Options& options, const cudaDeviceProp& props, const std::string& date, cudaStream_t stream) {
  for (int s = 0; s < static_cast<int>(kShapeCount); ++s) {
    const Shape& shape = shapes[s];
    if (options.shape >= 0 && options.shape != s) continue;
    for (int tokens : token_counts) {
      if (options.tokens > 0 && options.tokens != tokens) continue;
      const CudaStatus status = bench(shape, tokens, options, props, date, stream);
      if (!status.ok()) {
        std::fprintf(stderr, "ERROR %s tokens=%d: %s\n", shape.layer, tokens, status.message().c_str());
        return false;
      }
    }
  }
  return true;
}

int Main(int argc, char** argv) {
  Options options;
  if (!ParseOptions(argc, argv, options)) {
    std::fprintf(stderr,
                 "usage: %s [--json] [--runs N] [--warmup N] [--only gptq|w8a8] [--shape INDEX] [--tokens N]\n"
                 "  --only runs one set of rows: the GPTQ kernels (k x n shapes 0..%d) or W8A8 (0..%d);\n"
                 "  --shape and --tokens restrict the run to one layer shape of each set, or one token\n"
                 "  count, e.g. to profile one row\n",
                 argv[0], static_cast<int>(std::size(kShapes)) - 1, static_cast<int>(std::size(kW8A8Shapes)) - 1);
    return 2;
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device\n");
    return 77;
  }
  cudaDeviceProp props{};
  int multiprocessors = 0;
  cudaStream_t stream = nullptr;
  if (cudaGetDeviceProperties(&props, 0) != cudaSuccess ||
      cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess ||
      cudaStreamCreate(&stream) != cudaSuccess) {
    std::fprintf(stderr, "cannot set up device 0\n");
    return 2;
  }
  const std::string date = UtcTimestamp();
  std::FILE* table = options.json ? stderr : stdout;
  std::fprintf(table, "device: %s (sm_%d%d, %d SMs, %d MB L2), %s, median of %d runs after %d\n",
               props.name, props.major, props.minor, multiprocessors, props.l2CacheSize >> 20, date.c_str(),
               options.runs, options.warmup);
  std::fprintf(table, "%-15s %-34s %6s %6s %6s %-8s %6s %10s %10s %9s %9s %9s\n", "kernel", "layer",
               "tokens", "k", "n", "path", "splits", "median_us", "min_us", "GB/s", "GFLOP/s", "vs fp16");
  if (options.only != "w8a8" && !RunSet(kShapes, kTokenCounts, BenchShape, options, props, date, stream)) return 2;
  if (options.only != "gptq" && !RunSet(kW8A8Shapes, kW8A8TokenCounts, BenchW8A8Shape, options, props, date, stream)) {
    return 2;
  }
  cudaStreamDestroy(stream);
  return 0;
}

}  // namespace
}  // namespace qshard::gpu

int main(int argc, char** argv) { return qshard::gpu::Main(argc, argv); }
