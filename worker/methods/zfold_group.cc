#include "worker/methods/zfold_group.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/methods/per_linear_method.h"
#include "worker/methods/zfold_fold.h"
#include "worker/methods/zfold_search.h"

namespace qshard {
namespace {

// Rows [row_begin, row_begin + rows) of stacked grids.
FixedGrids SliceRows(const FixedGrids& grids, int64_t row_begin, int64_t rows) {
  const int64_t groups = grids.scales.dim(0), total = grids.scales.dim(1);
  FixedGrids out;
  out.scales = Tensor({groups, rows});
  out.zeros.resize(groups * rows);
  for (int64_t g = 0; g < groups; ++g) {
    std::copy_n(grids.scales.row(g) + row_begin, rows, out.scales.row(g));
    std::copy_n(grids.zeros.data() + g * total + row_begin, rows, out.zeros.data() + g * rows);
  }
  return out;
}

// The producer ζ may be folded into: none when it is a norm that a full-precision sibling of
// the group also reads.
absl::StatusOr<ZetaProducer> FoldableProducer(const GroupProblem& group) {
  QSHARD_ASSIGN_OR_RETURN(ZetaProducer producer, FindZetaProducer(*group.config, group.linears.front()));
  if (group.partial && producer.kind == ZetaProducer::Kind::kNorm) return ZetaProducer{};
  return producer;
}

std::string Where(const GroupProblem& group) {
  return absl::StrCat("layer ", group.layer, " ", group.linears.empty() ? "" : group.linears.front());
}

absl::Status CheckProblem(const GroupProblem& group) {
  if (group.config == nullptr) return absl::FailedPreconditionError(absl::StrCat(Where(group), ": no model config"));
  if (group.linears.empty()) return absl::FailedPreconditionError(absl::StrCat(Where(group), ": no linear to solve"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GroupSolution> FoldedGroupMethod::SolveGroup(const GroupProblem& group) const {
  QSHARD_ASSIGN_OR_RETURN(SharedGroupPart shared, SolveShared(group));
  QSHARD_ASSIGN_OR_RETURN(GroupSolution solution, SolveLinears(group, shared, group.linears));
  solution.rewrites = std::move(shared.rewrites);
  return solution;
}

absl::StatusOr<SharedGroupPart> FoldedGroupMethod::SolveShared(const GroupProblem& group) const {
  QSHARD_RETURN_IF_ERROR(CheckProblem(group));
  const std::string where = Where(group);
  QSHARD_ASSIGN_OR_RETURN(const FoldedLinears folded, Linears(group, {}));
  std::vector<StackPart> parts;
  for (const GroupLinear& l : folded.linears) {
    auto it = group.weights->linears.find(l.name);
    if (it == group.weights->linears.end())
      return absl::FailedPreconditionError(absl::StrCat(where, ": layer has no linear '", l.name, "'"));
    if (l.hessians.empty() || it->second.weight.dim(0) % static_cast<int64_t>(l.hessians.size()) != 0)
      return absl::FailedPreconditionError(absl::StrCat(where, ": ", l.hessians.size(), " Hessians for the ",
                                                        it->second.weight.dim(0), " rows of ", l.name));
    for (const HessianSum* h : l.hessians)
      if (h == nullptr || h->tokens <= 0 || h->dim != it->second.weight.dim(1))
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": calibration statistics of ", l.name, " are missing or have the wrong size"));
    parts.push_back({&it->second.weight, l.hessians});
  }
  QSHARD_ASSIGN_OR_RETURN(const ZetaProducer producer, FoldableProducer(group));
  const bool learn_zeta = producer.kind != ZetaProducer::Kind::kNone;
  if (learn_zeta && static_cast<int64_t>(producer.channels.channel_of_column.size()) != parts.front().weight->dim(1))
    return absl::FailedPreconditionError(absl::StrCat(where, ": input width does not match its producer"));

  const MethodOptions& o = options();
  const StackedRows stack = StackRows(parts, o.spec.damp);
  const ZfoldSolution found = SearchZfold(stack, o.spec, o.zfold_max_iters, learn_zeta ? &producer.channels : nullptr,
                                          group.pool);
  SharedGroupPart shared;
  FixedGrids grids = found.grids;
  if (learn_zeta) {
    QSHARD_ASSIGN_OR_RETURN(ProducerFold fold, FoldIntoProducer(producer, found.channel_zeta, o.spec.fp16_scales,
                                                                *group.weights, group.quantized));
    shared.column_scale = ColumnZeta(producer.channels, fold.applied);
    shared.rewrites = std::move(fold.rewrites);
    // α for the ζ the producer really applies (it differs from the searched ζ by the fp16
    // rounding of a quantized producer's scales), and never the min-max start.
    grids = SearchGrids(stack, shared.column_scale, o.spec, found.grids, group.pool);
  }
  int64_t row = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const int64_t rows = parts[i].weight->dim(0);
    shared.grids[folded.linears[i].name] = SliceRows(grids, row, rows);
    row += rows;
  }
  return shared;
}

absl::StatusOr<LayerProblem> FoldedGroupMethod::LinearProblem(const GroupProblem& group, const SharedGroupPart& shared,
                                                              const GroupLinear& l) const {
  const std::string where = Where(group);
  // The shared part may have crossed the network: its shapes are checked, not trusted.
  auto grids = shared.grids.find(l.name);
  auto weight = group.weights->linears.find(l.name);
  if (grids == shared.grids.end() || weight == group.weights->linears.end())
    return absl::FailedPreconditionError(absl::StrCat(where, ": no shared grids or weight for ", l.name));
  const int64_t rows = weight->second.weight.dim(0), cols = weight->second.weight.dim(1);
  if (grids->second.scales.rank() != 2 || grids->second.scales.dim(1) != rows ||
      static_cast<int64_t>(grids->second.zeros.size()) != grids->second.scales.size() ||
      (!shared.column_scale.empty() && static_cast<int64_t>(shared.column_scale.size()) != cols))
    return absl::InvalidArgumentError(absl::StrCat(where, ": the shared grids do not fit ", l.name));
  LayerProblem problem;
  problem.name = absl::StrCat("layer ", group.layer, " ", l.name);
  problem.weight = &weight->second.weight;
  problem.hessians = l.hessians;
  problem.column_scale = shared.column_scale;
  problem.fixed_grids = &grids->second;
  problem.pool = group.pool;
  return problem;
}

absl::StatusOr<GroupSolution> FoldedGroupMethod::SolveLinears(const GroupProblem& group, const SharedGroupPart& shared,
                                                              std::span<const std::string> linears) const {
  QSHARD_RETURN_IF_ERROR(CheckProblem(group));
  const std::string where = Where(group);
  QSHARD_ASSIGN_OR_RETURN(const FoldedLinears folded, Linears(group, linears));
  GroupSolution solution;
  for (const GroupLinear& l : folded.linears) {
    if (std::find(linears.begin(), linears.end(), l.name) == linears.end()) continue;
    QSHARD_ASSIGN_OR_RETURN(const LayerProblem problem, LinearProblem(group, shared, l));
    QSHARD_ASSIGN_OR_RETURN(QuantizedWeight * solved, SolveLinear(*l.solver, problem, l.name, group, solution));
    // ζ now lives in the producer: without it the codes and scales describe W·diag(ζ)⁻¹, the
    // GPTQ form the checkpoint stores.
    solved->column_scale.clear();
  }
  if (solution.linears.size() != linears.size())
    return absl::InvalidArgumentError(absl::StrCat(where, ": asked for linears outside the group"));
  return solution;
}

}  // namespace qshard
