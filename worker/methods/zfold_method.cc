#include "worker/methods/zfold_method.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/methods/zfold_group.h"

namespace qshard {
namespace {

class ZfoldMethod : public FoldedGroupMethod {
 public:
  ZfoldMethod(const MethodOptions& options, std::unique_ptr<Solver> gptq)
      : FoldedGroupMethod(options), gptq_(std::move(gptq)) {}

 protected:
  absl::StatusOr<FoldedLinears> Linears(const GroupProblem& group, std::span<const std::string>) const override {
    if (group.input_stats == nullptr)
      return absl::FailedPreconditionError(
          absl::StrCat("layer ", group.layer, ": zfold needs the group's input statistics"));
    FoldedLinears folded;
    const Solver* gptq = group.gptq != nullptr ? group.gptq : gptq_.get();
    for (const std::string& name : group.linears) folded.linears.push_back({name, {group.input_stats}, gptq});
    return folded;
  }

 private:
  std::unique_ptr<Solver> gptq_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeZfoldMethod(const MethodOptions& options) {
  if (options.zfold_max_iters < 0)
    return absl::InvalidArgumentError(absl::StrCat("zfold_max_iters: ", options.zfold_max_iters, " is negative"));
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> gptq, MakeSolver("gptq", options.spec));
  return std::unique_ptr<LayerMethod>(new ZfoldMethod(options, std::move(gptq)));
}

}  // namespace qshard
