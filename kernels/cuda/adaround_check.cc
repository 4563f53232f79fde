// qshard_cuda_adaround_check: checks aespa's AdaRound on the device (adaround_device.h) against
// the host reference (adaround_reference.h) on small awkward shapes (AdaRoundCheckCases: one
// Hessian, per-head Hessians, output weightings; 2–4 bits): codes and losses within the
// reference's tolerances (CompareAdaRound, grounded by tests/cuda/adaround_reference_test.cc on
// the CPU), and a second run giving the same codes and losses bit for bit; then the cases with
// several units learned whole and in slices (adaround_slices.h): within the same tolerances of the
// whole, and bit for bit with `--exact-slices` (the host emulation's ctest run: on a GPU cuBLAS
// may pick other kernels for a slice's batch, so the line only says whether the bits differ). `--time` then times
// 20 iterations at OPT-1.3B's and OPT-13B's linear shapes (synthetic data, no reference) and
// projects aespa's 2000. Exit status: 0 all passed, 1 a check failed, 2 a CUDA error stopped the
// run, 77 no CUDA device (ctest reports the test as skipped).
#include <cuda_runtime_api.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/adaround_device.h"
#include "kernels/cuda/adaround_reference.h"
#include "kernels/cuda/adaround_slices.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/program_setup.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {
namespace {

bool SameResult(const AdaRoundDeviceResult& a, const AdaRoundDeviceResult& b) {
  return a.learned == b.learned && a.initial_losses == b.initial_losses && a.learned_losses == b.learned_losses;
}

CudaStatus RunCase(const SolverContext& context, const AdaRoundCase& shape, uint64_t seed, bool& passed) {
  const AdaRoundCaseData data = MakeAdaRoundCase(shape, seed);
  const AdaRoundDeviceOptions options = AdaRoundCaseOptions(shape);
  const AdaRoundDeviceResult want = ReferenceAdaRound(data, options);
  AdaRoundDeviceResult first, second;
  const auto start = std::chrono::steady_clock::now();
  QSHARD_CUDA_RETURN_IF_ERROR(LearnRoundingOnDevice(context.blas(), context.stream(), data.Problem(), options, first));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  QSHARD_CUDA_RETURN_IF_ERROR(LearnRoundingOnDevice(context.blas(), context.stream(), data.Problem(), options, second));
  const AdaRoundDeviation deviation = CompareAdaRound(first, want);
  const bool rerun = SameResult(first, second);
  std::printf("%s %-48s %dx%d, %d iterations: %s; rerun %s; %.3f s\n", deviation.passed && rerun ? "ok  " : "FAIL",
              shape.name, static_cast<int>(shape.rows), static_cast<int>(shape.cols), shape.iters,
              deviation.ToString().c_str(), rerun ? "identical" : "DIFFERS", seconds);
  passed = passed && deviation.passed && rerun;
  return CudaStatus();
}

// The check cases with several units, and three output weightings per Hessian block (slices then
// cut inside blocks and across them).
std::vector<AdaRoundCase> SlicedCases() {
  std::vector<AdaRoundCase> cases = AdaRoundCheckCases();
  cases.erase(cases.begin());
  cases.push_back({"output weightings, 3 per Hessian block, 3 bits", 48, 37, 3, 37, 2, 6, 200});
  return cases;
}

// The slices' sizes in units, "2+3".
std::string PlanSizes(const std::vector<AdaRoundSlice>& slices) {
  std::string sizes;
  for (const AdaRoundSlice& s : slices) sizes += (sizes.empty() ? "" : "+") + std::to_string(s.units);
  return sizes;
}

// An error unless PlanAdaRoundSlices cuts `problem` under the budget of `fit` units' slice into `want`.
CudaStatus ExpectPlan(const AdaRoundDeviceProblem& problem, int64_t fit, const std::string& want) {
  std::vector<AdaRoundSlice> slices;
  QSHARD_CUDA_RETURN_IF_ERROR(PlanAdaRoundSlices(problem, AdaRoundSliceBytes(problem, {0, fit}), slices));
  if (PlanSizes(slices) == want) return CudaStatus();
  return CudaStatus::Error("planned " + PlanSizes(slices) + ", not " + want);
}

// Slicings of `problem` to learn: the plans under every budget from one unit's slice to all but
// one unit's, less those that keep it whole or repeat the last; with 6 heads in 2 blocks also slices across the
// blocks' boundary, meeting them equally (heads 2-3) and unequally (2-4: blocks of one head's rows).
std::vector<std::vector<AdaRoundSlice>> Slicings(const AdaRoundDeviceProblem& problem) {
  std::vector<std::vector<AdaRoundSlice>> slicings;
  for (int64_t fit = 1; fit < AdaRoundUnits(problem); ++fit) {
    std::vector<AdaRoundSlice> slices;
    if (PlanAdaRoundSlices(problem, AdaRoundSliceBytes(problem, {0, fit}), slices).ok() && slices.size() > 1 &&
        (slicings.empty() || PlanSizes(slicings.back()) != PlanSizes(slices)))
      slicings.push_back(slices);
  }
  if (problem.weightings.size() == 6 && problem.hessians.size() == 2) {
    slicings.push_back({{0, 2}, {2, 2}, {4, 2}});
    slicings.push_back({{0, 2}, {2, 3}, {5, 1}});
  }
  return slicings;
}

// The same problem learned whole and in slices (adaround_slices.h): the same codes and unit
// losses, bit for bit if `exact`, else within CompareAdaRound's tolerances of the whole.
CudaStatus RunSlicedCase(const SolverContext& context, const AdaRoundCase& shape, uint64_t seed, bool exact,
                         bool& passed) {
  const AdaRoundCaseData data = MakeAdaRoundCase(shape, seed);
  const AdaRoundDeviceProblem problem = data.Problem();
  const AdaRoundDeviceOptions options = AdaRoundCaseOptions(shape);
  AdaRoundDeviceResult whole;
  QSHARD_CUDA_RETURN_IF_ERROR(LearnRoundingOnDevice(context.blas(), context.stream(), problem, options, whole));
  std::string plans;
  bool ok = true;
  for (const std::vector<AdaRoundSlice>& slices : Slicings(problem)) {
    AdaRoundDeviceResult sliced;
    QSHARD_CUDA_RETURN_IF_ERROR(
        LearnRoundingInSlices(context.blas(), context.stream(), problem, slices, options, sliced));
    const AdaRoundDeviation deviation = CompareAdaRound(sliced, whole);
    const bool same = SameResult(sliced, whole);
    plans += (plans.empty() ? " " : "; ") + PlanSizes(slices) + (same ? " identical" : " DIFFERS (" + deviation.ToString() + ")");
    ok = ok && (same || (!exact && deviation.passed));
  }
  std::printf("%s %-48s %dx%d in slices of units:%s\n", ok ? "ok  " : "FAIL", shape.name,
              static_cast<int>(shape.rows), static_cast<int>(shape.cols), plans.c_str());
  passed = passed && ok;
  return CudaStatus();
}

// A linear of OPT's shapes with synthetic values (no reference): the time of 20 iterations, projected to 2000.
CudaStatus TimeShape(const SolverContext& context, const char* name, int64_t rows, int64_t cols, int heads) {
  AdaRoundCaseData d;
  d.shape = {name, rows, cols, 4, cols, 1, heads, 20};
  const int64_t n = rows * cols;
  d.step.assign(n, 0.05f);
  d.zero.assign(n, 8.0f);
  for (std::vector<float>* a : {&d.floor_level, &d.variables, &d.weight}) a->resize(n);
  d.initial_codes.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const float u = static_cast<float>((i * 2654435761u) % 1000) * 4e-4f - 0.2f;
    d.weight[i] = u;
    d.floor_level[i] = std::floor(u / 0.05f) + 8.0f;
    d.variables[i] = static_cast<float>((i * 40503u) % 200) * 0.02f - 2.0f;
    d.initial_codes[i] = static_cast<int32_t>(d.floor_level[i]);
  }
  std::vector<float>& hessian = d.hessians32.emplace_back(cols * cols, 0.0f);
  for (int64_t c = 0; c < cols; ++c) {
    hessian[c * cols + c] = 1.0f;
    if (c + 1 < cols) hessian[c * cols + c + 1] = hessian[(c + 1) * cols + c] = 0.3f;
  }
  const int64_t head_rows = heads > 0 ? rows / heads : 0;
  for (int h = 0; h < heads; ++h) {
    std::vector<float>& weighting = d.weightings32.emplace_back(head_rows * head_rows, 0.0f);
    for (int64_t r = 0; r < head_rows; ++r) weighting[r * head_rows + r] = 1.0f;
  }
  AdaRoundDeviceOptions timed;
  timed.iters = d.shape.iters;
  AdaRoundDeviceOptions none = timed;
  none.iters = 0;
  AdaRoundDeviceResult result;
  // The setup (uploads, bfloat16 Hessian, the initial loss) alone, then with the iterations.
  auto start = std::chrono::steady_clock::now();
  QSHARD_CUDA_RETURN_IF_ERROR(LearnRoundingOnDevice(context.blas(), context.stream(), d.Problem(), none, result));
  const double setup = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  start = std::chrono::steady_clock::now();
  QSHARD_CUDA_RETURN_IF_ERROR(LearnRoundingOnDevice(context.blas(), context.stream(), d.Problem(), timed, result));
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double per_iteration = (total - setup) / timed.iters;
  std::printf("time %-18s %6lldx%-6lld %s: setup %.3f s, %.2f ms/iteration, 2000 iterations %.1f s (%.0f TFLOP/s in E·H)\n",
              name, static_cast<long long>(rows), static_cast<long long>(cols), heads > 0 ? "weighted" : "        ",
              setup, per_iteration * 1e3, setup + 2000 * per_iteration,
              2.0 * rows * cols * cols / per_iteration / 1e12);
  return CudaStatus();
}

