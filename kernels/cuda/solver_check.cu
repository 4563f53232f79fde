// qshard_cuda_solver_check: checks the device calibration statistics and GPTQ solver against
// the float64 host references (gptq_solver_reference.h) on random layers of awkward sizes
// (inputs and outputs not multiples of 16, 32 or 128; groups of 32, 40, 128, 256 and per
// channel; act-order, static groups, symmetric grids, a dead input, a forced damping retry,
// --mse's clipping search; what Z-Fold and aespa add: fixed grids, column multipliers, one
// Hessian per block of rows, the values before rounding), and that two runs give identical
// bytes. Exit status: 0 all passed, 1 a check failed, 2 a CUDA error stopped the run, 77 no
// CUDA device (ctest reports the test as skipped).
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
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
#include "kernels/cuda/gptq_solve_device.h"
#include "kernels/cuda/gptq_solve_spec.h"
#include "kernels/cuda/gptq_solver_reference.h"
#include "kernels/cuda/hessian_device.h"
#include "kernels/cuda/program_setup.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {
namespace {

// Tolerances, and why:
//  - Statistics: each window's product is a float32 sum over ≤ 1024 tokens (cuBLAS's order),
//    then added in float64. The float32 rounding error of element (i, j) is about
//    sqrt(tokens)·2⁻²⁴·Σ|x_ti·x_tj| typically (tokens·2⁻²⁴ at worst), and Σ|x_ti·x_tj| ≤
//    sqrt(S_ii·S_jj): allow 1e-5·sqrt(S_ii·S_jj) per element (5× the typical 2e-6), and a
//    relative Frobenius error of 5e-6. Zero columns must stay exactly zero; the maxima are exact.
//  - GPTQ: the device sweeps in float32 like the CPU solver, the reference in float64. A value
//    within float32 noise of a rounding tie may round the other way, and its changed error
//    then moves the rest of its row, so whole runs of codes can differ after one flip (the CPU
//    solver against this reference: up to 0.11% of the codes at 8 bits). So the reference is
//    run a second time following the device's codes and grids (FollowedSolution): on the same
//    history every differing code must be an adjacent code within kTieMargin steps of the tie
//    (float32 noise is ~1e-5 steps here; a wrong update or grid moves values by whole steps),
//    such flips must be under 0.1% of the codes and adopted grids under 1%. Unfollowed, the
//    codes may differ by cascades, under 1%. The objective tr(ΔW H ΔWᵀ) of the device codes
//    must be within 1% of the reference's (flips are near-ties and barely change it; measured
//    gaps ≤ 2e-4 for the CPU solver), and the device's own running value of it (Σ err² less
//    the damping term) within 0.1% of the direct computation. On the device's history the
//    values before rounding must agree to within kTieMargin steps as well.
constexpr double kStatElementTolerance = 1e-5;
constexpr double kStatFrobeniusTolerance = 5e-6;
constexpr double kTieMargin = 1e-2;
constexpr double kFlipTolerance = 1e-3;
constexpr double kCascadeTolerance = 1e-2;
constexpr double kGridMismatchTolerance = 1e-2;
constexpr double kProxyTolerance = 1e-2;
constexpr double kReportedProxyTolerance = 1e-3;

struct Case {
  const char* name;
  int64_t in, out;
  int windows;
  int64_t window_rows;
  int bits;
  int group_size;
  bool sym, act_order, static_groups;
  int block_size;
  bool dead_column;      // input in/3 never fires
  bool negative_column;  // input in/2 gets a negative diagonal: the first damping must fail
  // What Z-Fold and aespa hand the solver (worker/solvers/solver.h's LayerProblem).
  int heads = 1;           // Hessians, one per equal block of rows, each from its own windows
  bool fixed = false;      // grids decided beforehand: the reference's own, steps shrunk to 85%
  bool zeta = false;       // per-column step multipliers in [0.6, 1.6]
  bool unrounded = false;  // the values before rounding, returned
  bool mse = false;        // GPTQ's --mse: every grid the best of 80 clipped ranges
};

constexpr Case kCases[] = {
    {"per-channel", 1000, 300, 3, 512, 4, -1, false, false, false, 128, true, false},
    {"g128 act-order", 1000, 300, 3, 512, 4, 128, false, true, false, 128, true, false},
    {"g32 act-order sym 3-bit", 777, 513, 2, 600, 3, 32, true, true, false, 128, false, false},
    {"g128 static act-order", 1100, 200, 3, 500, 4, 128, false, true, true, 128, true, false},
    {"g40 block 64", 600, 250, 2, 400, 4, 40, false, false, false, 64, false, false},
    {"g256 act-order 8-bit", 900, 170, 3, 400, 8, 256, false, true, false, 128, true, false},
    {"damping retry", 333, 129, 2, 300, 4, 128, false, true, false, 128, false, true},
    {"per-channel sym 2-bit", 1024, 256, 2, 1024, 2, -1, true, false, false, 128, false, false},
    {"z-fold g128 act-order", 1000, 300, 3, 512, 4, 128, false, true, false, 128, true, false, 1, true, true},
    {"z-fold per-channel 3-bit", 777, 513, 2, 600, 3, -1, false, false, false, 128, false, false, 1, true, true},
    {"column scale only g40", 600, 250, 2, 400, 4, 40, false, false, false, 64, false, false, 1, false, true},
    {"aespa 4 heads per-channel act-order", 640, 512, 2, 700, 4, -1, false, true, false, 128, true, false, 4, false,
     false, true},
    {"aespa 3 heads g64", 500, 189, 2, 500, 4, 64, false, false, false, 128, false, false, 3, false, false, true},
    {"2 heads, fixed g128 grids, zeta, unrounded", 600, 202, 2, 500, 4, 128, false, true, false, 128, true, false, 2,
     true, true, true},
    // --mse: grids fitted before the sweep (per channel, static groups) and during it (dynamic groups).
    {"mse per-channel 3-bit", 777, 257, 2, 600, 3, -1, false, false, false, 128, true, false, 1, false, false, false,
     true},
    {"mse g40 act-order block 64", 600, 250, 2, 400, 4, 40, false, true, false, 64, false, false, 1, false, false, false,
     true},
    {"mse g128 static act-order sym", 1100, 200, 3, 500, 4, 128, true, true, true, 128, true, false, 1, false, false,
     false, true},
};

std::string Describe(const Case& c) {
  return std::string(c.name) + " (in " + std::to_string(c.in) + ", out " + std::to_string(c.out) + ", " +
         std::to_string(c.windows) + "x" + std::to_string(c.window_rows) + " tokens" +
         (c.heads > 1 ? " per head" : "") + ")";
}

GptqSolveSpec SpecOf(const Case& c) {
  GptqSolveSpec spec;
  spec.bits = c.bits;
  spec.group_size = c.group_size;
  spec.sym = c.sym;
  spec.act_order = c.act_order;
  spec.static_groups = c.static_groups;
  spec.block_size = c.block_size;
  spec.mse_clip = c.mse;
  return spec;
}

bool Expect(bool condition, const Case& c, const std::string& what) {
  if (!condition) std::printf("FAIL %s: %s\n", Describe(c).c_str(), what.c_str());
  return condition;
}

template <typename T>
bool SameBytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

CudaStatus DeviceStatistics(const SolverContext& context, const std::vector<std::vector<float>>& windows, int64_t in,
                            DeviceHessianSum& hessian) {
  QSHARD_CUDA_RETURN_IF_ERROR(hessian.Reset(in, context.stream()));
  DeviceBuffer<float> x;
  for (const std::vector<float>& window : windows) {
    QSHARD_CUDA_RETURN_IF_ERROR(x.Upload(window));
    QSHARD_CUDA_RETURN_IF_ERROR(hessian.AddWindow(context, x.get(), static_cast<int64_t>(window.size()) / in));
    QSHARD_CUDA_TRY(cudaStreamSynchronize(context.stream()));  // x is replaced by the next upload
  }
  return CudaStatus();
}

CudaStatus Download(const double* device, size_t count, std::vector<double>& host) {
  host.resize(count);
  QSHARD_CUDA_TRY(cudaMemcpy(host.data(), device, count * sizeof(double), cudaMemcpyDeviceToHost));
  return CudaStatus();
}

struct HostResult {
  std::vector<int32_t> codes, zeros;
  std::vector<float> scales, unrounded;
  double proxy_error = 0.0;
};

// The case's extras, in the device solver's form and the reference's.
struct Extras {
  std::vector<float> fixed_scales, zeta;
  std::vector<int32_t> fixed_zeros;
  std::vector<double> fixed_scales_reference;

