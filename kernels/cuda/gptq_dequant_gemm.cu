// GptqMatmul: picks the kernel (tensor cores where the shape allows and there are at least two
// tokens, the CUDA-core kernel elsewhere), splits the inputs across blocks, and owns the
// split-K workspace.
#include "kernels/cuda/gptq_dequant_gemm.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/cuda/gptq_kernels.cuh"

namespace qshard::gpu {
namespace {

using internal::CeilDiv;
using internal::KernelLimits;

}  // namespace

// Declared in gptq_kernels.cuh: the mma-layout kernel plans its splits with it too.
// Picks k_splits for `rows` qweight rows (or k-tiles): blocks run in waves of `resident_blocks`, and a wave
// lasts about as long as streaming a split's rows plus a block's fixed cost, so choose the
// split count with the fewest modelled row-times, within the kernel's split-size bounds.
void internal::ChooseSplits(int rows, const KernelLimits& limits, GptqLaunchPlan& plan) {
  const int unit = std::max(1, limits.split_row_multiple);
  const int units = CeilDiv(rows, unit);
  const int most_units_per_split = std::max(1, limits.max_split_rows / unit);
  const int least_units_per_split = std::max(1, CeilDiv(limits.min_split_rows, unit));
  const int fewest = CeilDiv(units, most_units_per_split);
  const int most = std::min(std::max(fewest, units / least_units_per_split), internal::kMaxGridY);
  const int resident = std::max(1, limits.resident_blocks);
  int64_t best_cost = INT64_MAX;
  for (int splits = fewest; splits <= most; ++splits) {
    const int units_per_split = CeilDiv(units, splits);
    const int actual_splits = CeilDiv(units, units_per_split);
    const int64_t waves =
        CeilDiv(static_cast<int64_t>(plan.column_blocks) * actual_splits, resident);
    const int64_t cost =
        waves * (static_cast<int64_t>(units_per_split) * unit + limits.overhead_rows);
    if (cost < best_cost) {
      best_cost = cost;
      plan.rows_per_split = units_per_split * unit;
      plan.k_splits = actual_splits;
    }
  }
}

namespace {

CudaStatus CheckChoice(const GptqMatrixView& w, const __half* x, GptqKernelChoice choice) {
  if (choice == GptqKernelChoice::kTensorCores && !internal::TensorCoreApplies(w, x)) {
    return CudaStatus::Error(
        "GptqMatmul: the tensor-core kernel needs in % 32 == 0 and 16-byte aligned x");
  }
  return CudaStatus();
}

// kAuto: tensor cores from 2 tokens on. At one token the CUDA-core kernel was faster on an
// H200 (docs/cuda.md), since 7 of the mma's 8 token columns would be padding.
bool TensorCoresChosen(const GptqMatrixView& w, const __half* x, int tokens,
                       GptqKernelChoice choice) {
  if (choice == GptqKernelChoice::kCudaCores || !internal::TensorCoreApplies(w, x)) return false;
  return choice == GptqKernelChoice::kTensorCores || tokens > 1;
}

bool IsAligned(const void* pointer, size_t alignment) {
  return reinterpret_cast<uintptr_t>(pointer) % alignment == 0;
}

}  // namespace

bool GptqTensorCoresApply(const GptqMatrixView& w, const __half* x) {
  return internal::TensorCoreApplies(w, x);
}

CudaStatus PlanGptqMatmul(const GptqMatrixView& w, const __half* x, int tokens,
                          GptqLaunchPlan& plan, GptqKernelChoice choice) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateGptqShape(w));
  if (tokens < 1 || tokens > kGptqMaxTokensPerLaunch) {
    return CudaStatus::Error("PlanGptqMatmul: tokens must be between 1 and " +
                             std::to_string(kGptqMaxTokensPerLaunch));
  }
  QSHARD_CUDA_RETURN_IF_ERROR(CheckChoice(w, x, choice));
  int device = 0;
  QSHARD_CUDA_TRY(cudaGetDevice(&device));
  plan = GptqLaunchPlan();
  plan.tensor_cores = TensorCoresChosen(w, x, tokens, choice);
  KernelLimits limits;
  if (plan.tensor_cores) {
    plan.token_tile = internal::TensorCoreTokenTile(tokens);
    QSHARD_CUDA_RETURN_IF_ERROR(internal::TensorCoreLimits(w, plan.token_tile, device, limits));
  } else {
    plan.token_tile = internal::CudaCoreTokenTile(tokens);
    QSHARD_CUDA_RETURN_IF_ERROR(internal::CudaCoreLimits(w.bits, plan.token_tile, device, limits));
  }
  plan.column_blocks = CeilDiv(w.out_features, internal::kTileColumns);
  internal::ChooseSplits(w.in_features / layout::GptqCodesPerWord(w.bits), limits, plan);
  return CudaStatus();
}

