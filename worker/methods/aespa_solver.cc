#include "worker/methods/aespa_solver.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/methods/head_parts.h"
#include "worker/methods/zfold_problem.h"
#include "worker/solvers/gptq.h"
#include "worker/solvers/proxy_error.h"

namespace qshard {
namespace {

class AespaSolver final : public Solver {
 public:
  AespaSolver(const QuantSpec& spec, const AdaRoundOptions& rounding, std::vector<std::vector<double>> weightings,
              const RoundingLearner& learner, const Solver* gptq)
      : spec_(spec), rounding_(rounding), weightings_(std::move(weightings)), learner_(learner),
        own_gptq_(gptq != nullptr ? nullptr : MakeGptqSolver(spec)), gptq_(gptq != nullptr ? *gptq : *own_gptq_) {}

  std::string_view method() const override { return "aespa"; }
  bool needs_hessian() const override { return true; }

  absl::StatusOr<QuantizedLinear> Solve(const LayerProblem& problem) const override {
    QSHARD_ASSIGN_OR_RETURN(Start start, StartOf(problem));
    QuantizedLinear& result = start.gptq;
    if (rounding_.iters <= 0) return std::move(result);
    Rows all;
    RoundingOf(start, 0, problem.weight->dim(0), {}, all);
    QSHARD_ASSIGN_OR_RETURN(RoundingCandidates candidates, Learn(problem, all.problem));
    result.weight.codes = ChooseRounding(std::move(candidates), result.weight.codes).codes;
    result.dequantized = result.weight.Dequantized();
    result.proxy_error = ProxyError(*problem.weight, result.dequantized, problem.hessians);
    result.unrounded = Tensor();
    return std::move(result);
  }

  absl::StatusOr<AespaHeads> SolveHeads(const LayerProblem& problem, int heads, int first, int count) const {
    const int64_t out = problem.weight->dim(0), blocks = static_cast<int64_t>(problem.hessians.size());
    if (heads <= 0 || out % heads != 0 || first < 0 || count <= 0 || first + count > heads ||
        (!weightings_.empty() && static_cast<int64_t>(weightings_.size()) != heads) ||
        (blocks != 1 && blocks != heads))
      return absl::InvalidArgumentError(absl::StrCat(std::string(problem.name), ": heads [", first, ", ",
                                                     first + count, ") of ", heads, " do not fit its ", out,
                                                     " rows, ", blocks, " Hessians and ", weightings_.size(),
                                                     " output weightings"));
    QSHARD_ASSIGN_OR_RETURN(Start start, StartOf(problem));
    const int64_t head_rows = out / heads;
    Rows rows;
    RoundingOf(start, first * head_rows, count * head_rows, {first, count}, rows);
    AespaHeads part;
    QSHARD_ASSIGN_OR_RETURN(part.candidates, Learn(problem, rows.problem));
    part.rows = std::move(rows.initial);
    part.gptq = std::move(start.gptq);
    part.gptq.unrounded = Tensor();
    return part;
  }

 private:
  // AdaRound on the learner, its errors (a device's) named with the linear.
  absl::StatusOr<RoundingCandidates> Learn(const LayerProblem& linear, const RoundingProblem& rows) const {
    absl::StatusOr<RoundingCandidates> candidates = learner_.Learn(rows, rounding_);
    if (!candidates.ok()) return WithContext(candidates.status(), absl::StrCat(std::string(linear.name), ": AdaRound"));
    return candidates;
  }

  // The GPTQ start and the AdaRound problem's pieces for the whole linear.
  struct Start {
    QuantizedLinear gptq;             // unrounded kept
    Tensor target;                    // the weight, dead inputs dropped as GPTQ drops them
    std::vector<WorkingHessian> hessians;
    ThreadPool* pool = nullptr;       // the problem's, for AdaRound's row parts
  };

