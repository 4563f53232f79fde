#include "kernels/cuda/adaround_plan.h"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>

namespace qshard::gpu {
namespace {

CudaStatus Fail(const std::string& what) { return CudaStatus::Error("AdaRound on the device: " + what); }

int64_t UnitRows(const AdaRoundDeviceProblem& p) { return p.rows / AdaRoundUnits(p); }

std::string Gb(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f GB", static_cast<double>(bytes) / 1e9);
  return text;
}

// n slices of `units`, the first n − units % n of units / n each, the rest one more.
std::vector<AdaRoundSlice> EvenSlices(int64_t units, int64_t n) {
  std::vector<AdaRoundSlice> slices;
  int64_t first = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t size = units / n + (i >= n - units % n ? 1 : 0);
    slices.push_back({first, size});
    first += size;
  }
  return slices;
}

// The rows of the slice's Hessian blocks: the greatest common divisor of the rows it has in each
// block it meets (the blocks' rows where it holds whole blocks or lies in one).
int64_t SliceBlockRows(const AdaRoundDeviceProblem& p, const AdaRoundSlice& slice) {
  const int64_t block_rows = p.rows / static_cast<int64_t>(p.hessians.size());
  const int64_t begin = slice.first_unit * UnitRows(p), end = begin + slice.units * UnitRows(p);
  int64_t piece_rows = 0;
  for (int64_t b = begin / block_rows; b * block_rows < end; ++b)
    piece_rows = std::gcd(piece_rows, std::min(end, (b + 1) * block_rows) - std::max(begin, b * block_rows));
  return piece_rows;
}

}  // namespace

size_t AdaRoundDeviceBytes(int64_t rows, int64_t cols, int64_t hessians, int64_t heads) {
  const size_t weights = static_cast<size_t>(rows) * cols;
  const size_t head_rows = heads > 0 ? static_cast<size_t>(rows / heads) : 0;
  return weights * (heads > 0 ? 46 : 42) + static_cast<size_t>(hessians) * cols * cols * 6 +
         static_cast<size_t>(heads) * head_rows * head_rows * 4 + static_cast<size_t>(rows) * 8;
}

CudaStatus ValidateAdaRoundDeviceProblem(const AdaRoundDeviceProblem& p, const AdaRoundDeviceOptions& o) {
  const int64_t blocks = static_cast<int64_t>(p.hessians.size()), heads = static_cast<int64_t>(p.weightings.size());
  if (p.rows <= 0 || p.cols <= 0 || p.max_code <= 0)
    return Fail("a " + std::to_string(p.rows) + "x" + std::to_string(p.cols) + " weight with max code " +
                std::to_string(p.max_code));
  if (blocks == 0 || p.rows % blocks != 0)
    return Fail(std::to_string(blocks) + " Hessian blocks do not divide " + std::to_string(p.rows) + " rows");
  if (heads > 0 && (p.rows % heads != 0 || (p.rows / blocks) % (p.rows / heads) != 0))
    return Fail(std::to_string(heads) + " output weightings do not divide the " + std::to_string(p.rows) +
                " rows inside " + std::to_string(blocks) + " Hessian blocks");
  if (p.rows * p.cols > (int64_t{1} << 40) || p.cols > (int64_t{1} << 30) || p.rows > (int64_t{1} << 30))
    return Fail("a weight too large to index");
  if (o.iters < 0 || !(o.learning_rate > 0.0) || !(o.warmup >= 0.0 && o.warmup <= 1.0))
    return Fail("options: iters " + std::to_string(o.iters) + ", learning rate " + std::to_string(o.learning_rate) +
                ", warm-up " + std::to_string(o.warmup));
  return CudaStatus();
}

float AdaRoundBeta(int it, const AdaRoundDeviceOptions& o) {
  const double start = o.warmup * o.iters;
  if (it < start) return static_cast<float>(o.beta_start);
  const double progress = (it - start) / (o.iters - start);
  return static_cast<float>(o.beta_end + (o.beta_start - o.beta_end) * std::max(0.0, 1.0 - progress));
}

int64_t AdaRoundUnits(const AdaRoundDeviceProblem& p) {
  return static_cast<int64_t>(p.weightings.empty() ? p.hessians.size() : p.weightings.size());
}

AdaRoundDeviceProblem AdaRoundSliceProblem(const AdaRoundDeviceProblem& p, const AdaRoundSlice& slice) {
  const int64_t begin = slice.first_unit * UnitRows(p), end = begin + slice.units * UnitRows(p);
  const size_t offset = static_cast<size_t>(begin * p.cols);
  AdaRoundDeviceProblem s = p;
  s.rows = end - begin;
  s.step += offset;
  s.zero += offset;
  s.floor_level += offset;
  s.variables += offset;
  s.weight += offset;
  s.initial_codes += offset;
  if (!p.weightings.empty())
    s.weightings.assign(p.weightings.begin() + slice.first_unit,
                        p.weightings.begin() + slice.first_unit + slice.units);
  const int64_t block_rows = p.rows / static_cast<int64_t>(p.hessians.size()), piece_rows = SliceBlockRows(p, slice);
  s.hessians.clear();
  for (int64_t row = begin; row < end; row += piece_rows) s.hessians.push_back(p.hessians[row / block_rows]);
  return s;
}

size_t AdaRoundSliceBytes(const AdaRoundDeviceProblem& p, const AdaRoundSlice& slice) {
  const int64_t rows = slice.units * UnitRows(p);
  return AdaRoundDeviceBytes(rows, p.cols, rows / SliceBlockRows(p, slice), p.weightings.empty() ? 0 : slice.units);
}

CudaStatus PlanAdaRoundSlices(const AdaRoundDeviceProblem& p, size_t budget, std::vector<AdaRoundSlice>& slices) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateAdaRoundDeviceProblem(p, AdaRoundDeviceOptions()));
  const int64_t units = AdaRoundUnits(p);
  // Every unit has the same shape and lies in one block, so one unit per slice fits iff one does.
  const size_t unit_bytes = AdaRoundSliceBytes(p, {0, 1});
  if (unit_bytes > budget)
    return CudaStatus::Error("AdaRound on the device: one unit (" + std::to_string(UnitRows(p)) + " rows of " +
                             std::to_string(p.cols) + ") needs " + Gb(unit_bytes) + ", more than the " + Gb(budget) +
                             " available");
  // The slices' bytes add up to at least the whole's (each block is in one slice or more).
  const size_t whole = AdaRoundSliceBytes(p, {0, units});
  for (int64_t n = std::max<int64_t>(1, static_cast<int64_t>((whole + budget - 1) / budget));; ++n) {
    slices = EvenSlices(units, n);
    if (std::all_of(slices.begin(), slices.end(),
                    [&](const AdaRoundSlice& s) { return AdaRoundSliceBytes(p, s) <= budget; }))
      return CudaStatus();
  }
}

}  // namespace qshard::gpu
