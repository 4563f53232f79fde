#include "worker/solvers/gptq.h"

#include <algorithm>
#include <cstring>
#include <span>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "core/large_buffers.h"
#include "kernels/cpu/blas.h"
#include "worker/solvers/column_layout.h"
#include "worker/solvers/inverse_hessian.h"

namespace qshard {
namespace {

// Σ (a_i − b_i)² in float64, in index order. Not inlined: inside the sweep's Run, GCC kept the
// running sum in memory across every iteration (a store and a load per element).
[[gnu::noinline]] double SquaredDistance(const float* a, const float* b, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    sum += d * d;
  }
  return sum;
}

// The sweep over one block of output rows that shares one Hessian. Works on the transposed
// weight (one input column per row of `w_`, contiguous over output rows) in sweep order, and
// writes codes, values and grids into the layer's result.
class RowBlockSweep {
 public:
  RowBlockSweep(const QuantSpec& spec, const LayerProblem& problem, const InverseHessianFactor& factor,
                int64_t row_begin, int64_t rows, QuantizedLinear& result)
      : spec_(spec),
        problem_(problem),
        factor_(factor),
        row_begin_(row_begin),
        rows_(rows),
        in_(problem.weight->dim(1)),
        grid_stride_(problem.weight->dim(0)),
        dynamic_groups_(spec.group_size > 0 && !spec.static_groups && problem.fixed_grids == nullptr),
        result_(result) {}

  // Returns this block's tr(ΔW H ΔWᵀ) (undamped).
  double Run() {
    std::vector<float> original = ZeroedVector<float>(in_ * rows_);  // W' of the block: [in, rows], original order
    TransposeRows(problem_.weight->row(row_begin_), rows_, in_, original.data());
    FitUpfrontGridsAndZeroDeadColumns(original);

    if (std::is_sorted(factor_.order.begin(), factor_.order.end())) {  // the identity: already in sweep order
      sorted_original_ = std::move(original);
    } else {
      sorted_original_ = ZeroedVector<float>(in_ * rows_);
      for (int64_t j = 0; j < in_; ++j)
        std::memcpy(sorted_original_.data() + j * rows_, original.data() + factor_.order[j] * rows_,
                    rows_ * sizeof(float));
      original = std::vector<float>();
    }
    w_ = sorted_original_;
    codes_ = ZeroedVector<int32_t>(in_ * rows_);
    if (problem_.keep_unrounded) unrounded_.resize(in_ * rows_);
    const double damped_error = Sweep();

    // tr(ΔW H_damped ΔWᵀ) = Σ err² exactly (ΔW = W − Q = E·R⁻¹ and H_damped = R Rᵀ); removing the
    // damping term λ‖ΔW‖² leaves the undamped objective. Dead columns have ΔW = 0.
    const double delta_sq = SquaredDistance(sorted_original_.data(), w_.data(), in_ * rows_);
    const std::vector<int64_t> position = InversePermutation(factor_.order);
    TransposeFromSweepOrder(codes_.data(), rows_, in_, std::span<const int64_t>(position),
                            result_.weight.codes.data() + row_begin_ * in_);
    TransposeFromSweepOrder(w_.data(), rows_, in_, std::span<const int64_t>(position),
                            result_.dequantized.row(row_begin_));
    if (problem_.keep_unrounded)
      TransposeFromSweepOrder(unrounded_.data(), rows_, in_, std::span<const int64_t>(position),
                              result_.unrounded.row(row_begin_));
    return damped_error - factor_.damp_added * delta_sq;
  }

 private:
  float* scales(int64_t group) { return result_.weight.scales.data() + group * grid_stride_ + row_begin_; }
  int32_t* zeros(int64_t group) { return result_.weight.zeros.data() + group * grid_stride_ + row_begin_; }

  // Grids known before the sweep: fixed ones, per channel (fitted before dead columns are
  // zeroed, as the reference does), or static groups (fitted after). Zeroes dead columns.
  void FitUpfrontGridsAndZeroDeadColumns(std::vector<float>& original) {
    const GridOptions options = spec_.grid_options();
    const FixedGrids* fixed = problem_.fixed_grids;
    const int64_t groups = result_.weight.groups();
    if (fixed != nullptr) {
      for (int64_t g = 0; g < groups; ++g) {
        std::copy_n(fixed->scales.row(g) + row_begin_, rows_, scales(g));
        std::copy_n(fixed->zeros.data() + g * grid_stride_ + row_begin_, rows_, zeros(g));
      }
    } else if (spec_.group_size <= 0) {
      FitGroupGrids(options, original.data(), in_, rows_, -1, scales(0), zeros(0), grid_stride_);
    }
    for (int64_t c = 0; c < in_; ++c)
      if (factor_.dead[c]) std::fill_n(original.data() + c * rows_, rows_, 0.0f);
    if (fixed == nullptr && spec_.group_size > 0 && spec_.static_groups)
      FitGroupGrids(options, original.data(), in_, rows_, spec_.group_size, scales(0), zeros(0), grid_stride_);
  }

