#include "worker/methods/aespa_method.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/calibration/attention_stats.h"
#include <chrono>

#include "worker/methods/aespa_solver.h"
#include "worker/methods/head_parts.h"
#include "worker/methods/zfold_group.h"
#include "worker/solvers/proxy_error.h"

namespace qshard {
namespace {

constexpr double kAttentionRoundingWeight = 1.5;  // λ for q/k/v (paper §4.1, reference utils.py)
constexpr double kRoundingWeight = 1.0;

absl::Status CheckAttentionStats(const AttentionStats* stats, const GroupProblem& group) {
  const std::string where = absl::StrCat("layer ", group.layer, ": aespa");
  if (stats == nullptr) return absl::FailedPreconditionError(absl::StrCat(where, " needs attention statistics"));
  const ModelConfig& c = *group.config;
  if (stats->heads != c.num_heads || stats->kv_heads != c.num_kv_heads || stats->head_dim != c.head_dim ||
      stats->hidden != c.hidden_size || static_cast<int64_t>(stats->values.size()) != c.num_kv_heads)
    return absl::FailedPreconditionError(absl::StrCat(where, ": attention statistics do not match the model"));
  for (const HessianSum& v : stats->values)
    if (v.tokens <= 0) return absl::FailedPreconditionError(absl::StrCat(where, ": attention statistics are empty"));
  return absl::OkStatus();
}

class AespaMethod : public FoldedGroupMethod {
 public:
  explicit AespaMethod(const MethodOptions& options) : FoldedGroupMethod(options) {}

  absl::StatusOr<std::vector<HeadsPart>> SolveHeads(const GroupProblem& group, const SharedGroupPart& shared,
                                                    std::span<const HeadRange> ranges) const override {
    std::vector<std::string> names;
    for (const HeadRange& range : ranges) names.push_back(range.linear);
    QSHARD_ASSIGN_OR_RETURN(const FoldedLinears folded, Linears(group, names));
    std::vector<HeadsPart> parts;
    for (const HeadRange& range : ranges) {
      const int heads = AespaHeadsOf(*group.config, options(), range.linear);
      auto l = std::find_if(folded.linears.begin(), folded.linears.end(),
                            [&](const GroupLinear& g) { return g.name == range.linear; });
      if (heads == 0 || l == folded.linears.end() || l->solver == nullptr)
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", group.layer, ": aespa does not split '", range.linear, "' by head"));
      QSHARD_ASSIGN_OR_RETURN(const LayerProblem problem, LinearProblem(group, shared, *l));
      const auto start = std::chrono::steady_clock::now();
      QSHARD_ASSIGN_OR_RETURN(AespaHeads solved, SolveAespaHeads(*l->solver, problem, heads, range.first, range.count));
      HeadsPart& part = parts.emplace_back();
      part.linear = range.linear;
      part.first = range.first;
      // The report's error over these rows, for both roundings (the join picks one).
      const Tensor weight = RowsOf(*problem.weight, range.first * (problem.weight->dim(0) / heads), solved.rows.rows);
      const HessianSum* inputs[] = {group.input_stats};
      part.reference = ProxyError(weight, Tensor(weight.shape()), inputs);
      part.error = ProxyError(weight, solved.rows.Dequantized(), inputs);
      part.learned_codes = std::move(solved.candidates.learned);
      std::swap(solved.rows.codes, part.learned_codes);
      part.learned_error = ProxyError(weight, solved.rows.Dequantized(), inputs);
      std::swap(solved.rows.codes, part.learned_codes);
      part.weight = std::move(solved.rows);
      part.weight.column_scale.clear();  // ζ lives in the producer (as SolveLinears leaves it)
      part.losses = std::move(solved.candidates.initial_losses);
      part.learned_losses = std::move(solved.candidates.learned_losses);
      part.report.name = range.linear;
      part.report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      part.report.damp_used = solved.gptq.damp_used;
      part.report.damp_retries = solved.gptq.damp_retries;
    }
    return parts;
  }

