#include "worker/methods/flattenquant_method.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/cpu/int8_activations.h"
#include "worker/methods/flatten_channels.h"
#include "worker/solvers/proxy_error.h"

namespace qshard {
namespace {

// Inputs per packed word at 4 bits: a flattened width that is a multiple of it packs at 4 and 8.
constexpr int64_t kWidthUnit = 8;

struct Solved {
  QuantizedLinear linear;
  double weight_error = 0.0;  // ‖(W − Ŵ) X‖² / ‖W X‖² on the flattened input
  double act_error = 0.0;     // ActivationNoiseError at the per-tensor step
  double act_step = 0.0;
};

class FlattenQuantMethod : public LayerMethod {
 public:
  FlattenQuantMethod(FlattenThreshold threshold, int bits, double int4_max_error, std::unique_ptr<Solver> int4,
                     std::unique_ptr<Solver> int8)
      : threshold_(threshold), bits_(bits), int4_max_error_(int4_max_error), int4_(std::move(int4)),
        int8_(std::move(int8)) {}

  absl::StatusOr<GroupSolution> SolveGroup(const GroupProblem& group) const override {
    if (group.input_stats == nullptr)
      return absl::FailedPreconditionError(absl::StrCat("layer ", group.layer, ": flattenquant needs calibration"));
    const HessianSum& stats = *group.input_stats;
    if (static_cast<int64_t>(stats.abs_max.size()) != stats.dim)
      return absl::FailedPreconditionError(
          absl::StrCat("layer ", group.layer, ": the input statistics carry no channel max |x|"));
    const double t = ResolveFlattenThreshold(threshold_, stats.abs_max);
    std::vector<int32_t> channels = SplitChannels(stats.abs_max, t);
    if (static_cast<int64_t>(channels.size()) > stats.dim) RoundSplitUp(stats.abs_max, kWidthUnit, channels);
    const HessianSum flat = FlattenStatistics(stats, channels);
    const float range = *std::max_element(flat.abs_max.begin(), flat.abs_max.end());
    const bool split = static_cast<int64_t>(channels.size()) > stats.dim;

    GroupSolution solution;
    for (const std::string& linear : group.linears) {
      const std::string full_name = absl::StrCat("layer ", group.layer, " ", linear);
      auto target = group.weights->linears.find(linear);
      if (target == group.weights->linears.end())
        return absl::FailedPreconditionError(absl::StrCat(full_name, ": the layer has no such linear"));
      const Tensor weight = FlattenWeight(target->second.weight, channels);
      const auto start = std::chrono::steady_clock::now();
      // --bits 4: INT4 where the estimate allows it, else INT8 (flattenquant_method.h).
      QSHARD_ASSIGN_OR_RETURN(Solved solved, Solve(full_name, weight, flat, channels, range, bits_ == 4 ? 4 : 8, group.pool));
      if (bits_ == 4 && solved.weight_error + solved.act_error > int4_max_error_) {
        QSHARD_ASSIGN_OR_RETURN(solved, Solve(full_name, weight, flat, channels, range, 8, group.pool));
      }
      LinearReport report;
      report.name = linear;
      report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      report.damp_used = solved.linear.damp_used;
      report.damp_retries = solved.linear.damp_retries;
      report.relative_error = solved.weight_error;
      solution.reports.push_back(report);
      QuantizedWeight& q = solution.linears[linear];
      q = std::move(solved.linear.weight);
      if (split) q.input_channel = channels;
      q.act_bits = q.bits;
      q.act_scale = static_cast<float>(solved.act_step);
    }
    return solution;
  }

 private:
  absl::StatusOr<Solved> Solve(const std::string& name, const Tensor& weight, const HessianSum& flat,
                               const std::vector<int32_t>& channels, float range, int bits, ThreadPool* pool) const {
    LayerProblem problem;
    problem.name = name;
    problem.pool = pool;
    problem.weight = &weight;
    problem.hessians = {&flat};
    Solved solved;
    QSHARD_ASSIGN_OR_RETURN(solved.linear, (bits == 4 ? *int4_ : *int8_).Solve(problem));
    solved.weight_error = RelativeOutputError(weight, solved.linear.dequantized, flat);
    // An input that is 0 on every calibration token gets step 1: any step quantizes it exactly.
    solved.act_step = range > 0.0f ? range / static_cast<double>(kernels::ActivationMaxCode(bits)) : 1.0;
    solved.act_error = ActivationNoiseError(weight, solved.linear.dequantized, flat, channels, solved.act_step);
    return solved;
  }

  FlattenThreshold threshold_;
  int bits_;
  double int4_max_error_;
  std::unique_ptr<Solver> int4_, int8_;
};

}  // namespace

double ActivationNoiseError(const Tensor& weight, const Tensor& dequantized, const HessianSum& stats,
                            const std::vector<int32_t>& input_channel, double act_step) {
  const HessianSum* hessians[] = {&stats};
  // ProxyError against a zero weight: tr(W H Wᵀ) with H = 2·S/tokens, so E‖W x‖² is half of it.
  const double signal = 0.5 * ProxyError(weight, Tensor(weight.shape()), hessians);
  if (!(signal > 0.0)) return 0.0;
  double norm = 0.0;
  for (int64_t o = 0; o < dequantized.rows(); ++o) {
    double column = 0.0;  // Σ of the current input's copies in row o
    for (int64_t j = 0; j < dequantized.cols(); ++j) {
      column += dequantized.at(o, j);
      const bool last = input_channel.empty() || j + 1 == dequantized.cols() || input_channel[j + 1] != input_channel[j];
      if (!last) continue;
      norm += column * column;
      column = 0.0;
    }
  }
  return act_step * act_step / 12.0 * norm / signal;
}

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeFlattenQuantMethod(const MethodOptions& options) {
  const absl::StatusOr<FlattenThreshold> threshold = ParseFlattenThreshold(options.flatten_threshold);
  if (!threshold.ok()) return absl::InvalidArgumentError(absl::StrCat("--flatten-threshold: ", threshold.status().message()));
  if (options.spec.bits != 4 && options.spec.bits != 8)
    return absl::InvalidArgumentError(absl::StrCat(
        "--bits: flattenquant takes 8 (W8A8) or 4 (W4A4 where the statistics allow it, W8A8 elsewhere), not ",
        options.spec.bits));
  if (options.spec.group_size != -1)
    return absl::InvalidArgumentError(absl::StrCat(
        "--group-size: flattenquant's weights have one grid per output channel (-1), not ", options.spec.group_size));
  if (!(options.flatten_int4_max_error > 0.0) || !std::isfinite(options.flatten_int4_max_error))
    return absl::InvalidArgumentError(
        absl::StrCat("--int4-max-error: ", options.flatten_int4_max_error, " is not a positive number"));
  QuantSpec int4 = options.spec, int8 = options.spec;
  int4.bits = 4;
  int8.bits = 8;
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> int4_solver, MakeSolver("gptq", int4));
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> int8_solver, MakeSolver("gptq", int8));
  return std::unique_ptr<LayerMethod>(
      new FlattenQuantMethod(*threshold, options.spec.bits, options.flatten_int4_max_error, std::move(int4_solver), std::move(int8_solver)));
}

}  // namespace qshard
