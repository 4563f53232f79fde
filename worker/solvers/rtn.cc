#include "worker/solvers/rtn.h"

#include <vector>

#include "core/status.h"
#include "worker/solvers/column_layout.h"
#include "worker/solvers/proxy_error.h"

namespace qshard {
namespace {

class RtnSolver final : public Solver {
 public:
  explicit RtnSolver(const QuantSpec& spec) : spec_(spec) {}

  std::string_view method() const override { return "rtn"; }
  bool needs_hessian() const override { return false; }

  absl::StatusOr<QuantizedLinear> Solve(const LayerProblem& problem) const override {
    QSHARD_RETURN_IF_ERROR(ValidateLayerProblem(problem, spec_, /*needs_hessian=*/false));
    const Tensor& w = *problem.weight;
    const int64_t out = w.dim(0), in = w.dim(1), groups = GroupCount(in, spec_.group_size);

    QuantizedLinear result;
    QuantizedWeight& q = result.weight;
    q.bits = spec_.bits;
    q.rows = out;
    q.cols = in;
    q.g_idx = ContiguousGroupIndex(in, spec_.group_size);
    q.column_scale.assign(problem.column_scale.begin(), problem.column_scale.end());
    if (problem.fixed_grids != nullptr) {
      q.scales = problem.fixed_grids->scales;
      q.zeros = problem.fixed_grids->zeros;
    } else {
      q.scales = Tensor({groups, out});
      q.zeros.resize(groups * out);
    }

    // Work on input columns (rows of wt), each contiguous over the output rows.
    std::vector<float> wt(in * out), values(in * out);
    std::vector<int32_t> codes(in * out);
    TransposeRows(w.data(), out, in, wt.data());
    if (problem.fixed_grids == nullptr)
      FitGroupGrids(spec_.grid_options(), wt.data(), in, out, spec_.group_size, q.scales.data(),
                    q.zeros.data(), out);
    const int32_t max_code = MaxCode(spec_.bits);
    for (int64_t c = 0; c < in; ++c) {
      const int64_t group = q.g_idx[c];
      QuantizeToGrids(wt.data() + c * out, out, q.scales.row(group), q.zeros.data() + group * out,
                      q.column_scale.empty() ? 1.0f : q.column_scale[c], max_code,
                      codes.data() + c * out, values.data() + c * out);
    }
    q.codes.resize(out * in);
    result.dequantized = Tensor({out, in});
    TransposeRows(codes.data(), in, out, q.codes.data());
    TransposeRows(values.data(), in, out, result.dequantized.data());
    if (!problem.hessians.empty()) result.proxy_error = ProxyError(w, result.dequantized, problem.hessians);
    return result;
  }

 private:
  QuantSpec spec_;
};

}  // namespace

std::unique_ptr<Solver> MakeRtnSolver(const QuantSpec& spec) { return std::make_unique<RtnSolver>(spec); }

}  // namespace qshard