  // End of a lazy block of `width` columns starting at `begin`, cut short where a dynamic
  // group would start inside the block and run past its end (it must be fitted on weights that
  // have received every earlier column's update).
  int64_t BlockEnd(int64_t begin, int64_t width) const {
    int64_t end = std::min(begin + width, in_);
    if (!dynamic_groups_ || end == in_) return end;
    const int64_t last_start = (end - 1) / spec_.group_size * spec_.group_size;
    if (last_start > begin && last_start + spec_.group_size > end) end = last_start;
    return end;
  }

  // Returns Σ err², the damped objective. Two levels of lazy batching: columns of a block of
  // block_size are visited in sub-blocks of kSubBlock; a column's shift is applied at once only
  // inside its sub-block (rank-1 updates), to the rest of the block by one GEMM per sub-block,
  // and beyond the block by one GEMM per block — the reference's scheme, with most of its
  // in-block work moved into BLAS as well.
  double Sweep() {
    constexpr int64_t kSubBlock = 16;
    shifts_.resize(spec_.block_size * rows_);
    u_block_.resize(spec_.block_size * in_);
    values_.resize(rows_);
    double error_sq = 0.0;
    for (int64_t begin = 0, end; begin < in_; begin = end) {
      end = BlockEnd(begin, spec_.block_size);
      for (int64_t sub_begin = begin, sub_end; sub_begin < end; sub_begin = sub_end) {
        sub_end = std::min(BlockEnd(sub_begin, kSubBlock), end);
        for (int64_t j = sub_begin; j < sub_end; ++j) error_sq += QuantizeColumn(j, begin, sub_end);
        ApplyShifts(begin, sub_begin, sub_end, end);
      }
      ApplyShifts(begin, begin, end, in_);
    }
    return error_sq;
  }

  // Quantizes sweep column j (of the block starting at block_begin), records its shift q − w
  // and applies it to the columns after it up to `until`. Returns its error's squared norm.
  double QuantizeColumn(int64_t j, int64_t block_begin, int64_t until) {
    float* w = w_.data() + j * rows_;
    const int64_t column = factor_.order[j];
    int64_t group = result_.weight.g_idx[column];
    if (dynamic_groups_) {
      group = j / spec_.group_size;
      if (j % spec_.group_size == 0) {
        const int64_t width = std::min<int64_t>(spec_.group_size, in_ - j);
        FitGrids(spec_.grid_options(), GroupAsUpdated(j, width), rows_, width, rows_, scales(group), zeros(group));
      }
    }
    const float multiplier = problem_.column_scale.empty() ? 1.0f : problem_.column_scale[column];
    if (!unrounded_.empty()) std::memcpy(unrounded_.data() + j * rows_, w, rows_ * sizeof(float));
    QuantizeToGrids(w, rows_, scales(group), zeros(group), multiplier, MaxCode(spec_.bits),
                    codes_.data() + j * rows_, values_.data());

    // The later columns move by (w_j − q_j)·R_jk/R_kk (inverse_hessian.h); `shift` holds
    // q_j − w_j, so that they, like the reference's, are updated by subtraction.
    const float* u = factor_.updates.data() + j * in_;  // row j of R·diag(R)⁻¹
    const float* w_original = sorted_original_.data() + j * rows_;
    const float r_jj = factor_.diagonal[j];
    float* __restrict shift = shifts_.data() + (j - block_begin) * rows_;
    double error_sq = 0.0;
    for (int64_t r = 0; r < rows_; ++r) {
      shift[r] = values_[r] - w_original[r];
      const double err = static_cast<double>(w[r] - values_[r]) * r_jj;
      error_sq += err * err;
    }
    std::memcpy(w, values_.data(), rows_ * sizeof(float));  // column j is final
    for (int64_t k = j + 1; k < until; ++k) {
      float* __restrict target = w_.data() + k * rows_;
      for (int64_t r = 0; r < rows_; ++r) target[r] -= u[k] * shift[r];
    }
    return error_sq;
  }

  // The columns [j, j + width) of a dynamic group as the reference fits its grid on them:
  // updated by every earlier column, w_k − Σ_{i<j} e_i·U_ik. The sweep holds the running sums
  // of the R form instead, w_k + A_k/R_kk with A = Σ_{i<j} (w_i − q_i)·R_i,· (inverse_hessian.h),
  // which agree only once a column's sum is complete; the reference's values are
  // w + A·(R_[j..),[j..))⁻¹, whose first `width` columns need only R's leading block there:
  // X_k = A_k/R_kk − Σ_{j≤m<k} X_m·R_mk/R_kk, a forward substitution (BLAS strsm), rows·width² flops.
  const float* GroupAsUpdated(int64_t j, int64_t width) {
    group_values_.resize(width * rows_);
    for (int64_t k = 0; k < width; ++k) {
      float* __restrict x = group_values_.data() + k * rows_;
      const float* held = w_.data() + (j + k) * rows_;
      const float* original = sorted_original_.data() + (j + k) * rows_;
      for (int64_t r = 0; r < rows_; ++r) x[r] = held[r] - original[r];
    }
    kernels::UnitUpperTransposedSolve(width, rows_, factor_.updates.data() + j * in_ + j, in_, group_values_.data());
    for (int64_t k = 0; k < width; ++k) {
      float* x = group_values_.data() + k * rows_;
      const float* original = sorted_original_.data() + (j + k) * rows_;
      for (int64_t r = 0; r < rows_; ++r) x[r] += original[r];
    }
    return group_values_.data();
  }

