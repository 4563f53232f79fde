#include "worker/methods/aespa_solver.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/methods/zfold_problem.h"
#include "worker/solvers/gptq.h"
#include "worker/solvers/proxy_error.h"

namespace qshard {
namespace {

class AespaSolver final : public Solver {
 public:
  AespaSolver(const QuantSpec& spec, const AdaRoundOptions& rounding, std::vector<std::vector<double>> weightings)
      : spec_(spec), rounding_(rounding), weightings_(std::move(weightings)), gptq_(MakeGptqSolver(spec)) {}

  std::string_view method() const override { return "aespa"; }
  bool needs_hessian() const override { return true; }

  absl::StatusOr<QuantizedLinear> Solve(const LayerProblem& problem) const override {
    LayerProblem initial_problem = problem;
    initial_problem.keep_unrounded = rounding_.iters > 0;
    QSHARD_ASSIGN_OR_RETURN(QuantizedLinear result, gptq_->Solve(initial_problem));
    if (rounding_.iters <= 0) return result;
    const int64_t out = problem.weight->dim(0), in = problem.weight->dim(1);
    if (!weightings_.empty()) {
      const int64_t heads = static_cast<int64_t>(weightings_.size()), head_rows = out / heads;
      if (out % heads != 0 || static_cast<int64_t>(weightings_.front().size()) != head_rows * head_rows)
        return absl::InvalidArgumentError(absl::StrCat(std::string(problem.name), ": ", heads,
                                                       " output weightings do not fit ", out, " rows"));
    }

    // The loss is measured with the Hessians prepared as for the search (damped, dead inputs
    // dropped from the target as GPTQ drops them).
    Tensor target = *problem.weight;
    std::vector<WorkingHessian> hessians;
    const int64_t block_rows = out / static_cast<int64_t>(problem.hessians.size());
    for (size_t b = 0; b < problem.hessians.size(); ++b) {
      hessians.push_back(PrepareHessian(*problem.hessians[b], spec_.damp));
      for (int64_t r = b * block_rows; r < (static_cast<int64_t>(b) + 1) * block_rows; ++r)
        for (int64_t c = 0; c < in; ++c)
          if (hessians.back().dead[c]) target.at(r, c) = 0.0f;
    }
    RoundingProblem rounding{&target, &result.unrounded, &result.weight, {}, {}, problem.pool};
    for (const WorkingHessian& h : hessians) rounding.hessians.push_back(&h.h);
    for (const std::vector<double>& g : weightings_) rounding.output_weightings.push_back(&g);
    const RoundingResult learned = LearnRounding(rounding, rounding_);

    result.weight.codes = learned.codes;
    result.dequantized = result.weight.Dequantized();
    result.proxy_error = ProxyError(*problem.weight, result.dequantized, problem.hessians);
    result.unrounded = Tensor();
    return result;
  }

 private:
  QuantSpec spec_;
  AdaRoundOptions rounding_;
  std::vector<std::vector<double>> weightings_;
  std::unique_ptr<Solver> gptq_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Solver>> MakeAespaSolver(const QuantSpec& spec, const AdaRoundOptions& rounding,
                                                        std::vector<std::vector<double>> output_weightings) {
  QSHARD_RETURN_IF_ERROR(ValidateQuantSpec(spec));
  if (!(rounding.learning_rate > 0.0 && std::isfinite(rounding.learning_rate)))
    return absl::InvalidArgumentError(absl::StrCat("aespa learning rate: ", rounding.learning_rate, " must be > 0"));
  if (rounding.iters < 0) return absl::InvalidArgumentError(absl::StrCat("aespa AdaRound iterations: ", rounding.iters));
  for (const std::vector<double>& g : output_weightings) {
    const int64_t d = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(g.size()))));
    if (d * d != static_cast<int64_t>(g.size()) || g.size() != output_weightings.front().size())
      return absl::InvalidArgumentError("aespa output weightings: not square matrices of one size");
  }
  return std::unique_ptr<Solver>(new AespaSolver(spec, rounding, std::move(output_weightings)));
}

}  // namespace qshard
