// The device GPTQ sweep (gptq_solve_device.h). The weight is held transposed in sweep order,
// w[j·rows + r] = W[r, order[j]]: as a column-major cuBLAS matrix it is rows × cols with one
// input column per matrix column, the layout of the CPU solver's working copy.
#include "kernels/cuda/gptq_solve_device.h"

#include <algorithm>
#include <cmath>

#include "kernels/cuda/quant_grid_device.cuh"

namespace qshard::gpu {
namespace {

constexpr int kSubBlock = 16;      // columns per sweep kernel (the CPU solver's sub-block)
constexpr int kRowThreads = 64;    // threads per block of the per-row kernels: small blocks, more SMs busy
constexpr int kTile = 32;
constexpr int kTileRows = 8;

unsigned RowGrid(int64_t rows) { return static_cast<unsigned>((rows + kRowThreads - 1) / kRowThreads); }

// The transpose into sweep order and the way back, tiled through shared memory so that both
// sides are coalesced when the order is contiguous. kToSweep: dst[j·rows + r] =
// src[r·cols + order[j]]; otherwise dst[r·cols + order[j]] = src[j·rows + r].
template <bool kToSweep, typename T>
__global__ void SweepTransposeKernel(const T* __restrict__ src, const int64_t* __restrict__ order, int64_t rows,
                                     int64_t cols, T* __restrict__ dst) {
  __shared__ T tile[kTile][kTile + 1];
  const int64_t j0 = blockIdx.x * static_cast<int64_t>(kTile), r0 = blockIdx.y * static_cast<int64_t>(kTile);
  for (int k = threadIdx.y; k < kTile; k += kTileRows) {  // threadIdx.x runs along the source's rows
    const int64_t r = r0 + (kToSweep ? k : threadIdx.x), j = j0 + (kToSweep ? threadIdx.x : k);
    if (r < rows && j < cols) tile[k][threadIdx.x] = kToSweep ? src[r * cols + order[j]] : src[j * rows + r];
  }
  __syncthreads();
  for (int k = threadIdx.y; k < kTile; k += kTileRows) {  // and along the destination's
    const int64_t r = r0 + (kToSweep ? threadIdx.x : k), j = j0 + (kToSweep ? k : threadIdx.x);
    if (r < rows && j < cols) (kToSweep ? dst[j * rows + r] : dst[r * cols + order[j]]) = tile[threadIdx.x][k];
  }
}

// Dead columns (sweep positions) become 0.
__global__ void ZeroColumnsKernel(float* __restrict__ wt, const int64_t* __restrict__ positions, int64_t rows) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < rows) wt[positions[blockIdx.y] * rows + r] = 0.0f;
}

// FitGroupGrids: one grid per row r for group g = blockIdx.y, the columns [g·size, (g+1)·size)
// ∩ [0, count); column k is sweep position position[k] (k itself when position is null) of
// values, plus offset at the same place when given (x = held − original + original). With the
// MSE search (quant_grid.cc's FitGrids) the group's values are read again per candidate and
// each candidate's error summed in column order, as on the CPU.
__global__ void FitGroupGridsKernel(const float* __restrict__ values, const float* __restrict__ offset,
                                    const int64_t* __restrict__ position, int64_t rows, int64_t count,
                                    int64_t group_size, DeviceGridParams params, float* __restrict__ scales,
                                    int32_t* __restrict__ zeros) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const int64_t g = blockIdx.y, begin = g * group_size, end = min(begin + group_size, count);
  const auto value = [&](int64_t k) {
    const int64_t at = (position != nullptr ? position[k] : k) * rows + r;
    return offset != nullptr ? values[at] + offset[at] : values[at];
  };
  float xmin = 0.0f, xmax = 0.0f;  // find_params: the range always includes 0
  for (int64_t k = begin; k < end; ++k) {
    const float x = value(k);
    xmin = fminf(xmin, x);
    xmax = fmaxf(xmax, x);
  }
  NormalizeRange(params, xmin, xmax);
  float scale;
  int32_t zero;
  GridForRange(params, xmin, xmax, scale, zero);
  // Candidate 0 is the min-max grid; only a strictly lower error replaces the incumbent.
  double best = INFINITY;
  for (int i = 0; i < params.mse_candidates; ++i) {
    const float shrink = MseShrink(params, i);
    float trial_scale;
    int32_t trial_zero;
    GridForRange(params, RoundedProduct(shrink, xmin), RoundedProduct(shrink, xmax), trial_scale, trial_zero);
    double error = 0.0;
    for (int64_t k = begin; k < end; ++k) error += MseTerm(params, value(k), trial_scale, trial_zero);
    if (error < best) {
      best = error;
      scale = trial_scale;
      zero = trial_zero;
    }
  }
  scales[g * rows + r] = scale;
  zeros[g * rows + r] = zero;
}

