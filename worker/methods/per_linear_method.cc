#include "worker/methods/per_linear_method.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {
namespace {

class PerLinearMethod : public LayerMethod {
 public:
  PerLinearMethod(std::string name, std::unique_ptr<Solver> solver)
      : name_(std::move(name)), solver_(std::move(solver)) {}

  std::string_view name() const override { return name_; }
  bool needs_calibration() const override { return solver_->needs_hessian(); }

  absl::Status QuantizeGroup(GroupContext& context) const override {
    for (const std::string& linear : context.linears) {
      LayerProblem problem;
      if (context.input_stats != nullptr) problem.hessians = {context.input_stats};
      QSHARD_RETURN_IF_ERROR(SolveAndInstall(*solver_, problem, linear, context));
    }
    return absl::OkStatus();
  }

 private:
  std::string name_;
  std::unique_ptr<Solver> solver_;
};

}  // namespace

absl::Status SolveAndInstall(const Solver& solver, LayerProblem problem, const std::string& linear,
                             GroupContext& context) {
  Linear& target = context.weights->linears.at(linear);
  const std::string full_name = absl::StrCat("layer ", context.layer, " ", linear);
  problem.name = full_name;
  problem.weight = &target.weight;
  const auto start = std::chrono::steady_clock::now();
  QSHARD_ASSIGN_OR_RETURN(QuantizedLinear result, solver.Solve(problem));
  LinearReport report;
  report.name = linear;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.damp_used = result.damp_used;
  report.damp_retries = result.damp_retries;
  if (context.input_stats != nullptr)
    report.relative_error = RelativeOutputError(target.weight, result.dequantized, *context.input_stats);
  target.weight = result.dequantized;
  context.quantized->reports.push_back(report);
  context.quantized->linears[linear] = std::move(result);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LayerMethod>> MakePerLinearMethod(const MethodOptions& options) {
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> solver, MakeSolver(options.method, options.spec));
  return std::unique_ptr<LayerMethod>(new PerLinearMethod(options.method, std::move(solver)));
}

}  // namespace qshard