  // W[:, to:until] -= Shift[:, from:to] · U'[from:to, to:until], in the transposed layout: one GEMM.
  void ApplyShifts(int64_t block_begin, int64_t from, int64_t to, int64_t until) {
    if (to >= until) return;
    const int64_t width = to - from, rest = until - to;
    for (int64_t j = 0; j < width; ++j)
      std::memcpy(u_block_.data() + j * rest, factor_.updates.data() + (from + j) * in_ + to, rest * sizeof(float));
    kernels::GemmTransA(rest, rows_, width, u_block_.data(), shifts_.data() + (from - block_begin) * rows_,
                        w_.data() + to * rows_, /*alpha=*/-1.0f, /*beta=*/1.0f);
  }

  const QuantSpec& spec_;
  const LayerProblem& problem_;
  const InverseHessianFactor& factor_;
  const int64_t row_begin_, rows_, in_, grid_stride_;
  const bool dynamic_groups_;
  QuantizedLinear& result_;
  std::vector<float> w_;        // [in, rows] in sweep order; quantized columns hold their values
  std::vector<int32_t> codes_;  // [in, rows] in sweep order
  std::vector<float> sorted_original_;  // [in, rows]: W' in sweep order, before any update
  std::vector<float> shifts_;   // [block_size, rows]: q − w of the current block's columns
  std::vector<float> u_block_;  // a block of update rows, copied contiguous for GEMM
  std::vector<float> values_;   // [rows]: the column being quantized, on its grid
  std::vector<float> unrounded_;  // [in, rows] in sweep order, when the problem asks for it
  std::vector<float> group_values_;  // [group_size, rows]: a dynamic group as its grid sees it
};

class GptqSolver final : public Solver {
 public:
  explicit GptqSolver(const QuantSpec& spec) : spec_(spec) {}

  std::string_view method() const override { return "gptq"; }
  bool needs_hessian() const override { return true; }

  absl::StatusOr<QuantizedLinear> Solve(const LayerProblem& problem) const override {
    QSHARD_RETURN_IF_ERROR(ValidateLayerProblem(problem, spec_, /*needs_hessian=*/true));
    const std::string_view name = problem.name.empty() ? "layer" : problem.name;
    const int64_t out = problem.weight->dim(0), in = problem.weight->dim(1);
    const int64_t blocks = static_cast<int64_t>(problem.hessians.size()), rows = out / blocks;

    QuantizedLinear result;
    QuantizedWeight& q = result.weight;
    q.bits = spec_.bits;
    q.rows = out;
    q.cols = in;
    q.codes.resize(out * in);
    q.scales = Tensor({GroupCount(in, spec_.group_size), out});
    q.zeros.resize(q.scales.size());
    q.g_idx = ContiguousGroupIndex(in, spec_.group_size);
    q.column_scale.assign(problem.column_scale.begin(), problem.column_scale.end());
    result.dequantized = Tensor({out, in});
    if (problem.keep_unrounded) result.unrounded = Tensor({out, in});
    result.proxy_error = 0.0;

    const bool dynamic_groups = spec_.group_size > 0 && !spec_.static_groups && problem.fixed_grids == nullptr;
    for (int64_t b = 0; b < blocks; ++b) {
      auto factor = FactorInverseHessian(*problem.hessians[b], spec_, problem.pool);
      if (!factor.ok())
        return WithContext(factor.status(), blocks == 1 ? std::string(name) : absl::StrCat(std::string(name), " rows block ", b));
      // Dynamic groups follow sweep order; validation allows act-order with them only for
      // one row block, so this g_idx holds for all rows.
      if (dynamic_groups && spec_.act_order)
        for (int64_t j = 0; j < in; ++j) q.g_idx[factor->order[j]] = static_cast<int32_t>(j / spec_.group_size);
      RowBlockSweep sweep(spec_, problem, *factor, b * rows, rows, result);
      result.proxy_error += sweep.Run();
      result.damp_used = std::max(result.damp_used, factor->damp);
      result.damp_retries = std::max(result.damp_retries, factor->retries);
    }
    return result;
  }

 private:
  QuantSpec spec_;
};

}  // namespace

std::unique_ptr<Solver> MakeGptqSolver(const QuantSpec& spec) { return std::make_unique<GptqSolver>(spec); }

}  // namespace qshard