// difference[i] = held[i] − original[i].
__global__ void DifferenceKernel(const float* __restrict__ held, const float* __restrict__ original, int64_t count,
                                 float* __restrict__ difference) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    difference[i] = held[i] - original[i];
  }
}

struct SweepPointers {
  float* w;               // [cols, rows] sweep order: held values, then final values
  const float* original;  // [cols, rows] sweep order, dead columns zeroed
  const float* updates;   // [cols, cols] R·diag(R)⁻¹
  const float* diagonal;  // [cols] R_jj
  const int32_t* group_of;  // [cols] by sweep position
  const float* multipliers; // [cols] by sweep position: Z-Fold's ζ; null: 1
  const float* scales;    // [groups, rows]
  const int32_t* zeros;   // [groups, rows]
  float* shifts;          // [block_size, rows]: q − w of the current block's columns
  int32_t* codes;         // [cols, rows] sweep order
  float* unrounded;       // [cols, rows] sweep order: the values before rounding; null: not kept
  double* error_sq;       // [rows]: Σ err², the damped objective per row
  int64_t rows, cols;
  int32_t max_code;
};

// RowBlockSweep::QuantizeColumn for the `width` ≤ kSubBlock columns from sub_begin, one
// thread per row: rounds each column, records its shift and error, and moves the later
// columns of the sub-block by −U_jk·shift in registers (the CPU's rank-1 updates).
__global__ void __launch_bounds__(kRowThreads) QuantizeSubBlockKernel(SweepPointers p, int64_t sub_begin, int width,
                                                                      int64_t block_begin) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= p.rows) return;
  float held[kSubBlock];
#pragma unroll
  for (int t = 0; t < kSubBlock; ++t) held[t] = t < width ? p.w[(sub_begin + t) * p.rows + r] : 0.0f;
  double error_sq = 0.0;
#pragma unroll
  for (int t = 0; t < kSubBlock; ++t) {
    if (t < width) {
      const int64_t j = sub_begin + t, at = j * p.rows + r, grid = p.group_of[j] * p.rows + r;
      // scale · ζ in float32, as QuantizeToGrids forms the step.
      const float step = p.multipliers != nullptr ? p.scales[grid] * p.multipliers[j] : p.scales[grid];
      const int32_t zero = p.zeros[grid];
      if (p.unrounded != nullptr) p.unrounded[at] = held[t];
      const int32_t code = QuantizeToCode(held[t], step, zero, p.max_code);
      const float value = DequantizeCode(code, step, zero);
      const float shift = value - p.original[at];
      const double err = static_cast<double>(held[t] - value) * p.diagonal[j];
      error_sq += err * err;
      p.shifts[(j - block_begin) * p.rows + r] = shift;
      p.codes[at] = code;
      p.w[at] = value;
      const float* u = p.updates + j * p.cols + sub_begin;
#pragma unroll
      for (int s = t + 1; s < kSubBlock; ++s) {
        if (s < width) held[s] -= u[s] * shift;
      }
    }
  }
  p.error_sq[r] += error_sq;
}

// Σ_j (original − final)² per row: ‖ΔW‖², to take the damping term out of the objective.
__global__ void DeltaSquaredKernel(const float* __restrict__ original, const float* __restrict__ w, int64_t rows,
                                   int64_t cols, double* __restrict__ delta_sq) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  double sum = 0.0;
  for (int64_t j = 0; j < cols; ++j) {
    const double d = static_cast<double>(original[j * rows + r]) - w[j * rows + r];
    sum += d * d;
  }
  delta_sq[r] = sum;
}

