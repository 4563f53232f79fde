#include "worker/solvers/solver.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/solvers/gptq.h"
#include "worker/solvers/rtn.h"

namespace qshard {
namespace {

constexpr float kLargestFp16 = 65504.0f;

absl::Status CheckWeight(const Tensor* weight, const QuantSpec& spec) {
  if (weight == nullptr) return absl::InvalidArgumentError("weight: missing");
  if (weight->rank() != 2 || weight->dim(0) < 1 || weight->dim(1) < 1)
    return absl::InvalidArgumentError(absl::StrCat("weight: shape ", weight->ShapeString(), " is not [out, in]"));
  for (int64_t i = 0; i < weight->size(); ++i) {
    const float v = (*weight)[i];
    if (!std::isfinite(v))
      return absl::InvalidArgumentError(
          absl::StrCat("weight[", i / weight->cols(), ",", i % weight->cols(), "] = ", v, " is not finite"));
    // Keeps every fitted scale (≤ 2·max|w| / 3) inside the fp16 range.
    if (spec.fp16_scales && std::fabs(v) > kLargestFp16)
      return absl::InvalidArgumentError(absl::StrCat("weight[", i / weight->cols(), ",", i % weight->cols(),
                                                     "] = ", v, " is beyond the fp16 range of stored scales"));
  }
  return absl::OkStatus();
}

absl::Status CheckHessians(const LayerProblem& problem, const QuantSpec& spec, bool needs_hessian) {
  const int64_t out = problem.weight->dim(0), in = problem.weight->dim(1);
  const int64_t blocks = static_cast<int64_t>(problem.hessians.size());
  if (blocks == 0)
    return needs_hessian ? absl::FailedPreconditionError("hessian: this method needs calibration statistics")
                         : absl::OkStatus();
  if (out % blocks != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("hessians: ", blocks, " row blocks do not divide ", out, " output rows"));
  const bool dynamic_groups = spec.group_size > 0 && !spec.static_groups && problem.fixed_grids == nullptr;
  if (blocks > 1 && spec.act_order && dynamic_groups)
    return absl::InvalidArgumentError(
        "hessians: per-block Hessians with act-order and dynamic groups give each block its own "
        "g_idx, which one checkpoint cannot store; use static groups or per-channel grids");
  for (int64_t b = 0; b < blocks; ++b) {
    const HessianSum* h = problem.hessians[b];
    const std::string field = absl::StrCat("hessian[", b, "]");
    if (h == nullptr) return absl::InvalidArgumentError(absl::StrCat(field, ": missing"));
    if (h->dim != in)
      return absl::InvalidArgumentError(absl::StrCat(field, ": dim ", h->dim, " != in_features ", in));
    if (static_cast<int64_t>(h->sum.size()) != in * in)
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", h->sum.size(), " values for dim ", in));
    if (h->tokens <= 0)
      return absl::InvalidArgumentError(absl::StrCat(field, ": no calibration tokens were summed"));
    for (int64_t i = 0; i < in * in; ++i) {
      if (!std::isfinite(h->sum[i]))
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": sum[", i / in, ",", i % in, "] = ", h->sum[i], " is not finite"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckColumnScale(std::span<const float> column_scale, int64_t in) {
  if (column_scale.empty()) return absl::OkStatus();
  if (static_cast<int64_t>(column_scale.size()) != in)
    return absl::InvalidArgumentError(
        absl::StrCat("column_scale: ", column_scale.size(), " values for ", in, " input columns"));
  for (int64_t c = 0; c < in; ++c) {
    if (!(std::isfinite(column_scale[c]) && column_scale[c] > 0.0f))
      return absl::InvalidArgumentError(
          absl::StrCat("column_scale[", c, "] = ", column_scale[c], " is not a positive number"));
  }
  return absl::OkStatus();
}

absl::Status CheckFixedGrids(const FixedGrids& grids, const QuantSpec& spec, int64_t out, int64_t in) {
  const int64_t groups = GroupCount(in, spec.group_size);
  if (grids.scales.rank() != 2 || grids.scales.dim(0) != groups || grids.scales.dim(1) != out)
    return absl::InvalidArgumentError(absl::StrCat("fixed_grids.scales: shape ", grids.scales.ShapeString(),
                                                   ", expected [", groups, ",", out, "]"));
  if (static_cast<int64_t>(grids.zeros.size()) != groups * out)
    return absl::InvalidArgumentError(
        absl::StrCat("fixed_grids.zeros: ", grids.zeros.size(), " values, expected ", groups * out));
  const int32_t min_zero = spec.nonzero_zero_point ? 1 : 0, max_zero = MaxCode(spec.bits);
  for (int64_t i = 0; i < groups * out; ++i) {
    const float scale = grids.scales[i];
    const std::string at = absl::StrCat("[", i / out, ",", i % out, "]");
    if (!(std::isfinite(scale) && scale > 0.0f))
      return absl::InvalidArgumentError(absl::StrCat("fixed_grids.scales", at, " = ", scale, " is not positive"));
    if (spec.fp16_scales && RoundScaleToFp16(scale) != scale)
      return absl::InvalidArgumentError(
          absl::StrCat("fixed_grids.scales", at, " = ", scale, " is not an fp16 value"));
    if (grids.zeros[i] < min_zero || grids.zeros[i] > max_zero)
      return absl::InvalidArgumentError(absl::StrCat("fixed_grids.zeros", at, " = ", grids.zeros[i],
                                                     " is outside ", min_zero, "..", max_zero));
  }
  return absl::OkStatus();
}

absl::Status CheckProblem(const LayerProblem& problem, const QuantSpec& spec, bool needs_hessian) {
  QSHARD_RETURN_IF_ERROR(CheckWeight(problem.weight, spec));
  const int64_t out = problem.weight->dim(0), in = problem.weight->dim(1);
  QSHARD_RETURN_IF_ERROR(CheckHessians(problem, spec, needs_hessian));
  QSHARD_RETURN_IF_ERROR(CheckColumnScale(problem.column_scale, in));
  if (problem.fixed_grids != nullptr) QSHARD_RETURN_IF_ERROR(CheckFixedGrids(*problem.fixed_grids, spec, out, in));
  return absl::OkStatus();
}

}  // namespace

GridOptions QuantSpec::grid_options() const {
  GridOptions options;
  options.bits = bits;
  options.sym = sym;
  options.mse_clip = mse_clip;
  options.fp16_scales = fp16_scales;
  options.nonzero_zero_point = nonzero_zero_point;
  return options;
}

absl::Status ValidateQuantSpec(const QuantSpec& spec) {
  QSHARD_RETURN_IF_ERROR(ValidateGridOptions(spec.grid_options()));
  if (spec.group_size == 0 || spec.group_size < -1)
    return absl::InvalidArgumentError(
        absl::StrCat("group_size: ", spec.group_size, " (use -1 for per-channel or a positive count)"));
  if (spec.static_groups && spec.group_size == -1)
    return absl::InvalidArgumentError("static_groups: needs a group_size");
  if (!(std::isfinite(spec.damp) && spec.damp > 0.0))
    return absl::InvalidArgumentError(absl::StrCat("damp: ", spec.damp, " must be a positive fraction"));
  if (spec.block_size < 1)
    return absl::InvalidArgumentError(absl::StrCat("block_size: ", spec.block_size, " must be >= 1"));
  if (!(std::isfinite(spec.damp_growth) && spec.damp_growth > 1.0))
    return absl::InvalidArgumentError(absl::StrCat("damp_growth: ", spec.damp_growth, " must be > 1"));
  if (spec.max_damp_retries < 0)
    return absl::InvalidArgumentError(absl::StrCat("max_damp_retries: ", spec.max_damp_retries, " is negative"));
  return absl::OkStatus();
}

absl::Status ValidateLayerProblem(const LayerProblem& problem, const QuantSpec& spec, bool needs_hessian) {
  return WithContext(CheckProblem(problem, spec, needs_hessian), problem.name.empty() ? "layer" : problem.name);
}

int64_t GroupCount(int64_t in, int group_size) {
  return group_size > 0 ? (in + group_size - 1) / group_size : 1;
}

std::vector<int32_t> ContiguousGroupIndex(int64_t in, int group_size) {
  std::vector<int32_t> g_idx(in, 0);
  if (group_size > 0)
    for (int64_t c = 0; c < in; ++c) g_idx[c] = static_cast<int32_t>(c / group_size);
  return g_idx;
}

absl::StatusOr<std::unique_ptr<Solver>> MakeSolver(std::string_view method, const QuantSpec& spec) {
  QSHARD_RETURN_IF_ERROR(ValidateQuantSpec(spec));
  if (method == "rtn") return MakeRtnSolver(spec);
  if (method == "gptq") return MakeGptqSolver(spec);
  return absl::InvalidArgumentError(absl::StrCat("method: unknown '", std::string(method), "' (known: rtn, gptq)"));
}

}  // namespace qshard