  absl::StatusOr<Start> StartOf(const LayerProblem& problem) const {
    LayerProblem initial_problem = problem;
    initial_problem.keep_unrounded = rounding_.iters > 0;
    Start start;
    start.pool = problem.pool;
    QSHARD_ASSIGN_OR_RETURN(start.gptq, gptq_.Solve(initial_problem));
    if (rounding_.iters <= 0) return start;
    const int64_t out = problem.weight->dim(0), in = problem.weight->dim(1);
    if (!weightings_.empty()) {
      const int64_t heads = static_cast<int64_t>(weightings_.size()), head_rows = out / heads;
      if (out % heads != 0 || static_cast<int64_t>(weightings_.front().size()) != head_rows * head_rows)
        return absl::InvalidArgumentError(absl::StrCat(std::string(problem.name), ": ", heads,
                                                       " output weightings do not fit ", out, " rows"));
    }
    // The loss is measured with the Hessians prepared as for the search (damped, dead inputs
    // dropped from the target as GPTQ drops them).
    start.target = *problem.weight;
    const int64_t block_rows = out / static_cast<int64_t>(problem.hessians.size());
    for (size_t b = 0; b < problem.hessians.size(); ++b) {
      start.hessians.push_back(PrepareHessian(*problem.hessians[b], spec_.damp));
      for (int64_t r = b * block_rows; r < (static_cast<int64_t>(b) + 1) * block_rows; ++r)
        for (int64_t c = 0; c < in; ++c)
          if (start.hessians.back().dead[c]) start.target.at(r, c) = 0.0f;
    }
    return start;
  }

  // Some rows of the AdaRound problem; the problem points into `start` and the slices here.
  struct Rows {
    Tensor target, unrounded;
    QuantizedWeight initial;
    RoundingProblem problem;
  };

  // Rows [first_row, first_row + rows) of the AdaRound problem, into `part` — the whole one
  // for no heads (count 0), else those of `heads` (first, count), which the Hessian blocks and
  // the output weightings follow (one Hessian for all rows, or one per head).
  void RoundingOf(const Start& start, int64_t first_row, int64_t rows, std::pair<int, int> heads, Rows& part) const {
    const bool whole = heads.second == 0;
    part.target = whole ? Tensor() : RowsOf(start.target, first_row, rows);
    part.unrounded = whole ? Tensor() : RowsOf(start.gptq.unrounded, first_row, rows);
    part.initial = whole ? QuantizedWeight() : RowsOf(start.gptq.weight, first_row, rows);
    RoundingProblem& p = part.problem;
    p.weight = whole ? &start.target : &part.target;
    p.unrounded = whole ? &start.gptq.unrounded : &part.unrounded;
    p.initial = whole ? &start.gptq.weight : &part.initial;
    p.pool = start.pool;
    const size_t first_block = start.hessians.size() == 1 ? 0 : heads.first;
    const size_t block_count = start.hessians.size() == 1 || whole ? start.hessians.size() : heads.second;
    for (size_t b = first_block; b < first_block + block_count; ++b) p.hessians.push_back(&start.hessians[b].h);
    const size_t first_weighting = whole ? 0 : heads.first;
    const size_t weighting_count = whole || weightings_.empty() ? weightings_.size() : heads.second;
    for (size_t h = first_weighting; h < first_weighting + weighting_count; ++h)
      p.output_weightings.push_back(&weightings_[h]);
  }

  QuantSpec spec_;
  AdaRoundOptions rounding_;
  std::vector<std::vector<double>> weightings_;
  const RoundingLearner& learner_;
  std::unique_ptr<Solver> own_gptq_;  // the CPU's, when none was given
  const Solver& gptq_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Solver>> MakeAespaSolver(const QuantSpec& spec, const AdaRoundOptions& rounding,
                                                        std::vector<std::vector<double>> output_weightings,
                                                        const RoundingLearner* learner, const Solver* gptq) {
  QSHARD_RETURN_IF_ERROR(ValidateQuantSpec(spec));
  if (!(rounding.learning_rate > 0.0 && std::isfinite(rounding.learning_rate)))
    return absl::InvalidArgumentError(absl::StrCat("aespa learning rate: ", rounding.learning_rate, " must be > 0"));
  if (rounding.iters < 0) return absl::InvalidArgumentError(absl::StrCat("aespa AdaRound iterations: ", rounding.iters));
  for (const std::vector<double>& g : output_weightings) {
    const int64_t d = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(g.size()))));
    if (d * d != static_cast<int64_t>(g.size()) || g.size() != output_weightings.front().size())
      return absl::InvalidArgumentError("aespa output weightings: not square matrices of one size");
  }
  return std::unique_ptr<Solver>(new AespaSolver(spec, rounding, std::move(output_weightings),
                                                 learner != nullptr ? *learner : CpuRoundingLearner(), gptq));
}

absl::StatusOr<AespaHeads> SolveAespaHeads(const Solver& solver, const LayerProblem& problem, int heads, int first,
                                           int count) {
  const auto* aespa = dynamic_cast<const AespaSolver*>(&solver);
  if (aespa == nullptr) return absl::InvalidArgumentError(absl::StrCat(std::string(problem.name), ": not an aespa solver"));
  return aespa->SolveHeads(problem, heads, first, count);
}

}  // namespace qshard
