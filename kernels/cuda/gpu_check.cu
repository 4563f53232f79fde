// qshard_cuda_check: checks the GPTQ CUDA kernels against the fp64 CPU reference on random
// layers of awkward sizes (4 and 8 bits, group size 128, per-channel and act-order g_idx, 1 to
// 37 tokens), plus the fp16 dequantization (bit-exact) and the cuBLAS baseline built on it.
// Exit status: 0 all passed, 1 a check failed, 2 a CUDA error stopped the run, 77 no CUDA
// device (ctest reports the test as skipped).
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gptq_baseline.h"
#include "kernels/cuda/gptq_dequant_gemm.h"
#include "kernels/cuda/gptq_host_matrix.h"
#include "kernels/cuda/gptq_mma_w4.h"
#include "kernels/cuda/gptq_layout.h"
#include "kernels/cuda/program_setup.h"

namespace qshard::gpu {
namespace {

struct Case {
  int in_features;
  int out_features;
  int tokens;
  int bits;
  int group_size;  // −1: one group per output column (per-channel)
  bool act_order;
};

// Sizes are deliberately not multiples of the 128-column tiles or of the group size. Inputs in
// multiples of 32 are checked on both kernels; the others (4104, 4100, 1000, 1032) only fit
// the CUDA-core kernel. Together they cover every
// token tile (1, 4, 16; 8, 16) and the slicing of longer inputs into 16-token launches.
constexpr Case kCases[] = {
    {4096, 11008, 1, 4, 128, false},  {4096, 11008, 3, 4, 128, false},
    {4096, 11008, 16, 4, 128, false}, {4096, 11008, 1, 8, 128, false},
    {4096, 11008, 3, 8, 128, false},  {4096, 11008, 16, 8, 128, false},
    {12288, 12288, 1, 4, 128, false},  // long rows: many splits
    {4096, 4100, 1, 8, -1, false},     // per-channel
    {4096, 4104, 3, 4, 128, true},    {4096, 4100, 16, 8, 128, true},  // act-order
    {2048, 2056, 9, 4, 32, false},    {1280, 1032, 5, 4, 40, false},   // groups of 40: steps span two
    {4104, 4104, 1, 4, -1, false},    {4104, 4104, 16, 4, -1, false},
    {4100, 4100, 3, 8, -1, false},    {4104, 4104, 1, 4, 128, true},
    {4104, 4104, 5, 4, 128, true},    {4100, 4100, 4, 8, 128, true},
    {1000, 1032, 3, 4, 100, false},   // groups that start inside a packed word
    {1032, 2056, 37, 4, 128, false},  // 16 + 16 + 5 tokens
    {256, 16392, 2, 4, 128, false},   // few rows: one split, y written directly
    {128, 8200, 1, 8, 32, false},     {256, 8200, 1, 8, 32, true},
};

// Whether some 32-input step of the tensor-core kernel spans groups (it then rounds weights).
bool StepsSpanGroups(const Case& c) {
  const bool one_group = c.group_size < 0 || c.group_size >= c.in_features;
  return !one_group && (c.act_order || c.group_size % 32 != 0);
}

// Error allowances, in units of ref = Σ x·w (fp64) and norm = sqrt(Σ (x·w)²):
//  - fused kernels: q − zero is exact, and so is its product with an 11-bit scale in fp32 or
//    with x (11 bits) inside an fma or an mma; what remains is the fp32 summation, whose error
//    grows like sqrt(in)·2^-24·norm (far below 2^-12·norm for in ≤ 2^20), and the final
//    rounding to fp16, at most 2^-11·|ref| (plus 2^-25 where the result is subnormal).
//  - cuBLAS baseline, and tensor-core steps that span groups: each fp16 weight carries a
//    rounding error up to 2^-11 relative; independent errors sum to a few 2^-11·norm, so
//    allow 4·2^-11·norm.
// A single wrong weight shifts a result by |x·w| ≈ norm / sqrt(in), which exceeds both
// allowances by a wide margin for in ≤ 2^18, so indexing errors cannot hide in the tolerance.
struct Tolerance {
  double norm_factor;
};
constexpr Tolerance kFusedTolerance{1.0 / 4096};
constexpr Tolerance kBaselineTolerance{4.0 / 2048};

struct Comparison {
  double max_abs_error = 0;
  double worst_ratio = 0;  // largest error / allowance
  double relative_l2 = 0;  // ‖y − ref‖ / ‖ref‖
  size_t failures = 0;     // elements over their allowance, NaN (unwritten) included
};

Comparison Compare(const std::vector<__half>& y, const ReferenceProduct& ref, Tolerance tolerance) {
  Comparison result;
  double error_squares = 0;
  double ref_squares = 0;
  for (size_t e = 0; e < y.size(); ++e) {
    const double value = static_cast<double>(__half2float(y[e]));
    const double error = std::fabs(value - ref.y[e]);
    const double allowance = std::ldexp(std::fabs(ref.y[e]), -11) +
                             tolerance.norm_factor * ref.term_norm[e] + std::ldexp(1.0, -25);
    if (!(error <= allowance)) ++result.failures;  // NaN fails too
    if (std::isfinite(error)) {
      result.max_abs_error = std::fmax(result.max_abs_error, error);
      result.worst_ratio = std::fmax(result.worst_ratio, error / allowance);
      error_squares += error * error;
    }
    ref_squares += ref.y[e] * ref.y[e];
  }
  result.relative_l2 = std::sqrt(error_squares / ref_squares);
  return result;
}

std::string Describe(const Case& c) {
  char text[160];
  std::snprintf(text, sizeof(text), "w%da16 %s%s in=%d out=%d tokens=%d", c.bits,
                c.group_size < 0 ? "per-channel" : ("g" + std::to_string(c.group_size)).c_str(),
                c.act_order ? " act-order" : "", c.in_features, c.out_features, c.tokens);
  return text;
}

// Prints one PASS/FAIL line and returns whether it passed.
bool Report(const std::string& what, const Comparison& c) {
  const bool pass = c.failures == 0;
  std::printf("%s %s: max_abs_err=%.3g worst=%.3g of allowance rel_l2=%.3g%s\n",
              pass ? "PASS" : "FAIL", what.c_str(), c.max_abs_error, c.worst_ratio, c.relative_l2,
              pass ? "" : (" (" + std::to_string(c.failures) + " elements over)").c_str());
  return pass;
}

// Fills a result buffer with NaN (0xFFFF in fp16) so that unwritten elements fail the check.
CudaStatus Poison(DeviceBuffer<__half>& buffer) {
  QSHARD_CUDA_TRY(cudaMemset(buffer.get(), 0xFF, buffer.bytes()));
  return CudaStatus();
}

// The 4-bit layer repacked for tensor cores (kernels/layout/gptq_mma_w4.h): GptqMmaW4Matmul
// twice through one workspace, then with x at an odd address (activations gathered through
// perm even where the order is the identity). Exact numerics like the fused kernels.
CudaStatus CheckRepacked(const Case& c, const HostGptqMatrix& w, const std::vector<__half>& x,
                         const ReferenceProduct& ref, DeviceBuffer<__half>& y_device, bool& passed) {
  layout::MmaW4Layer layer;
  const std::string error = layout::RepackGptqW4ForMma(
      layout::GptqPackedView::Of(w.qweight.data(), w.qzeros.data(), reinterpret_cast<const uint16_t*>(w.scales.data()),
                                 w.g_idx.data(), w.in_features, w.out_features, w.groups, w.bits),
      layer);
  if (!error.empty()) return CudaStatus::Error("RepackGptqW4ForMma: " + error);
  DeviceGptqMmaW4 device;
  QSHARD_CUDA_RETURN_IF_ERROR(device.Upload(layer));
  std::vector<__half> shifted_x(x.size() + 1, __float2half(0.0f));
  std::copy(x.begin(), x.end(), shifted_x.begin() + 1);
  DeviceBuffer<__half> x_aligned, x_shifted;
  QSHARD_CUDA_RETURN_IF_ERROR(x_aligned.Upload(x));
  QSHARD_CUDA_RETURN_IF_ERROR(x_shifted.Upload(shifted_x));
  GptqWorkspace workspace;
  std::vector<__half> y;
  const struct {
    const __half* x;
    const char* note;
  } runs[] = {{x_aligned.get(), ""}, {x_aligned.get(), ", again (workspace reused)"}, {x_shifted.get() + 1, ", x at an odd address"}};
  for (const auto& run : runs) {
    const __half* x_device = run.x;
    GptqMmaW4Plan plan;
    QSHARD_CUDA_RETURN_IF_ERROR(PlanGptqMmaW4(device.View(), x_device, std::min(c.tokens, kGptqMaxTokensPerLaunch), plan));
    QSHARD_CUDA_RETURN_IF_ERROR(Poison(y_device));
    QSHARD_CUDA_RETURN_IF_ERROR(GptqMmaW4Matmul(device.View(), x_device, c.tokens, y_device.get(), workspace, nullptr));
    QSHARD_CUDA_TRY(cudaDeviceSynchronize());
    QSHARD_CUDA_RETURN_IF_ERROR(y_device.Download(y));
    passed &= Report(Describe(c) + " repacked mma [" + std::to_string(plan.k_splits) + " splits of " +
                         std::to_string(plan.tiles_per_split) + " k-tiles, " + (plan.gather ? "gathered x" : "vector x") + "]" + run.note,
                     Compare(y, ref, kFusedTolerance));
  }
  return CudaStatus();
}

// Runs one case; `passed` turns false on a failed comparison, a CUDA error is returned.
CudaStatus RunCase(const Case& c, uint64_t seed, bool& passed) {
  std::mt19937_64 rng(seed);
  const HostGptqMatrix w = RandomGptqMatrix(c.in_features, c.out_features, c.bits, c.group_size,
                                            c.act_order, rng);
  const std::vector<__half> x = RandomActivations(c.tokens, c.in_features, rng);
  const ReferenceProduct ref = ReferenceGptqMatmul(w, x, c.tokens);

  DeviceBuffer<int32_t> qweight, qzeros, g_idx;
  DeviceBuffer<__half> scales, x_device, y_device, weight_fp16;
  QSHARD_CUDA_RETURN_IF_ERROR(qweight.Upload(w.qweight));
  QSHARD_CUDA_RETURN_IF_ERROR(qzeros.Upload(w.qzeros));
  QSHARD_CUDA_RETURN_IF_ERROR(scales.Upload(w.scales));
  QSHARD_CUDA_RETURN_IF_ERROR(g_idx.Upload(w.g_idx));
  QSHARD_CUDA_RETURN_IF_ERROR(x_device.Upload(x));
  QSHARD_CUDA_RETURN_IF_ERROR(y_device.Allocate(static_cast<size_t>(c.tokens) * c.out_features));
  const GptqMatrixView view = w.View(qweight.get(), qzeros.get(), scales.get(), g_idx.get());

  std::vector<__half> y;
  GptqWorkspace workspace;
  const int launch_tokens = std::min(c.tokens, kGptqMaxTokensPerLaunch);
  GptqLaunchPlan automatic;
  QSHARD_CUDA_RETURN_IF_ERROR(PlanGptqMatmul(view, x_device.get(), launch_tokens, automatic));
  // The kernel GptqMatmul picks, twice through one workspace (the second run sees what the
  // first left behind), then the other kernel where both apply.
  struct Run {
    GptqKernelChoice choice;
    const char* note;
  };
  std::vector<Run> runs = {{GptqKernelChoice::kAuto, ""},
                           {GptqKernelChoice::kAuto, ", again (workspace reused)"}};
  if (automatic.tensor_cores) {
    runs.push_back({GptqKernelChoice::kCudaCores, ""});
  } else if (GptqTensorCoresApply(view, x_device.get())) {
    runs.push_back({GptqKernelChoice::kTensorCores, ""});
  }
  for (const Run& run : runs) {
    GptqLaunchPlan plan;
    QSHARD_CUDA_RETURN_IF_ERROR(PlanGptqMatmul(view, x_device.get(), launch_tokens, plan, run.choice));
    const std::string label = Describe(c) + (plan.tensor_cores ? " tensor cores" : " CUDA cores") +
                              " [tile " + std::to_string(plan.token_tile) + ", " +
                              std::to_string(plan.k_splits) + " splits]" + run.note;
    QSHARD_CUDA_RETURN_IF_ERROR(Poison(y_device));
    QSHARD_CUDA_RETURN_IF_ERROR(GptqMatmul(view, x_device.get(), c.tokens, y_device.get(),
                                           workspace, nullptr, run.choice));
    QSHARD_CUDA_TRY(cudaDeviceSynchronize());
    QSHARD_CUDA_RETURN_IF_ERROR(y_device.Download(y));
    const bool rounds_weights = plan.tensor_cores && StepsSpanGroups(c);
    passed &= Report(label, Compare(y, ref, rounds_weights ? kBaselineTolerance : kFusedTolerance));
  }
  const std::string name = Describe(c);
  if (c.bits == 4) QSHARD_CUDA_RETURN_IF_ERROR(CheckRepacked(c, w, x, ref, y_device, passed));

  // The fp16 weights must be the correctly rounded exact weights, bit for bit.
  QSHARD_CUDA_RETURN_IF_ERROR(weight_fp16.Allocate(static_cast<size_t>(c.in_features) * c.out_features));
  QSHARD_CUDA_RETURN_IF_ERROR(Poison(weight_fp16));
  QSHARD_CUDA_RETURN_IF_ERROR(DequantizeGptq(view, weight_fp16.get(), nullptr));
  std::vector<__half> weight;
  QSHARD_CUDA_RETURN_IF_ERROR(weight_fp16.Download(weight));
  size_t mismatches = 0;
  for (int o = 0; o < c.out_features; ++o) {
    for (int i = 0; i < c.in_features; ++i) {
      const __half expected = __float2half_rn(static_cast<float>(w.Weight(i, o)));
      const __half actual = weight[static_cast<size_t>(o) * c.in_features + i];
      mismatches += std::memcmp(&expected, &actual, sizeof(__half)) != 0;
    }
  }
  std::printf("%s %s dequantize to fp16: %zu of %zu weights differ\n",
              mismatches == 0 ? "PASS" : "FAIL", name.c_str(), mismatches, weight.size());
  passed &= mismatches == 0;

  CublasHandle cublas;
  QSHARD_CUDA_RETURN_IF_ERROR(cublas.Create(nullptr));
  QSHARD_CUDA_RETURN_IF_ERROR(Poison(y_device));
  QSHARD_CUDA_RETURN_IF_ERROR(HalfMatmulCublas(cublas, x_device.get(), c.tokens, weight_fp16.get(),
                                               c.in_features, c.out_features, y_device.get()));
  QSHARD_CUDA_TRY(cudaDeviceSynchronize());
  QSHARD_CUDA_RETURN_IF_ERROR(y_device.Download(y));
  passed &= Report(name + " fp16 cuBLAS baseline", Compare(y, ref, kBaselineTolerance));
  return CudaStatus();
}

// Checks that bad shapes and arguments come back as errors (no device needed).
bool CheckContracts() {
  bool passed = true;
  auto expect_error = [&](const char* what, const CudaStatus& status) {
    const bool ok = !status.ok();
    std::printf("%s contract: %s -> %s\n", ok ? "PASS" : "FAIL", what,
                ok ? status.message().c_str() : "accepted");
    passed &= ok;
  };
  GptqMatrixView shape;
  shape.in_features = 4096;
  shape.out_features = 4096;
  shape.bits = 4;
  shape.groups = 32;
  auto with = [&](auto change) {
    GptqMatrixView changed = shape;
    change(changed);
    return changed;
  };
  expect_error("3-bit weights", ValidateGptqShape(with([](GptqMatrixView& v) { v.bits = 3; })));
  expect_error("4-bit with out not a multiple of 8",
               ValidateGptqShape(with([](GptqMatrixView& v) { v.out_features = 4100; })));
  expect_error("in not a multiple of 8 inputs per word",
               ValidateGptqShape(with([](GptqMatrixView& v) { v.in_features = 4097; })));
  expect_error("zero groups", ValidateGptqShape(with([](GptqMatrixView& v) { v.groups = 0; })));
  const std::vector<int32_t> bad_g_idx = {0, 1, 2, 32};
  expect_error("g_idx entry past the last group", ValidateGIdx(bad_g_idx.data(), 4, 32));

  alignas(16) static int32_t words[8] = {};
  alignas(16) static __half halves[8] = {};
  GptqMatrixView misaligned = shape;
  misaligned.qweight = words + 1;
  misaligned.qzeros = words;
  misaligned.scales = halves;
  misaligned.g_idx = words;
  GptqWorkspace workspace;
  expect_error("qweight not 16-byte aligned",
               GptqMatmul(misaligned, halves, 1, halves, workspace, nullptr));
  expect_error("null pointers", GptqMatmul(shape, halves, 1, halves, workspace, nullptr));
  GptqMatrixView odd_inputs = misaligned;
  odd_inputs.qweight = words;
  odd_inputs.in_features = 4104;
  expect_error("tensor cores forced with in % 32 != 0",
               GptqMatmul(odd_inputs, halves, 1, halves, workspace, nullptr,
                          GptqKernelChoice::kTensorCores));
  expect_error("repacked layer with an inconsistent shape",
               GptqMmaW4Matmul(GptqMmaW4View(), halves, 1, halves, workspace, nullptr));
  return passed;
}

// `--small`: only the cases of at most this many weights, for the host emulation of CUDA
// (kernels/cuda/emulation), which runs a kernel's threads one after another: still every kernel,
// act-order, groups that start inside a word, a tail of 5 tokens and several splits.
constexpr int64_t kSmallCaseWeights = 4'300'000;

// Removes `--small` from the arguments; whether it was there.
bool TakeSmallOption(int& argc, char** argv) {
  const auto end = std::remove_if(argv + 1, argv + argc, [](const char* a) { return std::strcmp(a, "--small") == 0; });
  const bool found = end != argv + argc;
  argc = static_cast<int>(end - argv);
  return found;
}

int Main(int argc, char** argv) {
  uint64_t seed = 20240611;
  const bool small = TakeSmallOption(argc, argv);
  bool passed = CheckContracts();
  cudaDeviceProp props{};
  if (const int exit_now = StartCheck(argc, argv, passed, seed, props); exit_now >= 0) return exit_now;
  int multiprocessors = 0;
  if (cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) {
    std::printf("ERROR cannot read the properties of device 0\n");
    return kExitCudaError;
  }
  std::printf("device: %s (sm_%d%d, %d SMs), seed %llu\n", props.name, props.major, props.minor,
              multiprocessors, static_cast<unsigned long long>(seed));
  const auto run_case = [small](const Case& c, uint64_t case_seed, bool& case_passed) {
    if (small && int64_t{c.in_features} * c.out_features > kSmallCaseWeights) {
      std::printf("SKIP %s (--small)\n", Describe(c).c_str());
      return CudaStatus();
    }
    return RunCase(c, case_seed, case_passed);
  };
  return RunCheckCases(kCases, seed, passed, run_case, Describe);
}

}  // namespace
}  // namespace qshard::gpu

int main(int argc, char** argv) { return qshard::gpu::Main(argc, argv); }