GptqWorkspace::~GptqWorkspace() { Release(); }

void GptqWorkspace::Release() {
  cudaFree(partial_sums_);  // nothing to report from a destructor; cudaFree(nullptr) is a no-op
  partial_sums_ = nullptr;
  arrivals_ = nullptr;
  capacity_ = 0;
}

CudaStatus GptqWorkspace::Reserve(int out_features, cudaStream_t stream) {
  if (out_features <= capacity_) return CudaStatus();
  Release();
  const size_t sum_bytes =
      static_cast<size_t>(kGptqMaxTokensPerLaunch) * out_features * sizeof(float);
  const size_t counter_bytes =
      static_cast<size_t>(CeilDiv(out_features, internal::kTileColumns)) * sizeof(unsigned);
  void* memory = nullptr;
  QSHARD_CUDA_TRY(cudaMalloc(&memory, sum_bytes + counter_bytes));
  partial_sums_ = static_cast<float*>(memory);
  arrivals_ = reinterpret_cast<unsigned*>(static_cast<char*>(memory) + sum_bytes);
  capacity_ = out_features;
  QSHARD_CUDA_TRY(cudaMemsetAsync(memory, 0, sum_bytes + counter_bytes, stream));
  return CudaStatus();
}

CudaStatus GptqMatmul(const GptqMatrixView& w, const __half* x, int tokens, __half* y,
                      GptqWorkspace& workspace, cudaStream_t stream, GptqKernelChoice choice) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateGptqShape(w));
  if (tokens < 0) return CudaStatus::Error("GptqMatmul: negative token count");
  if (tokens == 0) return CudaStatus();
  if (w.qweight == nullptr || w.qzeros == nullptr || w.scales == nullptr || w.g_idx == nullptr ||
      x == nullptr || y == nullptr) {
    return CudaStatus::Error("GptqMatmul: null qweight, qzeros, scales, g_idx, x or y");
  }
  // Both kernels read qweight as 16-byte vectors and four scales as one 8-byte word.
  if (!IsAligned(w.qweight, 16) || !IsAligned(w.scales, 8)) {
    return CudaStatus::Error("GptqMatmul: qweight must be 16-byte and scales 8-byte aligned");
  }
  QSHARD_CUDA_RETURN_IF_ERROR(CheckChoice(w, x, choice));
  QSHARD_CUDA_RETURN_IF_ERROR(workspace.Reserve(w.out_features, stream));

  for (int first = 0; first < tokens; first += kGptqMaxTokensPerLaunch) {
    const int count = std::min(kGptqMaxTokensPerLaunch, tokens - first);
    const __half* x_slice = x + static_cast<size_t>(first) * w.in_features;
    __half* y_slice = y + static_cast<size_t>(first) * w.out_features;
    GptqLaunchPlan plan;
    QSHARD_CUDA_RETURN_IF_ERROR(PlanGptqMatmul(w, x_slice, count, plan, choice));
    QSHARD_CUDA_RETURN_IF_ERROR(
        plan.tensor_cores
            ? internal::LaunchTensorCore(w, x_slice, count, y_slice, plan, workspace, stream)
            : internal::LaunchCudaCore(w, x_slice, count, y_slice, plan, workspace, stream));
  }
  return CudaStatus();
}

}  // namespace qshard::gpu