  DeviceGptqExtras Device(const Case& c) const {
    DeviceGptqExtras extras;
    if (c.fixed) {
      extras.fixed_scales = fixed_scales.data();
      extras.fixed_zeros = fixed_zeros.data();
    }
    if (c.zeta) extras.column_scale = zeta.data();
    extras.keep_unrounded = c.unrounded;
    return extras;
  }
  void Into(const Case& c, ReferenceGptqProblem& problem) const {
    problem.fixed_scales = c.fixed ? &fixed_scales_reference : nullptr;
    problem.fixed_zeros = c.fixed ? &fixed_zeros : nullptr;
    problem.column_scale = c.zeta ? &zeta : nullptr;
    problem.keep_unrounded = c.unrounded;
  }
};

// Fixed grids a search might have chosen: the reference's plain solution's grids, steps shrunk
// to 85% and stored as fp16 (as solver.cc's validation requires of fixed grids).
CudaStatus MakeExtras(const Case& c, ReferenceGptqProblem problem, std::mt19937_64& rng, Extras& extras) {
  std::uniform_real_distribution<float> multiplier(0.6f, 1.6f);
  if (c.zeta)
    for (int64_t k = 0; k < c.in; ++k) extras.zeta.push_back(multiplier(rng));
  if (!c.fixed) return CudaStatus();
  ReferenceGptqResult plain;  // indexed like the fixed grids it becomes
  QSHARD_CUDA_RETURN_IF_ERROR(ReferenceGptq(problem, WithFixedGrids(SpecOf(c)), plain));
  for (double scale : plain.scales) {
    const float shrunk = __half2float(__float2half_rn(0.85f * static_cast<float>(scale)));
    extras.fixed_scales.push_back(shrunk > 0.0f ? shrunk : 5.9604644775390625e-8f);
    extras.fixed_scales_reference.push_back(extras.fixed_scales.back());
  }
  extras.fixed_zeros = plain.zeros;
  return CudaStatus();
}

CudaStatus Solve(const SolverContext& context, const DeviceBuffer<float>& weight, const Case& c,
                 const std::vector<HostHessianSum>& hessians, const Extras& extras, DeviceGptqResult& result,
                 HostResult& host) {
  QSHARD_CUDA_RETURN_IF_ERROR(
      SolveGptqRowBlocksOnDevice(context, weight.get(), c.out, c.in, hessians, SpecOf(c), extras.Device(c), result));
  QSHARD_CUDA_RETURN_IF_ERROR(result.codes.Download(host.codes));
  QSHARD_CUDA_RETURN_IF_ERROR(result.scales.Download(host.scales));
  QSHARD_CUDA_RETURN_IF_ERROR(result.zeros.Download(host.zeros));
  if (c.unrounded) QSHARD_CUDA_RETURN_IF_ERROR(result.unrounded.Download(host.unrounded));
  host.proxy_error = result.proxy_error;
  return CudaStatus();
}

// Statistics: device against reference, exact maxima, and a second run byte for byte.
// Leaves the device's sum in `sum`.
CudaStatus CheckStatistics(const SolverContext& context, const Case& c,
                           const std::vector<std::vector<float>>& windows, const std::vector<double>& reference,
                           DeviceHessianSum& hessian, std::vector<double>& sum, bool& passed) {
  QSHARD_CUDA_RETURN_IF_ERROR(DeviceStatistics(context, windows, c.in, hessian));
  std::vector<double> again;
  QSHARD_CUDA_RETURN_IF_ERROR(Download(hessian.sum(), c.in * c.in, sum));
  std::vector<float> abs_max(c.in);
  QSHARD_CUDA_TRY(cudaMemcpy(abs_max.data(), hessian.abs_max(), c.in * sizeof(float), cudaMemcpyDeviceToHost));

  double worst = 0.0, diff_sq = 0.0, ref_sq = 0.0;
  for (int64_t i = 0; i < c.in; ++i) {
    for (int64_t j = 0; j < c.in; ++j) {
      const double ref = reference[i * c.in + j], d = sum[i * c.in + j] - ref;
      const double bound = std::sqrt(reference[i * c.in + i] * reference[j * c.in + j]);
      worst = std::max(worst, bound > 0.0 ? std::fabs(d) / bound : (d == 0.0 ? 0.0 : INFINITY));
      diff_sq += d * d;
      ref_sq += ref * ref;
    }
  }
  std::vector<float> expected_max(c.in, 0.0f);
  for (const auto& x : windows)
    for (size_t e = 0; e < x.size(); ++e) expected_max[e % c.in] = std::max(expected_max[e % c.in], std::fabs(x[e]));
  const double frobenius = std::sqrt(diff_sq / ref_sq);
  std::printf("  statistics: relative Frobenius error %.2e, worst element %.2e of sqrt(S_ii S_jj), tokens %lld\n",
              frobenius, worst, static_cast<long long>(hessian.tokens()));
  passed &= Expect(worst <= kStatElementTolerance, c, "statistics element error " + std::to_string(worst));
  passed &= Expect(frobenius <= kStatFrobeniusTolerance, c, "statistics Frobenius error " + std::to_string(frobenius));
  passed &= Expect(hessian.tokens() == c.windows * c.window_rows, c, "token count");
  passed &= Expect(SameBytes(abs_max, expected_max), c, "per-channel max |x| differs");

  DeviceHessianSum second;
  QSHARD_CUDA_RETURN_IF_ERROR(DeviceStatistics(context, windows, c.in, second));
  QSHARD_CUDA_RETURN_IF_ERROR(Download(second.sum(), c.in * c.in, again));
  passed &= Expect(SameBytes(sum, again), c, "statistics differ between two runs");
  return CudaStatus();
}

// Sets input `column`'s normalized diagonal to −5% of the others' mean (its off-diagonal
// entries are 0): not a Gram matrix, but it makes the damping 0.01 fail and 0.1 succeed on any
// machine, so the retry path runs deterministically.
void ForceNegativeDiagonal(const Case& c, std::vector<double>& sum) {
  const int64_t column = c.in / 2;
  double mean = 0.0;
  for (int64_t i = 0; i < c.in; ++i) mean += sum[i * c.in + i];
  mean /= static_cast<double>(c.in - 1);
  sum[column * c.in + column] = -0.05 * mean;
}

CudaStatus RunCase(const SolverContext& context, const Case& c, uint64_t seed, bool& passed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> silent;
  if (c.dead_column) silent.push_back(c.in / 3);
  if (c.negative_column) silent.push_back(c.in / 2);
  const int64_t tokens = c.windows * c.window_rows;
  std::printf("%s\n", Describe(c).c_str());
  const auto start = std::chrono::steady_clock::now();

  // GPTQ is compared on the device's statistics, so that both solvers see the same H (a
  // float32-level difference could swap two nearly equal diagonals in the act-order): the
  // device's sums as they came down, which the solver takes up again block by block.
  std::vector<std::vector<double>> sums(c.heads);
  std::vector<HostHessianSum> host_hessians;
  ReferenceGptqProblem problem;
  for (int h = 0; h < c.heads; ++h) {
    const std::vector<std::vector<float>> windows = RandomCalibrationWindows(c.in, c.windows, c.window_rows, silent, rng);
    std::vector<double> reference_sum(c.in * c.in, 0.0);
    for (const auto& x : windows) ReferenceAddWindow(x.data(), c.window_rows, c.in, reference_sum);
    DeviceHessianSum hessian;
    QSHARD_CUDA_RETURN_IF_ERROR(CheckStatistics(context, c, windows, reference_sum, hessian, sums[h], passed));
    if (c.negative_column) ForceNegativeDiagonal(c, sums[h]);
    host_hessians.push_back(HostHessianSum{sums[h].data(), c.in, tokens});
  }
  const std::vector<float> weight = RandomLayerWeight(c.out, c.in, rng);
  problem.weight = &weight;
  problem.out = c.out;
  problem.in = c.in;
  for (const std::vector<double>& sum : sums) problem.hessians.push_back(ReferenceHessian{&sum, tokens});
  Extras extras;
  QSHARD_CUDA_RETURN_IF_ERROR(MakeExtras(c, problem, rng, extras));
  extras.Into(c, problem);

  DeviceBuffer<float> device_weight;
  QSHARD_CUDA_RETURN_IF_ERROR(device_weight.Upload(weight));
  DeviceGptqResult result, second;
  HostResult host, host_again;
  QSHARD_CUDA_RETURN_IF_ERROR(Solve(context, device_weight, c, host_hessians, extras, result, host));
  QSHARD_CUDA_RETURN_IF_ERROR(Solve(context, device_weight, c, host_hessians, extras, second, host_again));
  passed &= Expect(SameBytes(host.codes, host_again.codes) && SameBytes(host.scales, host_again.scales) &&
                       SameBytes(host.zeros, host_again.zeros) && SameBytes(host.unrounded, host_again.unrounded) &&
                       std::memcmp(&host.proxy_error, &host_again.proxy_error, sizeof(double)) == 0,
                   c, "GPTQ results differ between two runs");

  const GptqSolveSpec spec = SpecOf(c);
  ReferenceGptqResult reference, followed;
  QSHARD_CUDA_RETURN_IF_ERROR(ReferenceGptq(problem, spec, reference));
  const std::vector<double> device_scales(host.scales.begin(), host.scales.end());
  const FollowedSolution device_solution{&host.codes, &device_scales, &host.zeros};
  QSHARD_CUDA_RETURN_IF_ERROR(ReferenceGptq(problem, spec, followed, &device_solution, kTieMargin));

  const int32_t max_code = (1 << c.bits) - 1;
  int64_t code_mismatches = 0, out_of_range = 0;
  for (size_t e = 0; e < host.codes.size(); ++e) {
    code_mismatches += host.codes[e] != reference.codes[e];
    out_of_range += host.codes[e] < 0 || host.codes[e] > max_code;
  }
  const double codes = static_cast<double>(host.codes.size()), grids = static_cast<double>(host.scales.size());
  const double cascade_fraction = code_mismatches / codes;
  const double flip_fraction = followed.follow.flips / codes;
  const double grid_fraction = followed.follow.grids_adopted / grids;

  const double proxy_reference = ProblemProxyError(
      problem, DequantizeCodes(reference.codes, reference.scales, reference.zeros, reference.g_idx, c.out, c.in,
                               problem.column_scale));
  const double proxy_device = ProblemProxyError(
      problem, DequantizeCodes(host.codes, device_scales, host.zeros, result.g_idx, c.out, c.in, problem.column_scale));
  // On the device's history, the values before rounding differ by float32 noise, in steps.
  double worst_unrounded = 0.0;
  if (c.unrounded) {
    for (int64_t r = 0; r < c.out; ++r) {
      for (int64_t k = 0; k < c.in; ++k) {
        const double step = device_scales[result.g_idx[k] * c.out + r] * (c.zeta ? extras.zeta[k] : 1.0);
        worst_unrounded = std::max(worst_unrounded,
                                   std::fabs(followed.unrounded[r * c.in + k] - host.unrounded[r * c.in + k]) / step);
      }
    }
  }
  const double proxy_gap = std::fabs(proxy_device - proxy_reference) / proxy_reference;
  const double reported_gap = std::fabs(result.proxy_error - proxy_device) / proxy_device;
  std::printf("  gptq: codes differing %.4f%%; on the device's history %.4f%% flips (%lld far, worst %.2e steps "
              "from a tie), %.3f%% grids; proxy error device %.6g reference %.6g (gap %.2e), reported %.6g "
              "(gap %.2e); unrounded within %.2e steps; damp %g retries %d; %.1f s\n",
              100.0 * cascade_fraction, 100.0 * flip_fraction, static_cast<long long>(followed.follow.far_flips),
              followed.follow.worst_distance, 100.0 * grid_fraction, proxy_device, proxy_reference, proxy_gap,
              result.proxy_error, reported_gap, worst_unrounded, result.damp_used, result.damp_retries,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  passed &= Expect(out_of_range == 0, c, std::to_string(out_of_range) + " codes outside [0, 2^bits - 1]");
  passed &= Expect(result.g_idx == reference.g_idx, c, "g_idx differs");
  passed &= Expect(result.damp_retries == reference.retries && result.damp_used == reference.damp, c,
                   "damping differs from the reference's");
  passed &= Expect(!c.negative_column || result.damp_retries == 1, c, "the forced retry did not happen once");
  passed &= Expect(followed.follow.far_flips == 0, c, "codes that differ by more than a near-tie flip");
  passed &= Expect(flip_fraction < kFlipTolerance, c, "too many near-tie flips");
  passed &= Expect(grid_fraction < kGridMismatchTolerance, c, "too many grids differ");
  passed &= Expect(cascade_fraction < kCascadeTolerance, c, "too many codes differ");
  passed &= Expect(proxy_gap <= kProxyTolerance, c, "proxy error differs from the reference's");
  passed &= Expect(reported_gap <= kReportedProxyTolerance, c, "reported proxy error differs from its codes'");
  passed &= Expect(worst_unrounded <= kTieMargin, c, "values before rounding differ from the reference's");
  passed &= Expect(!c.unrounded || host.unrounded.size() == host.codes.size(), c, "no values before rounding");
  passed &= Expect(!c.fixed || SameBytes(host.scales, extras.fixed_scales), c, "fixed scales were not kept");
  passed &= Expect(!c.fixed || SameBytes(host.zeros, extras.fixed_zeros), c, "fixed zeros were not kept");
  return CudaStatus();
}

// Bad input comes back as an error, not a crash; runs without a device.
bool CheckContracts() {
  ContractChecks checks;
  GptqSolveSpec spec;
  spec.bits = 9;
  checks.ExpectError("bits 9", ValidateGptqSolveSpec(spec));
  spec = GptqSolveSpec();
  spec.group_size = 0;
  checks.ExpectError("group_size 0", ValidateGptqSolveSpec(spec));
  spec = GptqSolveSpec();
  spec.static_groups = true;
  checks.ExpectError("static groups per channel", ValidateGptqSolveSpec(spec));
  spec = GptqSolveSpec();
  spec.damp = 0.0;
  checks.ExpectError("damp 0", ValidateGptqSolveSpec(spec));
  DiagonalPlan plan;
  checks.ExpectError("no tokens", PlanDiagonal({1.0, 2.0}, 0, GptqSolveSpec(), plan));
  checks.ExpectError("all inputs dead and negative", PlanDiagonal({-4.0, 0.0}, 2, GptqSolveSpec(), plan));
  DeviceInverseHessianFactor factor;
  factor.dim = 8;
  DeviceGptqResult result;
  float dummy = 0.0f;
  SolverContext unused;
  checks.ExpectError("weight columns != Hessian dim", SweepGptqOnDevice(unused, &dummy, 4, 7, factor, GptqSolveSpec(), result));
  DeviceGptqExtras half_grids;
  half_grids.fixed_scales = &dummy;
  checks.ExpectError("fixed scales without zeros",
                     SweepGptqOnDevice(unused, &dummy, 4, 8, factor, GptqSolveSpec(), result, half_grids));
  const HostHessianSum none;
  checks.ExpectError("3 Hessians for 4 rows", SolveGptqRowBlocksOnDevice(unused, &dummy, 4, 8, {none, none, none},
                                                                         GptqSolveSpec(), DeviceGptqExtras(), result));
  spec = GptqSolveSpec();
  spec.group_size = 4;
  spec.act_order = true;
  checks.ExpectError("dynamic act-order groups with 2 Hessians",
                     SolveGptqRowBlocksOnDevice(unused, &dummy, 4, 8, {none, none}, spec, DeviceGptqExtras(), result));
  return checks.passed();
}

int Main(int argc, char** argv) {
  return RunContextCheck(argc, argv, CheckContracts(), 20261206,
                         [](const SolverContext& context, uint64_t seed, bool& passed) {
                           int index = 0;
                           for (const Case& c : kCases) {
                             const CudaStatus run = RunCase(context, c, seed + index++, passed);
                             if (!run.ok()) return CudaStatus::Error(Describe(c) + ": " + run.message());
                             std::fflush(stdout);
                           }
                           return CudaStatus();
                         });
}

}  // namespace
}  // namespace qshard::gpu

int main(int argc, char** argv) { return qshard::gpu::Main(argc, argv); }
