// The layer-level plug-in point for quantization methods. The job walks a decoder layer's
// linears in true-sequential groups (DecoderModel::LinearGroups: q,k,v → o → gate,up → down for
// LLaMA; q,k,v → out → fc1 → fc2 for OPT) and hands each group to the method as a GroupProblem:
// the layer as quantized so far and the group's calibration statistics. The method returns a
// GroupSolution — the group's quantized linears, the exact rewrites of other tensors of the
// layer (Z-Fold folds its column scales into a norm or into the producing linear, possibly one
// an earlier group quantized) and its reports — as one value, which ApplyGroupSolution
// installs. The same value is what a remote worker's Solve returns. Which methods exist and
// which statistics each needs is the registry's business (method_registry.h). Z-Fold and aespa
// can also solve a group in two steps (SharedGroupPart), so that different workers solve its
// linears.
#pragma once

#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "worker/calibration/hessian.h"
#include "worker/model/layer_weights.h"
#include "worker/solvers/solver.h"

namespace qshard {

struct AttentionStats;  // aespa's refined statistics (worker/calibration/attention_stats.h)
class RoundingLearner;  // where aespa's AdaRound runs (worker/methods/rounding_learner.h)

// What the report says about one quantized linear.
struct LinearReport {
  std::string name;             // relative to the layer, e.g. "self_attn.q_proj"
  // ‖WX − ŴX‖² / ‖WX‖² on the calibration inputs; NaN when the method ran without them (RTN).
  double relative_error = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0.0;         // solve time
  double damp_used = 0.0;
  int damp_retries = 0;
};

// The quantized linears of one layer, as they will be exported.
struct QuantizedLayer {
  std::map<std::string, QuantizedWeight> linears;  // codes and grids, no column scale left
  std::vector<LinearReport> reports;
};

struct MethodOptions {
  std::string method = "gptq";  // a name in the registry (method_registry.h)
  QuantSpec spec;
  int zfold_max_iters = 30;        // Z-Fold alternating least squares, early stop on increase
  int aespa_adaround_iters = 2000;  // 0: aespa without AdaRound
  double aespa_learning_rate = 0.015;
  std::string flatten_threshold = "auto";  // FlattenQuant: off | auto | a positive number
  // FlattenQuant --bits 4: a linear runs W4A4 when its estimated relative output error at 4 bits
  // is at most this, else W8A8 (docs/flattenquant.md; the default is measured there).
  double flatten_int4_max_error = 0.05;
};

// A tensor of the layer outside the group's own linears, replaced whole. Rewrites are exact by
// construction (conventions.md, Z-Fold): the layer computes the same function after them.
struct TensorRewrite {
  enum class Target {
    kNorm,             // weights.norms[name]
    kLinearWeight,     // weights.linears[name].weight (a linear kept in full precision)
    kLinearBias,       // weights.linears[name].bias
    kQuantizedScales,  // quantized.linears[name].scales (a linear an earlier group quantized)
  };
  Target target = Target::kNorm;
  std::string name;
  Tensor value;
};

struct GroupSolution {
  std::map<std::string, QuantizedWeight> linears;  // the group's linears, GPTQ form
  std::vector<TensorRewrite> rewrites;              // applied before the linears are installed
  std::vector<LinearReport> reports;
};

// What the linears of a group share in a two-step solve (the registry's
// `independent_after_shared`): Z-Fold's and aespa's ζ, searched over the group's stacked
// linears and folded into their input's producer, and the grids searched with it. Given this
// part, each linear is solved on its own.
struct SharedGroupPart {
  std::vector<TensorRewrite> rewrites;      // ζ folded into the producer: the group solution's rewrites
  std::vector<float> column_scale;          // the ζ the producer applies, per input column; empty: 1
  std::map<std::string, FixedGrids> grids;  // each linear's grids (its rows of the searched ones)
};

// Heads [first, first + count) of one linear whose rows split by attention head (aespa's q/k/v:
// a query head's or a KV head's rows): what one worker solves in the per-head step of a
// three-step solve (shared part, heads, join).
struct HeadRange {
  std::string linear;
  int first = 0;
  int count = 0;
};

// A HeadRange solved: the rows of its heads under both roundings, with what the join needs to
// choose between them for the whole linear (head_parts.h).
struct HeadsPart {
  std::string linear;
  int first = 0;                       // first head
  QuantizedWeight weight;              // the heads' rows: the start's (GPTQ) codes on their grids, GPTQ form
  std::vector<int32_t> learned_codes;  // [rows, cols]: the learned rounding of the same rows
  std::vector<double> losses, learned_losses;  // per head: each rounding's reconstruction loss
  // Over the rows, S the input's Σ x xᵀ: tr(ΔW S ΔWᵀ) of each rounding and tr(W S Wᵀ).
  double error = 0.0, learned_error = 0.0, reference = 0.0;
  LinearReport report;  // the part's seconds and damping; relative_error unset
};

struct GroupProblem {
  int layer = 0;
  const ModelConfig* config = nullptr;
  std::vector<std::string> linears;  // the group's linears to quantize, e.g. {"self_attn.q_proj", ...}
  // Some linears of the group stay in full precision: they read the same input, so the method
  // must not change that input (Z-Fold may not fold into a norm they share).
  bool partial = false;
  const HessianSum* input_stats = nullptr;       // Σ x xᵀ of the group's shared input (null for rtn)
  const AttentionStats* attention = nullptr;     // only for methods that need attention statistics
  const DecoderLayerWeights* weights = nullptr;  // the layer with the earlier groups' solutions applied
  const QuantizedLayer* quantized = nullptr;     // the earlier groups' results
  ThreadPool* pool = nullptr;                    // optional: the worker's threads, for the solvers
  const RoundingLearner* rounding = nullptr;     // optional: aespa's AdaRound on a device; null: the CPU
  // Optional: the GPTQ solver of the methods that solve with GPTQ inside (Z-Fold on its searched
  // grids, aespa's starting points) — a device's; null: each method's own on the CPU.
  const Solver* gptq = nullptr;
};

// Installs a solution: the rewrites, then each linear's dequantized GPTQ form into `weights`
// (QuantizedWeight::LayerWeight: FlattenQuant's split columns folded back to the layer's
// width) and its codes into `quantized`, and appends the reports. Fails, changing nothing, when a
// rewrite names a tensor the layer lacks or gives it another shape.
absl::Status ApplyGroupSolution(GroupSolution solution, DecoderLayerWeights& weights, QuantizedLayer& quantized);

class LayerMethod {
 public:
  virtual ~LayerMethod() = default;
  virtual absl::StatusOr<GroupSolution> SolveGroup(const GroupProblem& problem) const = 0;

