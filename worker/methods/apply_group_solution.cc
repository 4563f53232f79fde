#include "absl/strings/str_cat.h"
#include "worker/methods/layer_method.h"

namespace qshard {
namespace {

// The tensor a rewrite replaces, or null when the layer has none of that shape.
Tensor* RewriteTarget(const TensorRewrite& rewrite, DecoderLayerWeights& weights, QuantizedLayer& quantized) {
  Tensor* target = nullptr;
  switch (rewrite.target) {
    case TensorRewrite::Target::kNorm: {
      auto it = weights.norms.find(rewrite.name);
      if (it != weights.norms.end()) target = &it->second;
      break;
    }
    case TensorRewrite::Target::kLinearWeight:
    case TensorRewrite::Target::kLinearBias: {
      auto it = weights.linears.find(rewrite.name);
      if (it == weights.linears.end()) break;
      target = rewrite.target == TensorRewrite::Target::kLinearWeight ? &it->second.weight : &it->second.bias;
      break;
    }
    case TensorRewrite::Target::kQuantizedScales: {
      auto it = quantized.linears.find(rewrite.name);
      if (it != quantized.linears.end()) target = &it->second.scales;
      break;
    }
  }
  return target != nullptr && target->shape() == rewrite.value.shape() ? target : nullptr;
}

}  // namespace

absl::Status ApplyGroupSolution(GroupSolution solution, DecoderLayerWeights& weights, QuantizedLayer& quantized) {
  std::vector<Tensor*> targets;
  for (const TensorRewrite& rewrite : solution.rewrites) {
    targets.push_back(RewriteTarget(rewrite, weights, quantized));
    if (targets.back() == nullptr)
      return absl::FailedPreconditionError(
          absl::StrCat("rewrite of '", rewrite.name, "': the layer has no such tensor of that shape"));
  }
  for (const auto& [name, q] : solution.linears)
    if (!weights.linears.count(name) || weights.linears.at(name).weight.shape() != std::vector<int64_t>{q.rows, q.layer_cols()})
      return absl::FailedPreconditionError(absl::StrCat("solution for '", name, "' does not fit the layer"));

  for (size_t i = 0; i < targets.size(); ++i) {
    *targets[i] = std::move(solution.rewrites[i].value);
    // A quantized linear's weight is its dequantized codes: keep the layer in step.
    if (solution.rewrites[i].target == TensorRewrite::Target::kQuantizedScales) {
      const std::string& name = solution.rewrites[i].name;
      weights.linears.at(name).weight = quantized.linears.at(name).LayerWeight();
    }
  }
  for (auto& [name, q] : solution.linears) {
    weights.linears.at(name).weight = q.LayerWeight();
    quantized.linears[name] = std::move(q);
  }
  for (LinearReport& report : solution.reports) quantized.reports.push_back(std::move(report));
  return absl::OkStatus();
}

}  // namespace qshard