CudaStatus TimeOptShapes(const SolverContext& context) {
  // q/k (weighted per head), o/v, fc1, fc2 at OPT-1.3B (d 2048, 32 heads) and OPT-13B (d 5120, 40 heads).
  QSHARD_CUDA_RETURN_IF_ERROR(TimeShape(context, "OPT-1.3B q_proj", 2048, 2048, 32));
  QSHARD_CUDA_RETURN_IF_ERROR(TimeShape(context, "OPT-1.3B out_proj", 2048, 2048, 0));
  QSHARD_CUDA_RETURN_IF_ERROR(TimeShape(context, "OPT-1.3B fc1", 8192, 2048, 0));
  QSHARD_CUDA_RETURN_IF_ERROR(TimeShape(context, "OPT-1.3B fc2", 2048, 8192, 0));
  QSHARD_CUDA_RETURN_IF_ERROR(TimeShape(context, "OPT-13B q_proj", 5120, 5120, 40));
  QSHARD_CUDA_RETURN_IF_ERROR(TimeShape(context, "OPT-13B out_proj", 5120, 5120, 0));
  QSHARD_CUDA_RETURN_IF_ERROR(TimeShape(context, "OPT-13B fc1", 20480, 5120, 0));
  return TimeShape(context, "OPT-13B fc2", 5120, 20480, 0);
}

