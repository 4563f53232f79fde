#include "worker/methods/finequant_method.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/methods/per_linear_method.h"
#include "worker/solvers/finequant.h"

namespace qshard {
namespace {

class FineQuantMethod : public LayerMethod {
 public:
  explicit FineQuantMethod(const MethodOptions& options) : options_(options) {}

  absl::StatusOr<GroupSolution> SolveGroup(const GroupProblem& group) const override {
    std::vector<const Tensor*> weights;
    for (const std::string& linear : group.linears) {
      const auto it = group.weights->linears.find(linear);
      if (it == group.weights->linears.end())
        return absl::FailedPreconditionError(absl::StrCat("layer ", group.layer, " ", linear, ": the layer has no such linear"));
      weights.push_back(&it->second.weight);
    }
    QSHARD_ASSIGN_OR_RETURN(const int group_size, FineQuantGroupSizeOf(weights, options_));
    QuantSpec spec = options_.spec;
    spec.group_size = group_size;
    QSHARD_ASSIGN_OR_RETURN(const std::unique_ptr<Solver> rtn, MakeSolver("rtn", spec));
    GroupSolution solution;
    for (const std::string& linear : group.linears)
      QSHARD_RETURN_IF_ERROR(SolveLinear(*rtn, LayerProblem(), linear, group, solution).status());
    return solution;
  }

 private:
  MethodOptions options_;
};

}  // namespace

absl::StatusOr<int> FineQuantGroupSizeOf(std::span<const Tensor* const> weights, const MethodOptions& options) {
  QSHARD_RETURN_IF_ERROR(ValidateQuantSpec(options.spec));
  int finest = options.spec.group_size;
  for (const Tensor* weight : weights) {
    LayerProblem problem;
    problem.weight = weight;
    QSHARD_ASSIGN_OR_RETURN(const FineQuantChoice choice, ChooseFineQuantGroupSize(problem, options.spec));
    finest = FinerGroupSize(finest, choice.group_size, weight->dim(1));
  }
  return finest;
}

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeFineQuantMethod(const MethodOptions& options) {
  QSHARD_RETURN_IF_ERROR(ValidateQuantSpec(options.spec));
  return std::unique_ptr<LayerMethod>(new FineQuantMethod(options));
}

}  // namespace qshard