  // A method registered with `independent_after_shared` also solves a group in two steps whose
  // results, joined (the shared rewrites, then the linears and their reports), are SolveGroup's
  // bit for bit: the shared part once, then any of problem.linears given it (no rewrites).
  virtual absl::StatusOr<SharedGroupPart> SolveShared(const GroupProblem&) const {
    return absl::UnimplementedError("this method does not solve a group in two steps");
  }
  virtual absl::StatusOr<GroupSolution> SolveLinears(const GroupProblem&, const SharedGroupPart&,
                                                     std::span<const std::string> /*linears*/) const {
    return absl::UnimplementedError("this method does not solve a group in two steps");
  }
  // A method registered with `heads_of` also solves its head-split linears by ranges of heads,
  // given the shared part; JoinHeads (head_parts.h) makes of all of a linear's ranges the
  // linear SolveLinears returns, with the same bits.
  virtual absl::StatusOr<std::vector<HeadsPart>> SolveHeads(const GroupProblem&, const SharedGroupPart&,
                                                            std::span<const HeadRange> /*ranges*/) const {
    return absl::UnimplementedError("this method does not split linears by head");
  }
};

// ‖WX − ŴX‖² / ‖WX‖² from the input statistics: tr(ΔW S ΔWᵀ) / tr(W S Wᵀ) with S = Σ x xᵀ.
// `proxy_error`, when not NaN, is the numerator a solver already measured against these
// statistics, tr(ΔW H ΔWᵀ) with H = 2·S/tokens (Solver's proxy_error), and saves its Gram.
double RelativeOutputError(const Tensor& weight, const Tensor& dequantized, const HessianSum& stats,
                           double proxy_error = std::numeric_limits<double>::quiet_NaN());

}  // namespace qshard