int Main(int argc, char** argv) {
  bool time = false, exact_slices = false;
  std::vector<char*> rest = {argv[0]};
  for (int a = 1; a < argc; ++a) {
    if (std::strcmp(argv[a], "--time") == 0) {
      time = true;
    } else if (std::strcmp(argv[a], "--exact-slices") == 0) {
      exact_slices = true;
    } else {
      rest.push_back(argv[a]);
    }
  }
  // Device-free contract checks: shapes the descent cannot take are refused.
  ContractChecks contract;
  const AdaRoundCaseData data = MakeAdaRoundCase(AdaRoundCheckCases()[1], 1);
  const AdaRoundDeviceOptions options = AdaRoundCaseOptions(data.shape);
  contract.ExpectOk("a check case", ValidateAdaRoundDeviceProblem(data.Problem(), options));
  AdaRoundDeviceProblem bad = data.Problem();
  bad.hessians.pop_back();  // 2 blocks over 48 rows is fine; 2 over 45 is not
  bad.rows = 45;
  contract.ExpectError("Hessian blocks that do not divide the rows", ValidateAdaRoundDeviceProblem(bad, options));
  bad = data.Problem();
  bad.weightings.assign(2, data.hessians32[0].data());  // 2 heads of 24 rows across blocks of 16
  contract.ExpectError("a head across two Hessian blocks", ValidateAdaRoundDeviceProblem(bad, options));
  AdaRoundDeviceOptions negative = options;
  negative.iters = -1;
  contract.ExpectError("negative iterations", ValidateAdaRoundDeviceProblem(data.Problem(), negative));
  // The planner: fewest slices, units spread evenly, a refusal when one unit does not fit.
  const AdaRoundCaseData five = MakeAdaRoundCase(AdaRoundCheckCases()[2], 1);
  contract.ExpectOk("five heads under the whole's budget", ExpectPlan(five.Problem(), 5, "5"));
  contract.ExpectOk("five heads under two's budget", ExpectPlan(five.Problem(), 2, "1+2+2"));
  contract.ExpectOk("five heads under three's budget", ExpectPlan(five.Problem(), 3, "2+3"));
  contract.ExpectOk("five heads under one's budget", ExpectPlan(five.Problem(), 1, "1+1+1+1+1"));
  // Six heads in two blocks: the middle of 2+2+2 or 1+1+2+2 would meet both blocks and carry both
  // Hessians, over two heads' budget.
  const AdaRoundCaseData six = MakeAdaRoundCase(SlicedCases().back(), 1);
  contract.ExpectOk("six heads in two blocks under two's budget", ExpectPlan(six.Problem(), 2, "1+1+1+1+2"));
  contract.ExpectOk("six heads in two blocks under four's budget", ExpectPlan(six.Problem(), 4, "3+3"));
  std::vector<AdaRoundSlice> slices;
  contract.ExpectError("a budget under one unit's bytes",
                       PlanAdaRoundSlices(six.Problem(), AdaRoundSliceBytes(six.Problem(), {0, 1}) - 1, slices));
  uint64_t seed = 1;
  return RunContextCheck(static_cast<int>(rest.size()), rest.data(), contract.passed(), seed,
                         [&](const SolverContext& context, uint64_t s, bool& passed) -> CudaStatus {
                           uint64_t index = 0;
                           for (const AdaRoundCase& shape : AdaRoundCheckCases()) {
                             const CudaStatus status = RunCase(context, shape, s + index++, passed);
                             if (!status.ok()) return CudaStatus::Error(std::string(shape.name) + ": " + status.message());
                             std::fflush(stdout);
                           }
                           for (const AdaRoundCase& shape : SlicedCases()) {
                             const CudaStatus status = RunSlicedCase(context, shape, s + index++, exact_slices, passed);
                             if (!status.ok()) return CudaStatus::Error(std::string(shape.name) + ": " + status.message());
                             std::fflush(stdout);
                           }
                           return time ? TimeOptShapes(context) : CudaStatus();
                         });
}

}  // namespace
}  // namespace qshard::gpu

int main(int argc, char** argv) { return qshard::gpu::Main(argc, argv); }