 protected:
  absl::StatusOr<FoldedLinears> Linears(const GroupProblem& group, std::span<const std::string> solved) const override {
    if (group.input_stats == nullptr || group.config == nullptr)
      return absl::FailedPreconditionError(
          absl::StrCat("layer ", group.layer, ": aespa needs the group's input statistics and the model config"));
    const bool attention =
        std::find(group.linears.begin(), group.linears.end(), "self_attn.v_proj") != group.linears.end();
    FoldedLinears folded;
    if (!attention) {
      for (const std::string& name : group.linears) {
        QSHARD_ASSIGN_OR_RETURN(const Solver* solver, Add(group, folded.solvers, kRoundingWeight, {}));
        folded.linears.push_back({name, {group.input_stats}, solver});
      }
      return folded;
    }
    QSHARD_RETURN_IF_ERROR(CheckAttentionStats(group.attention, group));
    const auto solving = [&](std::string_view name) {
      return std::find(solved.begin(), solved.end(), name) != solved.end();
    };
    // The query/key output weightings (a RoPE pull-back per head) feed only their solvers.
    QueryKeyWeightings weightings;
    if (solving("self_attn.q_proj") || solving("self_attn.k_proj"))
      weightings = CrossWeightings(*group.attention, *group.config);
    std::vector<const HessianSum*> value_hessians;  // one per KV head: the rows of its head
    for (const HessianSum& v : group.attention->values) value_hessians.push_back(&v);
    for (const std::string& name : group.linears) {
      std::vector<std::vector<double>> head_weightings;
      std::vector<const HessianSum*> hessians = {group.input_stats};
      if (name == "self_attn.q_proj") {
        head_weightings = std::move(weightings.query);
      } else if (name == "self_attn.k_proj") {
        head_weightings = std::move(weightings.key);
      } else if (name == "self_attn.v_proj") {
        hessians = value_hessians;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", group.layer, ": aespa: unexpected '", name, "' in the attention group"));
      }
      const Solver* solver = nullptr;
      if (solving(name)) {
        QSHARD_ASSIGN_OR_RETURN(solver,
                                Add(group, folded.solvers, kAttentionRoundingWeight, std::move(head_weightings)));
      }
      folded.linears.push_back({name, std::move(hessians), solver});
    }
    return folded;
  }

 private:
  // A solver whose AdaRound runs on the group's learner (the worker's device, as the job's plan says).
  absl::StatusOr<const Solver*> Add(const GroupProblem& group, std::vector<std::unique_ptr<Solver>>& solvers,
                                    double lambda, std::vector<std::vector<double>> head_weightings) const {
    AdaRoundOptions rounding;
    rounding.iters = options().aespa_adaround_iters;
    rounding.learning_rate = options().aespa_learning_rate;
    rounding.lambda = lambda;
    QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> solver,
                            MakeAespaSolver(options().spec, rounding, std::move(head_weightings), group.rounding,
                                            group.gptq));
    solvers.push_back(std::move(solver));
    return solvers.back().get();
  }
};

}  // namespace

int AespaHeadsOf(const ModelConfig& config, const MethodOptions& options, std::string_view linear) {
  if (options.aespa_adaround_iters <= 0) return 0;
  if (linear == "self_attn.q_proj") return static_cast<int>(config.num_heads);
  if (linear == "self_attn.k_proj" || linear == "self_attn.v_proj") return static_cast<int>(config.num_kv_heads);
  return 0;
}

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeAespaMethod(const MethodOptions& options) {
  QSHARD_RETURN_IF_ERROR(ValidateQuantSpec(options.spec));
  if (options.zfold_max_iters < 0)
    return absl::InvalidArgumentError(absl::StrCat("zfold_max_iters: ", options.zfold_max_iters, " is negative"));
  AdaRoundOptions rounding;
  rounding.iters = options.aespa_adaround_iters;
  rounding.learning_rate = options.aespa_learning_rate;
  QSHARD_RETURN_IF_ERROR(MakeAespaSolver(options.spec, rounding, {}).status());  // validates the options
  return std::unique_ptr<LayerMethod>(new AespaMethod(options));
}

}  // namespace qshard
