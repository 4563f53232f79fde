#include "worker/solvers/finequant.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/solvers/rtn.h"

namespace qshard {
namespace {

double RelativeWeightError(const Tensor& weight, const Tensor& dequantized) {
  double error = 0.0, energy = 0.0;
  for (int64_t i = 0; i < weight.size(); ++i) {
    const double w = weight[i], d = w - dequantized[i];
    error += d * d;
    energy += w * w;
  }
  return energy > 0.0 ? error / energy : 0.0;
}

// An exact reconstruction (an all-zero matrix, or values already on the grid) has no error to
// take the log of: it costs as if the error were this small, so only bits decide.
constexpr double kErrorFloor = 1e-30;

}  // namespace

double StoredBitsPerWeight(int bits, int64_t in, int group_size) {
  return bits + static_cast<double>(GroupCount(in, group_size)) * (16 + bits) / static_cast<double>(in);
}

std::vector<int> FineQuantCandidates(int64_t in, int group_size) {
  std::vector<int> candidates = {group_size};
  const int64_t widest = group_size < 0 ? in : std::min<int64_t>(group_size, in);
  int64_t next = 1;
  while (next * 2 <= std::min<int64_t>(widest / 2, kFineQuantMaxRefinedGroupSize)) next *= 2;
  for (; next >= kFineQuantMinGroupSize && next < widest; next /= 2) candidates.push_back(static_cast<int>(next));
  return candidates;
}

absl::StatusOr<FineQuantChoice> ChooseFineQuantGroupSize(const LayerProblem& problem, const QuantSpec& spec) {
  if (problem.fixed_grids != nullptr)
    return absl::InvalidArgumentError(absl::StrCat(std::string(problem.name), ": FineQuant fits its own grids (fixed grids given)"));
  QSHARD_RETURN_IF_ERROR(ValidateLayerProblem(problem, spec, /*needs_hessian=*/false));
  const Tensor& weight = *problem.weight;
  FineQuantChoice choice;
  double best_cost = 0.0;
  for (const int group_size : FineQuantCandidates(weight.dim(1), spec.group_size)) {
    QuantSpec candidate_spec = spec;
    candidate_spec.group_size = group_size;
    QSHARD_ASSIGN_OR_RETURN(QuantizedLinear quantized, MakeRtnSolver(candidate_spec)->Solve(problem));
    GroupSizeCandidate candidate;
    candidate.group_size = group_size;
    candidate.relative_error = RelativeWeightError(weight, quantized.dequantized);
    candidate.bits_per_weight = StoredBitsPerWeight(spec.bits, weight.dim(1), group_size);
    // High-resolution rate-distortion: one more bit per weight divides the squared error by 4,
    // so refining pays when it divides the error by more than 4^(extra bits it stores).
    candidate.cost = 0.5 * std::log2(std::max(candidate.relative_error, kErrorFloor)) + candidate.bits_per_weight;
    choice.candidates.push_back(candidate);
    if (choice.candidates.size() == 1 || candidate.cost < best_cost) {
      best_cost = candidate.cost;
      choice.group_size = group_size;
    }
  }
  return choice;
}

int FinerGroupSize(int a, int b, int64_t in) {
  const auto width = [in](int g) { return g < 0 ? in : std::min<int64_t>(g, in); };
  return width(b) < width(a) ? b : a;
}

}  // namespace qshard