class DeviceSweep {
 public:
  // Fixed grids are swept as static groups (WithFixedGrids), never fitted.
  DeviceSweep(const SolverContext& context, const DeviceInverseHessianFactor& factor, const GptqSolveSpec& spec,
              const DeviceGptqExtras& extras, int64_t rows, int64_t cols)
      : context_(context),
        factor_(factor),
        extras_(extras),
        fixed_(extras.fixed_scales != nullptr),
        spec_(fixed_ ? WithFixedGrids(spec) : spec),
        rows_(rows),
        cols_(cols),
        dynamic_(DynamicGroups(spec_)) {
    params_.max_code = (1 << spec.bits) - 1;
    params_.sym = spec.sym;
    params_.fp16_scales = spec.fp16_scales;
    params_.nonzero_zero_point = spec.nonzero_zero_point;
    params_.mse_candidates = MseCandidates(spec);
    params_.mse_grid = spec.mse_grid;
    params_.mse_norm = static_cast<float>(spec.mse_norm);
  }

  CudaStatus Run(const float* weight, DeviceGptqResult& result) {
    const cudaStream_t stream = context_.stream();
    const DiagonalPlan& plan = factor_.plan;
    result.rows = rows_;
    result.cols = cols_;
    result.groups = GroupCount(cols_, spec_.group_size);
    result.g_idx = GroupIndex(spec_, plan.order);
    const size_t elements = static_cast<size_t>(rows_) * cols_;
    QSHARD_CUDA_RETURN_IF_ERROR(result.codes.Allocate(elements));
    QSHARD_CUDA_RETURN_IF_ERROR(result.scales.Allocate(static_cast<size_t>(result.groups) * rows_));
    QSHARD_CUDA_RETURN_IF_ERROR(result.zeros.Allocate(static_cast<size_t>(result.groups) * rows_));
    scales_ = result.scales.get();
    zeros_ = result.zeros.get();

    std::vector<int64_t> position(cols_), dead_positions;
    std::vector<int32_t> group_of(cols_);
    std::vector<float> multipliers(extras_.column_scale != nullptr ? cols_ : 0);
    for (int64_t j = 0; j < cols_; ++j) {
      const int64_t column = plan.order[j];
      position[column] = j;
      if (!multipliers.empty()) multipliers[j] = extras_.column_scale[column];
      group_of[j] = dynamic_ ? static_cast<int32_t>(j / spec_.group_size) : result.g_idx[column];
      if (plan.dead[column]) dead_positions.push_back(j);
    }
    DeviceBuffer<int64_t> order_device, position_device, dead_device;
    DeviceBuffer<int32_t> group_of_device, codes_sweep;
    DeviceBuffer<float> multipliers_device, unrounded_sweep;
    DeviceBuffer<double> error_sq, delta_sq;
    if (!multipliers.empty()) QSHARD_CUDA_RETURN_IF_ERROR(multipliers_device.Upload(multipliers));
    if (extras_.keep_unrounded) {
      QSHARD_CUDA_RETURN_IF_ERROR(unrounded_sweep.Allocate(elements));
      QSHARD_CUDA_RETURN_IF_ERROR(result.unrounded.Allocate(elements));
    }
    QSHARD_CUDA_RETURN_IF_ERROR(order_device.Upload(plan.order));
    QSHARD_CUDA_RETURN_IF_ERROR(position_device.Upload(position));
    QSHARD_CUDA_RETURN_IF_ERROR(group_of_device.Upload(group_of));
    QSHARD_CUDA_RETURN_IF_ERROR(w_.Allocate(elements));
    QSHARD_CUDA_RETURN_IF_ERROR(original_.Allocate(elements));
    QSHARD_CUDA_RETURN_IF_ERROR(codes_sweep.Allocate(elements));
    QSHARD_CUDA_RETURN_IF_ERROR(shifts_.Allocate(static_cast<size_t>(spec_.block_size) * rows_));
    if (dynamic_) QSHARD_CUDA_RETURN_IF_ERROR(group_values_.Allocate(static_cast<size_t>(spec_.group_size) * rows_));
    QSHARD_CUDA_RETURN_IF_ERROR(error_sq.Allocate(rows_));
    QSHARD_CUDA_RETURN_IF_ERROR(delta_sq.Allocate(rows_));
    QSHARD_CUDA_TRY(cudaMemsetAsync(error_sq.get(), 0, error_sq.bytes(), stream));

    const dim3 tiles(static_cast<unsigned>((cols_ + kTile - 1) / kTile), static_cast<unsigned>((rows_ + kTile - 1) / kTile));
    SweepTransposeKernel<true><<<tiles, dim3(kTile, kTileRows), 0, stream>>>(weight, order_device.get(), rows_, cols_,
                                                                              w_.get());
    QSHARD_CUDA_CHECK_LAUNCH("SweepTransposeKernel<true>");
    // Grids known before the sweep, as the CPU has them: fixed ones, per channel fitted on W
    // before dead columns are zeroed, static groups (in original column order) after.
    if (fixed_) {
      QSHARD_CUDA_RETURN_IF_ERROR(UploadFixedGrids(result.groups));
    } else if (spec_.group_size <= 0) {
      QSHARD_CUDA_RETURN_IF_ERROR(FitGrids(w_.get(), nullptr, nullptr, cols_, cols_, 0));
    }
    if (!dead_positions.empty()) {
      QSHARD_CUDA_RETURN_IF_ERROR(dead_device.Upload(dead_positions));
      ZeroColumnsKernel<<<dim3(RowGrid(rows_), static_cast<unsigned>(dead_positions.size())), kRowThreads, 0, stream>>>(
          w_.get(), dead_device.get(), rows_);
      QSHARD_CUDA_CHECK_LAUNCH("ZeroColumnsKernel");
    }
    QSHARD_CUDA_TRY(cudaMemcpyAsync(original_.get(), w_.get(), elements * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    if (!fixed_ && spec_.group_size > 0 && spec_.static_groups)
      QSHARD_CUDA_RETURN_IF_ERROR(FitGrids(w_.get(), nullptr, position_device.get(), cols_, spec_.group_size, 0));

    pointers_ = SweepPointers{w_.get(),          original_.get(),         factor_.updates.get(),
                              factor_.diagonal.get(), group_of_device.get(), multipliers_device.get(),
                              scales_,           zeros_,                  shifts_.get(),
                              codes_sweep.get(), unrounded_sweep.get(),   error_sq.get(),
                              rows_,             cols_,                   params_.max_code};
    QSHARD_CUDA_RETURN_IF_ERROR(Sweep());

    DeltaSquaredKernel<<<RowGrid(rows_), kRowThreads, 0, stream>>>(original_.get(), w_.get(), rows_, cols_,
                                                                   delta_sq.get());
    QSHARD_CUDA_CHECK_LAUNCH("DeltaSquaredKernel");
    SweepTransposeKernel<false><<<tiles, dim3(kTile, kTileRows), 0, stream>>>(codes_sweep.get(), order_device.get(),
                                                                               rows_, cols_, result.codes.get());
    QSHARD_CUDA_CHECK_LAUNCH("SweepTransposeKernel<false>");
    if (extras_.keep_unrounded) {
      SweepTransposeKernel<false><<<tiles, dim3(kTile, kTileRows), 0, stream>>>(
          unrounded_sweep.get(), order_device.get(), rows_, cols_, result.unrounded.get());
      QSHARD_CUDA_CHECK_LAUNCH("SweepTransposeKernel<false> (unrounded)");
    }

    // tr(ΔW H_damped ΔWᵀ) = Σ err² (gptq.cc); removing λ‖ΔW‖² leaves the undamped objective.
    // Summed on the host in row order, so the value does not depend on launch shapes.
    std::vector<double> error_rows(rows_), delta_rows(rows_);
    QSHARD_CUDA_TRY(cudaMemcpyAsync(error_rows.data(), error_sq.get(), error_sq.bytes(), cudaMemcpyDeviceToHost, stream));
    QSHARD_CUDA_TRY(cudaMemcpyAsync(delta_rows.data(), delta_sq.get(), delta_sq.bytes(), cudaMemcpyDeviceToHost, stream));
    QSHARD_CUDA_TRY(cudaStreamSynchronize(stream));
    double damped_error = 0.0, delta = 0.0;
    for (int64_t r = 0; r < rows_; ++r) {
      damped_error += error_rows[r];
      delta += delta_rows[r];
    }
    result.proxy_error = damped_error - factor_.damp_added * delta;
    result.damp_used = factor_.damp;
    result.damp_retries = factor_.retries;
    return CudaStatus();
  }

 private:
  // The fixed grids of these rows into the result's [groups, rows] tables.
  CudaStatus UploadFixedGrids(int64_t groups) {
    const int64_t stride = extras_.fixed_stride > 0 ? extras_.fixed_stride : rows_;
    const auto copy = [&](void* dst, const void* src, size_t element) -> CudaStatus {
      QSHARD_CUDA_TRY(cudaMemcpy2DAsync(dst, rows_ * element, src, stride * element, rows_ * element, groups,
                                        cudaMemcpyHostToDevice, context_.stream()));
      return CudaStatus();
    };
    QSHARD_CUDA_RETURN_IF_ERROR(copy(scales_, extras_.fixed_scales, sizeof(float)));
    QSHARD_CUDA_RETURN_IF_ERROR(copy(zeros_, extras_.fixed_zeros, sizeof(int32_t)));
    // The host arrays are the caller's: done with them before returning.
    QSHARD_CUDA_TRY(cudaStreamSynchronize(context_.stream()));
    return CudaStatus();
  }

  // Grids for the groups of `group_size` among `count` columns of `values` (see
  // FitGroupGridsKernel), written from group `first_group` on.
  CudaStatus FitGrids(const float* values, const float* offset, const int64_t* position, int64_t count,
                      int64_t group_size, int64_t first_group) {
    const unsigned groups = static_cast<unsigned>((count + group_size - 1) / group_size);
    FitGroupGridsKernel<<<dim3(RowGrid(rows_), groups), kRowThreads, 0, context_.stream()>>>(
        values, offset, position, rows_, count, group_size, params_, scales_ + first_group * rows_,
        zeros_ + first_group * rows_);
    QSHARD_CUDA_CHECK_LAUNCH("FitGroupGridsKernel");
    return CudaStatus();
  }

  // gptq.cc's BlockEnd: a block ends early where a dynamic group would straddle its end.
  int64_t BlockEnd(int64_t begin) const {
    int64_t end = std::min<int64_t>(begin + spec_.block_size, cols_);
    if (!dynamic_ || end == cols_) return end;
    const int64_t last_start = (end - 1) / spec_.group_size * spec_.group_size;
    if (last_start > begin && last_start + spec_.group_size > end) end = last_start;
    return end;
  }

  // Sub-blocks also end at every dynamic group start, so that each group's grid is fitted
  // (on the host's schedule) before the kernel that uses it.
  int64_t SubBlockEnd(int64_t sub_begin, int64_t block_end) const {
    int64_t end = std::min<int64_t>(sub_begin + kSubBlock, block_end);
    if (dynamic_) end = std::min<int64_t>(end, (sub_begin / spec_.group_size + 1) * spec_.group_size);
    return end;
  }

  CudaStatus Sweep() {
    for (int64_t begin = 0, end; begin < cols_; begin = end) {
      end = BlockEnd(begin);
      for (int64_t sub_begin = begin, sub_end; sub_begin < end; sub_begin = sub_end) {
        sub_end = SubBlockEnd(sub_begin, end);
        if (dynamic_ && sub_begin % spec_.group_size == 0) QSHARD_CUDA_RETURN_IF_ERROR(FitDynamicGroup(sub_begin));
        QuantizeSubBlockKernel<<<RowGrid(rows_), kRowThreads, 0, context_.stream()>>>(
            pointers_, sub_begin, static_cast<int>(sub_end - sub_begin), begin);
        QSHARD_CUDA_CHECK_LAUNCH("QuantizeSubBlockKernel");
        QSHARD_CUDA_RETURN_IF_ERROR(ApplyShifts(begin, sub_begin, sub_end, end));
      }
      QSHARD_CUDA_RETURN_IF_ERROR(ApplyShifts(begin, begin, end, cols_));
    }
    return CudaStatus();
  }

  // gptq.cc's GroupAsUpdated, then the grid fit: the group's columns [j, j + width) as the
  // reference sees them, X = (held − original)·U_block⁻¹ + original, U_block the unit upper
  // leading block of the updates there (row-major, so cuBLAS reads it as its lower transpose).
  CudaStatus FitDynamicGroup(int64_t j) {
    const int64_t width = std::min<int64_t>(spec_.group_size, cols_ - j);
    const size_t count = static_cast<size_t>(width) * rows_;
    DifferenceKernel<<<static_cast<unsigned>(std::min<size_t>((count + 255) / 256, 4096)), 256, 0, context_.stream()>>>(
        w_.get() + j * rows_, original_.get() + j * rows_, static_cast<int64_t>(count), group_values_.get());
    QSHARD_CUDA_CHECK_LAUNCH("DifferenceKernel");
    const float one = 1.0f;
    QSHARD_CUBLAS_TRY(cublasStrsm(context_.blas(), CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T,
                                  CUBLAS_DIAG_UNIT, static_cast<int>(rows_), static_cast<int>(width), &one,
                                  factor_.updates.get() + j * cols_ + j, static_cast<int>(cols_), group_values_.get(),
                                  static_cast<int>(rows_)));
    return FitGrids(group_values_.get(), original_.get() + j * rows_, nullptr, width, width, j / spec_.group_size);
  }

  // W[:, to:until) −= Shift[:, from:to) · U[from:to, to:until): one GEMM. U is row-major with
  // leading dimension cols, i.e. its transpose to cuBLAS.
  CudaStatus ApplyShifts(int64_t block_begin, int64_t from, int64_t to, int64_t until) {
    if (to >= until) return CudaStatus();
    const float minus_one = -1.0f, one = 1.0f;
    QSHARD_CUBLAS_TRY(cublasSgemm(context_.blas(), CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(rows_),
                                  static_cast<int>(until - to), static_cast<int>(to - from), &minus_one,
                                  shifts_.get() + (from - block_begin) * rows_, static_cast<int>(rows_),
                                  factor_.updates.get() + from * cols_ + to, static_cast<int>(cols_), &one,
                                  w_.get() + to * rows_, static_cast<int>(rows_)));
    return CudaStatus();
  }

  const SolverContext& context_;
  const DeviceInverseHessianFactor& factor_;
  const DeviceGptqExtras& extras_;
  const bool fixed_;
  const GptqSolveSpec spec_;
  const int64_t rows_, cols_;
  const bool dynamic_;
  DeviceGridParams params_;
  float* scales_ = nullptr;
  int32_t* zeros_ = nullptr;
  DeviceBuffer<float> w_, original_, shifts_, group_values_;
  SweepPointers pointers_{};
};

}  // namespace

CudaStatus SweepGptqOnDevice(const SolverContext& context, const float* weight, int64_t rows, int64_t cols,
                             const DeviceInverseHessianFactor& factor, const GptqSolveSpec& spec,
                             DeviceGptqResult& result, const DeviceGptqExtras& extras) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateGptqSolveSpec(spec));
  if (weight == nullptr || rows <= 0 || cols <= 0) return CudaStatus::Error("gptq: empty weight");
  if (cols != factor.dim) {
    return CudaStatus::Error("gptq: weight has " + std::to_string(cols) + " input columns, the Hessian " +
                             std::to_string(factor.dim));
  }
  if (rows > (int64_t{1} << 31) - 1 || cols > (int64_t{1} << 31) - 1)
    return CudaStatus::Error("gptq: dimensions beyond cuBLAS's int range");
  if ((extras.fixed_scales == nullptr) != (extras.fixed_zeros == nullptr))
    return CudaStatus::Error("gptq: fixed grids need both scales and zeros");
  if (extras.fixed_stride != 0 && extras.fixed_stride < rows)
    return CudaStatus::Error("gptq: fixed grids' row stride " + std::to_string(extras.fixed_stride) + " < " +
                             std::to_string(rows) + " rows");
  DeviceSweep sweep(context, factor, spec, extras, rows, cols);
  return sweep.Run(weight, result);
}

