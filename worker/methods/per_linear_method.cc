#include "worker/methods/per_linear_method.h"

#include <chrono>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {
namespace {

class PerLinearMethod : public LayerMethod {
 public:
  explicit PerLinearMethod(std::unique_ptr<Solver> solver) : solver_(std::move(solver)) {}

  absl::StatusOr<GroupSolution> SolveGroup(const GroupProblem& group) const override {
    GroupSolution solution;
    for (const std::string& linear : group.linears) {
      LayerProblem problem;
      if (group.input_stats != nullptr) problem.hessians = {group.input_stats};
      problem.pool = group.pool;
      QSHARD_RETURN_IF_ERROR(SolveLinear(*solver_, problem, linear, group, solution).status());
    }
    return solution;
  }

 private:
  std::unique_ptr<Solver> solver_;
};

absl::StatusOr<std::unique_ptr<LayerMethod>> MakePerLinearMethod(std::string_view solver_name,
                                                                 const MethodOptions& options) {
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> solver, MakeSolver(solver_name, options.spec));
  return MakePerLinearMethod(std::move(solver));
}

}  // namespace

std::unique_ptr<LayerMethod> MakePerLinearMethod(std::unique_ptr<Solver> solver) {
  return std::make_unique<PerLinearMethod>(std::move(solver));
}

absl::StatusOr<QuantizedWeight*> SolveLinear(const Solver& solver, LayerProblem problem, const std::string& linear,
                                             const GroupProblem& group, GroupSolution& solution) {
  const std::string full_name = absl::StrCat("layer ", group.layer, " ", linear);
  auto target = group.weights->linears.find(linear);
  if (target == group.weights->linears.end())
    return absl::FailedPreconditionError(absl::StrCat(full_name, ": the layer has no such linear"));
  problem.name = full_name;
  problem.weight = &target->second.weight;
  const auto start = std::chrono::steady_clock::now();
  QSHARD_ASSIGN_OR_RETURN(QuantizedLinear result, solver.Solve(problem));
  LinearReport report;
  report.name = linear;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.damp_used = result.damp_used;
  report.damp_retries = result.damp_retries;
  if (group.input_stats != nullptr) {
    // A solver that measured its error against the group's own statistics (GPTQ's sweep, RTN)
    // gives the numerator; one that solved against other Hessians (Z-Fold's) leaves it to be measured.
    const bool own = problem.hessians.size() == 1 && problem.hessians[0] == group.input_stats;
    report.relative_error = RelativeOutputError(target->second.weight, result.dequantized, *group.input_stats,
                                                own ? result.proxy_error : std::numeric_limits<double>::quiet_NaN());
  }
  solution.reports.push_back(report);
  QuantizedWeight& stored = solution.linears[linear];
  stored = std::move(result.weight);
  return &stored;
}

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeRtnMethod(const MethodOptions& options) {
  return MakePerLinearMethod("rtn", options);
}

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeGptqMethod(const MethodOptions& options) {
  return MakePerLinearMethod("gptq", options);
}

}  // namespace qshard
