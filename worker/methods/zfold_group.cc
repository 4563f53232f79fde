#include "worker/methods/zfold_group.h"

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

}  // namespace

absl::StatusOr<GroupSolution> SolveFoldedGroup(std::span<const GroupLinear> linears, const MethodOptions& options,
                                               const GroupProblem& group) {
  const std::string where = absl::StrCat("layer ", group.layer, " ", linears.front().name);
  if (group.config == nullptr) return absl::FailedPreconditionError(absl::StrCat(where, ": no model config"));
  std::vector<StackPart> parts;
  for (const GroupLinear& l : linears) {
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

  const StackedRows stack = StackRows(parts, options.spec.damp);
  const ZfoldSolution found =
      SearchZfold(stack, options.spec, options.zfold_max_iters, learn_zeta ? &producer.channels : nullptr);
  GroupSolution solution;
  std::vector<float> zeta;  // per input column; empty: 1
  FixedGrids grids = found.grids;
  if (learn_zeta) {
    QSHARD_ASSIGN_OR_RETURN(ProducerFold fold, FoldIntoProducer(producer, found.channel_zeta, options.spec.fp16_scales,
                                                                *group.weights, group.quantized));
    zeta = ColumnZeta(producer.channels, fold.applied);
    solution.rewrites = std::move(fold.rewrites);
    // α for the ζ the producer really applies (it differs from the searched ζ by the fp16
    // rounding of a quantized producer's scales), and never the min-max start.
    grids = SearchGrids(stack, zeta, options.spec, found.grids);
  }

  int64_t row = 0;
  for (const GroupLinear& l : linears) {
    const int64_t rows = group.weights->linears.at(l.name).weight.dim(0);
    const FixedGrids own = SliceRows(grids, row, rows);
    row += rows;
    LayerProblem problem;
    problem.hessians = l.hessians;
    problem.column_scale = zeta;
    problem.fixed_grids = &own;
    QSHARD_ASSIGN_OR_RETURN(QuantizedWeight * solved, SolveLinear(*l.solver, problem, l.name, group, solution));
    // ζ now lives in the producer: without it the codes and scales describe W·diag(ζ)⁻¹, the
    // GPTQ form the checkpoint stores.
    solved->column_scale.clear();
  }
  return solution;
}

}  // namespace qshard