CudaStatus SolveGptqOnDevice(const SolverContext& context, const float* weight, int64_t rows, int64_t cols,
                             const DeviceHessianSum& hessian, const GptqSolveSpec& spec, DeviceGptqResult& result,
                             const DeviceGptqExtras& extras) {
  DeviceInverseHessianFactor factor;
  QSHARD_CUDA_RETURN_IF_ERROR(FactorInverseHessianOnDevice(context, hessian, spec, factor));
  return SweepGptqOnDevice(context, weight, rows, cols, factor, spec, result, extras);
}

CudaStatus SolveGptqRowBlocksOnDevice(const SolverContext& context, const float* weight, int64_t rows, int64_t cols,
                                      const std::vector<HostHessianSum>& hessians, const GptqSolveSpec& spec,
                                      const DeviceGptqExtras& extras, DeviceGptqResult& result) {
  const int64_t blocks = static_cast<int64_t>(hessians.size());
  if (blocks < 1 || rows % blocks != 0)
    return CudaStatus::Error("gptq: " + std::to_string(blocks) + " Hessians for " + std::to_string(rows) + " rows");
  const auto solve_block = [&](int64_t b, const float* block_weight, int64_t block_rows,
                               const DeviceGptqExtras& block_extras, DeviceGptqResult& block) -> CudaStatus {
    DeviceHessianSum hessian;
    QSHARD_CUDA_RETURN_IF_ERROR(hessian.Load(hessians[b].sum, hessians[b].dim, hessians[b].tokens, context.stream()));
    return SolveGptqOnDevice(context, block_weight, block_rows, cols, hessian, spec, block, block_extras);
  };
  if (blocks == 1) return solve_block(0, weight, rows, extras, result);
  const GptqSolveSpec swept = extras.fixed_scales != nullptr ? WithFixedGrids(spec) : spec;
  if (DynamicGroups(swept) && swept.act_order)
    return CudaStatus::Error("gptq: act-order with dynamic groups needs one Hessian for all rows");

  // Each block into its own result, then into the layer's: codes and unrounded values are
  // consecutive rows, grids a column range of the [groups, rows] tables.
  const int64_t block_rows = rows / blocks, groups = GroupCount(cols, spec.group_size);
  const size_t block_elements = static_cast<size_t>(block_rows) * cols;
  const cudaStream_t stream = context.stream();
  result = DeviceGptqResult();
  result.rows = rows;
  result.cols = cols;
  result.groups = groups;
  QSHARD_CUDA_RETURN_IF_ERROR(result.codes.Allocate(block_elements * blocks));
  QSHARD_CUDA_RETURN_IF_ERROR(result.scales.Allocate(static_cast<size_t>(groups) * rows));
  QSHARD_CUDA_RETURN_IF_ERROR(result.zeros.Allocate(static_cast<size_t>(groups) * rows));
  if (extras.keep_unrounded) QSHARD_CUDA_RETURN_IF_ERROR(result.unrounded.Allocate(block_elements * blocks));
  const int64_t fixed_stride = extras.fixed_stride > 0 ? extras.fixed_stride : rows;
  for (int64_t b = 0; b < blocks; ++b) {
    DeviceGptqExtras block_extras = extras;
    if (extras.fixed_scales != nullptr) {
      block_extras.fixed_scales = extras.fixed_scales + b * block_rows;
      block_extras.fixed_zeros = extras.fixed_zeros + b * block_rows;
      block_extras.fixed_stride = fixed_stride;
    }
    DeviceGptqResult block;
    QSHARD_CUDA_RETURN_IF_ERROR(solve_block(b, weight + b * block_elements, block_rows, block_extras, block));
    const auto copy_rows = [&](void* dst, const void* src, size_t bytes) -> CudaStatus {
      QSHARD_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
      return CudaStatus();
    };
    const auto copy_grids = [&](void* dst, const void* src, size_t element) -> CudaStatus {
      QSHARD_CUDA_TRY(cudaMemcpy2DAsync(static_cast<char*>(dst) + b * block_rows * element, rows * element, src,
                                        block_rows * element, block_rows * element, groups, cudaMemcpyDeviceToDevice,
                                        stream));
      return CudaStatus();
    };
    QSHARD_CUDA_RETURN_IF_ERROR(copy_rows(result.codes.get() + b * block_elements, block.codes.get(), block.codes.bytes()));
    if (extras.keep_unrounded)
      QSHARD_CUDA_RETURN_IF_ERROR(
          copy_rows(result.unrounded.get() + b * block_elements, block.unrounded.get(), block.unrounded.bytes()));
    QSHARD_CUDA_RETURN_IF_ERROR(copy_grids(result.scales.get(), block.scales.get(), sizeof(float)));
    QSHARD_CUDA_RETURN_IF_ERROR(copy_grids(result.zeros.get(), block.zeros.get(), sizeof(int32_t)));
    // The block's buffers are freed when it goes out of scope: the copies must be done.
    QSHARD_CUDA_TRY(cudaStreamSynchronize(stream));
    if (b == 0) result.g_idx = block.g_idx;
    result.proxy_error += block.proxy_error;
    result.damp_used = std::max(result.damp_used, block.damp_used);
    result.damp_retries = std::max(result.damp_retries, block.damp_retries);
  }
  return CudaStatus();
}

}  // namespace qshard::gpu
