#include "worker/cuda/cuda_gptq_solver.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/cuda/gptq_solve_device.h"
#include "worker/cuda/cuda_status_adapter.h"

namespace qshard {
namespace {

class CudaGptqSolver final : public Solver {
 public:
  CudaGptqSolver(std::shared_ptr<CudaSession> session, const QuantSpec& spec, const gpu::GptqSolveSpec& device_spec)
      : session_(std::move(session)), spec_(spec), device_spec_(device_spec) {}

  std::string_view method() const override { return "gptq"; }
  bool needs_hessian() const override { return true; }

  absl::StatusOr<QuantizedLinear> Solve(const LayerProblem& problem) const override {
    QSHARD_RETURN_IF_ERROR(ValidateLayerProblem(problem, spec_, /*needs_hessian=*/true));
    const std::string name(problem.name.empty() ? "layer" : problem.name);
    const int64_t out = problem.weight->dim(0), in = problem.weight->dim(1);
    // What Z-Fold and aespa add (validated above), as the device solver takes it.
    gpu::DeviceGptqExtras extras;
    if (problem.fixed_grids != nullptr) {
      extras.fixed_scales = problem.fixed_grids->scales.data();
      extras.fixed_zeros = problem.fixed_grids->zeros.data();
    }
    if (!problem.column_scale.empty()) extras.column_scale = problem.column_scale.data();
    extras.keep_unrounded = problem.keep_unrounded;

    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    gpu::DeviceGptqResult solved;
    {
      gpu::DeviceBuffer<float> weight;
      // One per block of rows (aespa's per-head value projections), each uploaded as its block is solved.
      std::vector<gpu::HostHessianSum> hessians;
      for (const HessianSum* hessian : problem.hessians)
        hessians.push_back(gpu::HostHessianSum{hessian->sum.data(), hessian->dim, hessian->tokens});
      const gpu::CudaStatus status = [&]() -> gpu::CudaStatus {
        QSHARD_CUDA_RETURN_IF_ERROR(weight.Allocate(static_cast<size_t>(out) * in));
        QSHARD_CUDA_TRY(cudaMemcpyAsync(weight.get(), problem.weight->data(), weight.bytes(), cudaMemcpyHostToDevice,
                                        session_->stream()));
        return gpu::SolveGptqRowBlocksOnDevice(session_->context(), weight.get(), out, in, hessians, device_spec_,
                                               extras, solved);
      }();
      QSHARD_RETURN_IF_ERROR(FromCudaStatus(status, absl::StrCat(name, ": GPTQ on ", session_->description())));
    }

    QuantizedLinear result;
    QuantizedWeight& q = result.weight;
    q.bits = spec_.bits;
    q.rows = out;
    q.cols = in;
    if (solved.rows != out || solved.cols != in || solved.groups != GroupCount(in, spec_.group_size) ||
        solved.g_idx.size() != static_cast<size_t>(in))
      return absl::InternalError(absl::StrCat(name, ": the device solver returned a ", solved.rows, "x", solved.cols,
                                              " result with ", solved.groups, " groups"));
    q.codes.resize(out * in);
    q.scales = Tensor({solved.groups, out});
    q.zeros.resize(q.scales.size());
    q.g_idx = solved.g_idx;
    q.column_scale.assign(problem.column_scale.begin(), problem.column_scale.end());
    const std::string from = absl::StrCat(name, ": results from the device");
    QSHARD_RETURN_IF_ERROR(
        session_->Copy(q.codes.data(), solved.codes.get(), q.codes.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, from.c_str()));
    QSHARD_RETURN_IF_ERROR(
        session_->Copy(q.scales.data(), solved.scales.get(), q.scales.size() * sizeof(float), cudaMemcpyDeviceToHost, from.c_str()));
    QSHARD_RETURN_IF_ERROR(
        session_->Copy(q.zeros.data(), solved.zeros.get(), q.zeros.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, from.c_str()));
    result.damp_used = solved.damp_used;
    result.damp_retries = solved.damp_retries;
    result.proxy_error = solved.proxy_error;
    if (problem.keep_unrounded) {
      if (solved.unrounded.size() != static_cast<size_t>(out * in))
        return absl::InternalError(absl::StrCat(name, ": the device solver returned no values before rounding"));
      result.unrounded = Tensor({out, in});
      QSHARD_RETURN_IF_ERROR(session_->Copy(result.unrounded.data(), solved.unrounded.get(),
                                            result.unrounded.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                            from.c_str()));
    }
    solved = gpu::DeviceGptqResult();  // freed on the session's device, under its lock
    QSHARD_RETURN_IF_ERROR(WithContext(q.Validate(), from));
    // The CPU sweep's values are these codes' values on their grids (DequantizeCode), bit for bit.
    result.dequantized = q.Dequantized();
    return result;
  }

 private:
  std::shared_ptr<CudaSession> session_;
  QuantSpec spec_;
  gpu::GptqSolveSpec device_spec_;
};

}  // namespace

absl::StatusOr<gpu::GptqSolveSpec> DeviceGptqSpec(const QuantSpec& spec) {
  gpu::GptqSolveSpec converted;
  converted.bits = spec.bits;
  converted.group_size = spec.group_size;
  converted.sym = spec.sym;
  converted.act_order = spec.act_order;
  converted.static_groups = spec.static_groups;
  converted.fp16_scales = spec.fp16_scales;
  converted.nonzero_zero_point = spec.nonzero_zero_point;
  converted.damp = spec.damp;
  converted.block_size = spec.block_size;
  converted.damp_growth = spec.damp_growth;
  converted.max_damp_retries = spec.max_damp_retries;
  const GridOptions grid = spec.grid_options();
  converted.mse_clip = grid.mse_clip;
  converted.mse_norm = grid.mse_norm;
  converted.mse_grid = grid.mse_grid;
  converted.mse_max_shrink = grid.mse_max_shrink;
  const gpu::CudaStatus valid = gpu::ValidateGptqSolveSpec(converted);
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("GPTQ on a CUDA device: ", valid.message()));
  return converted;
}

absl::StatusOr<std::unique_ptr<Solver>> MakeCudaGptqSolver(std::shared_ptr<CudaSession> session, const QuantSpec& spec) {
  QSHARD_RETURN_IF_ERROR(ValidateQuantSpec(spec));
  QSHARD_ASSIGN_OR_RETURN(const gpu::GptqSolveSpec device_spec, DeviceGptqSpec(spec));
  return std::unique_ptr<Solver>(new CudaGptqSolver(std::move(session), spec, device_spec));
}

}  // namespace qshard
