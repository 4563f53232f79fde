#include "worker/methods/adaround_rounding.h"

#include <algorithm>
#include <cmath>

#include "core/vector_clones.h"
#include "kernels/cpu/blas.h"
#include "worker/quant/quant_grid.h"

// The element-wise loops below run once per weight and iteration and are most of AdaRound's
// time. Those without libm calls are compiled for AVX-512, AVX2 and the baseline and picked at
// run time. The file is built with -fno-math-errno (so sqrtf vectorizes), -fno-trapping-math
// (so selects do; without it only AVX-512's masked operations do) and -ffp-contract=off (so
// no variant fuses a multiply-add the others round twice: every variant, and every machine,
// gives the same bits). QSHARD_VECTOR_CLONES is core/vector_clones.h.

namespace qshard {
namespace {

constexpr float kGamma = -0.1f;  // rectified sigmoid stretch (Louizos et al.)
constexpr float kZeta = 1.1f;
constexpr float kAdamBeta1 = 0.9f, kAdamBeta2 = 0.999f, kAdamEpsilon = 1e-8f;  // PyTorch's defaults

// Every weight's step s = scale·ζ_column and zero point, flattened [out, in].
struct ElementGrids {
  std::vector<float> step, zero;
  int32_t max_code = 0;

  explicit ElementGrids(const QuantizedWeight& q) : step(q.rows * q.cols), zero(q.rows * q.cols), max_code(MaxCode(q.bits)) {
    for (int64_t r = 0; r < q.rows; ++r)
      for (int64_t c = 0; c < q.cols; ++c) {
        const int64_t g = q.g_idx[c];
        step[r * q.cols + c] = q.scales.at(g, r) * (q.column_scale.empty() ? 1.0f : q.column_scale[c]);
        zero[r * q.cols + c] = static_cast<float>(q.zeros[g * q.rows + r]);
      }
  }
};

// The reconstruction term and its gradient with respect to the quantized weights, unit by
// unit: a unit is a head's rows (with output weightings) or a Hessian block, and each runs its
// own GEMMs over its rows and sums its own loss. Rows of whole units solved apart therefore get
// the bits the whole linear gets (head_parts.h); the units' losses add in unit order.
class Reconstruction {
 public:
  explicit Reconstruction(const RoundingProblem& p)
      : out_(p.weight->dim(0)), in_(p.weight->dim(1)), block_rows_(out_ / static_cast<int64_t>(p.hessians.size())),
        unit_rows_(p.output_weightings.empty() ? block_rows_
                                               : out_ / static_cast<int64_t>(p.output_weightings.size())),
        product_(out_ * in_), unit_losses_(out_ / unit_rows_) {
    for (const std::vector<double>* h : p.hessians) hessians_.emplace_back(h->begin(), h->end());
    for (const std::vector<double>* g : p.output_weightings) weightings_.emplace_back(g->begin(), g->end());
    if (!weightings_.empty()) weighted_.resize(unit_rows_ * in_);
  }

  // Σ_blocks tr(E H Eᵀ), or Σ_heads tr(G E_h H E_hᵀ), if `want_loss` (else 0: the descent
  // needs only the gradient, and the float64 sum is a serial chain); writes dL/dE to `grad`
  // unless null (both H and G symmetric). unit_losses() then holds the units' terms.
  double Evaluate(const float* e, float* grad, bool want_loss = true) {
    double loss = 0.0;
    for (size_t u = 0; u < unit_losses_.size(); ++u) {
      const int64_t row = static_cast<int64_t>(u) * unit_rows_, offset = row * in_;
      kernels::Gemm(unit_rows_, in_, in_, e + offset, hessians_[row / block_rows_].data(), false,
                    product_.data() + offset);
      const float* product = product_.data() + offset;
      if (!weightings_.empty()) {
        kernels::Gemm(unit_rows_, in_, unit_rows_, weightings_[u].data(), product, false, weighted_.data());
        product = weighted_.data();
      }
      unit_losses_[u] =
          Accumulate(e + offset, product, unit_rows_ * in_, grad == nullptr ? nullptr : grad + offset, want_loss);
      loss += unit_losses_[u];
    }
    return loss;
  }

  const std::vector<double>& unit_losses() const { return unit_losses_; }

 private:
  static double Accumulate(const float* e, const float* product, int64_t n, float* grad, bool want_loss) {
    double loss = 0.0;
    if (want_loss)
      for (int64_t i = 0; i < n; ++i) loss += static_cast<double>(product[i]) * e[i];
    if (grad != nullptr)
      for (int64_t i = 0; i < n; ++i) grad[i] = 2.0f * product[i];
    return loss;
  }

  int64_t out_, in_, block_rows_, unit_rows_;
  std::vector<std::vector<float>> hessians_, weightings_;
  std::vector<float> product_, weighted_;
  std::vector<double> unit_losses_;
};

// The rectified sigmoid is inside [0, 1] exactly when |v| ≤ ln((ζ − γ)/−γ − 1) = ln 11;
// beyond, h is 0 or 1 and passes no gradient. Once the regularizer has pushed most weights
// there (~80% after a third of the iterations), they cost neither exp nor pow.
const float kSaturation = std::log((kZeta - kGamma) / -kGamma - 1.0f);

// The weights whose v is inside the live range, listed without a branch: which ones are is
// random, and a branch on it mispredicts about as often as it runs. Returns their number.
int64_t LiveIndices(const float* v, int64_t n, int32_t* live) {
  const float saturation = kSaturation;
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    live[count] = static_cast<int32_t>(i);
    count += std::fabs(v[i]) > saturation ? 0 : 1;
  }
  return count;
}

// sigmoid(v) of the live weights (libm's expf, scalar); the others keep stale values that
// SoftErrors selects away.
void LiveSigmoids(const float* v, std::span<const int32_t> live, float* sigmoid) {
  for (const int32_t i : live) sigmoid[i] = 1.0f / (1.0f + std::exp(-v[i]));
}

// The soft weights' errors e = s·clamp(level) − (s·z + w), h, dh/dv, and the step where the
// level's clamp passes the gradient (bounds included, as torch's clamp), else 0.
QSHARD_VECTOR_CLONES
void SoftErrors(const float* __restrict v, const float* __restrict sigmoid, const float* __restrict floor_level,
                const float* __restrict step, const float* __restrict offset, float max_code, int64_t n,
                float* __restrict h, float* __restrict dh_dv, float* __restrict step_in_range, float* __restrict e) {
  const float saturation = kSaturation;  // a local, so stores through h… cannot change it
  for (int64_t i = 0; i < n; ++i) {
    // Every load unconditional: conditional ones need masked loads, which only the AVX-512
    // variant would emit.
    const float x = v[i], s = sigmoid[i], st = step[i];
    const bool saturated = std::fabs(x) > saturation;
    const float soft = std::min(std::max(s * (kZeta - kGamma) + kGamma, 0.0f), 1.0f);
    const float hi = saturated ? (x > 0.0f ? 1.0f : 0.0f) : soft;
    h[i] = hi;
    dh_dv[i] = saturated ? 0.0f : (kZeta - kGamma) * s * (1.0f - s);
    const float level = floor_level[i] + hi;
    step_in_range[i] = ((level >= 0.0f) & (level <= max_code)) ? st : 0.0f;
    e[i] = st * std::min(std::max(level, 0.0f), max_code) - offset[i];
  }
}

// sign(t)·|t|^(β−1) for t = 2h − 1 of the live weights (libm's powf, scalar): d/dh (1 − |t|^β)
// = −2β·that. The others pass no gradient and keep stale values that ChainToVariables selects
// away. Returns the regularizer Σ(1 − |t|^β) if `want_value` (saturated weights have |t| = 1
// and add nothing).
double RegularizerPowers(const float* h, std::span<const int32_t> live, float beta, bool want_value, float* power) {
  double regularizer = 0.0;
  for (const int32_t i : live) {
    const float t = 2.0f * h[i] - 1.0f;
    const float p = std::pow(std::fabs(t), beta - 1.0f);
    power[i] = std::copysign(p, t);
    if (want_value) regularizer += 1.0 - static_cast<double>(p) * std::fabs(t);
  }
  return regularizer;
}

// grad = dh/dv · (dL/de · de/dh − coefficient·power), zero where h passes no gradient. With
// coefficient and power 0 (no regularizer) the subtraction leaves dh's bits as they are.
// (dh/dv ≠ 0 exactly for the live weights: there sigmoid(v) ∈ [1/12, 11/12].)
QSHARD_VECTOR_CLONES
void ChainToVariables(const float* dloss_de, const float* step_in_range, const float* dh_dv, const float* power,
                      float coefficient, int64_t n, float* grad) {
  for (int64_t i = 0; i < n; ++i) {
    const float dh = dloss_de[i] * step_in_range[i], p = power[i], d = dh_dv[i];  // loads unconditional
    grad[i] = d != 0.0f ? (dh - coefficient * p) * d : 0.0f;
  }
}

// Adam (Kingma & Ba) step t ≥ 1: one sqrt and one division per weight, vectorized.
QSHARD_VECTOR_CLONES
void AdamUpdate(const float* grad, int64_t n, float learning_rate, int t, float* param, float* m, float* v) {
  const float step_size = learning_rate / (1.0f - std::pow(kAdamBeta1, static_cast<float>(t)));
  const float inverse_sqrt_correction2 = 1.0f / std::sqrt(1.0f - std::pow(kAdamBeta2, static_cast<float>(t)));
  for (int64_t i = 0; i < n; ++i) {
    m[i] = kAdamBeta1 * m[i] + (1.0f - kAdamBeta1) * grad[i];
    v[i] = kAdamBeta2 * v[i] + (1.0f - kAdamBeta2) * grad[i] * grad[i];
    param[i] -= step_size * m[i] / (std::sqrt(v[i]) * inverse_sqrt_correction2 + kAdamEpsilon);
  }
}

// β of the rounding regularizer at iteration `it`: constant through the warm-up, then linear.
float Beta(int it, const AdaRoundOptions& o) {
  const double start = o.warmup * o.iters;
  if (it < start) return static_cast<float>(o.beta_start);
  const double progress = (it - start) / (o.iters - start);
  return static_cast<float>(o.beta_end + (o.beta_start - o.beta_end) * std::max(0.0, 1.0 - progress));
}

}  // namespace

struct SoftRoundingObjective::State {
  const RoundingProblem& problem;
  const ElementGrids grids;
  Reconstruction reconstruction;
  // Per weight: ⌊u/s⌋ + z the level below u, and s·z + w so that the error is s·clamp(level) − (s·z + w).
  std::vector<float> floor_level, offset;
  std::vector<float> sigmoid, h, dh_dv, step_in_range, e, dloss_de, power;  // per-call scratch
  std::vector<int32_t> live;

  explicit State(const RoundingProblem& p) : problem(p), grids(*p.initial), reconstruction(p) {
    const int64_t n = static_cast<int64_t>(grids.step.size());
    for (std::vector<float>* buffer : {&floor_level, &offset, &sigmoid, &h, &dh_dv, &step_in_range, &e, &dloss_de, &power})
      buffer->resize(n);
    live.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      floor_level[i] = std::floor((*p.unrounded)[i] / grids.step[i]) + grids.zero[i];
      offset[i] = grids.step[i] * grids.zero[i] + (*p.weight)[i];
    }
  }

  double Evaluate(std::span<const float> v, float lambda, float beta, std::span<float> grad, bool want_value) {
    const int64_t n = static_cast<int64_t>(v.size());
    const std::span<const int32_t> live_weights(live.data(), LiveIndices(v.data(), n, live.data()));
    LiveSigmoids(v.data(), live_weights, sigmoid.data());
    SoftErrors(v.data(), sigmoid.data(), floor_level.data(), grids.step.data(), offset.data(),
               static_cast<float>(grids.max_code), n, h.data(), dh_dv.data(), step_in_range.data(), e.data());
    double objective = reconstruction.Evaluate(e.data(), dloss_de.data(), want_value);
    if (lambda != 0.0f)
      objective += lambda * RegularizerPowers(h.data(), live_weights, beta, want_value, power.data());
    else
      std::fill(power.begin(), power.end(), 0.0f);
    ChainToVariables(dloss_de.data(), step_in_range.data(), dh_dv.data(), power.data(), lambda * 2.0f * beta, n,
                     grad.data());
    return objective;
  }
};

SoftRoundingObjective::SoftRoundingObjective(const RoundingProblem& problem)
    : state_(std::make_unique<State>(problem)) {}

SoftRoundingObjective::~SoftRoundingObjective() = default;

std::vector<float> SoftRoundingObjective::InitialVariables() const {
  const State& s = *state_;
  std::vector<float> v(s.grids.step.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const float scaled = (*s.problem.unrounded)[i] / s.grids.step[i];
    const float rest = std::clamp(scaled - std::floor(scaled), 0.0f, 1.0f);
    v[i] = -std::log((kZeta - kGamma) / (rest - kGamma) - 1.0f);  // h(v) = rest
  }
  return v;
}

double SoftRoundingObjective::Evaluate(std::span<const float> v, float lambda, float beta, std::span<float> grad) {
  return state_->Evaluate(v, lambda, beta, grad, /*want_value=*/true);
}

void SoftRoundingObjective::Gradient(std::span<const float> v, float lambda, float beta, std::span<float> grad) {
  state_->Evaluate(v, lambda, beta, grad, /*want_value=*/false);
}

std::vector<int32_t> SoftRoundingObjective::Codes(std::span<const float> v) const {
  const State& s = *state_;
  const float max_code = static_cast<float>(s.grids.max_code);
  std::vector<int32_t> codes(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    codes[i] = static_cast<int32_t>(std::clamp(s.floor_level[i] + (v[i] >= 0.0f ? 1.0f : 0.0f), 0.0f, max_code));
  return codes;
}

std::vector<double> SoftRoundingObjective::UnitLosses(std::span<const int32_t> codes) {
  State& s = *state_;
  for (size_t i = 0; i < codes.size(); ++i)
    s.e[i] = DequantizeCode(codes[i], s.grids.step[i], static_cast<int32_t>(s.grids.zero[i])) - (*s.problem.weight)[i];
  s.reconstruction.Evaluate(s.e.data(), nullptr);
  return s.reconstruction.unit_losses();
}

double TotalLoss(std::span<const double> unit_losses) {
  double loss = 0.0;
  for (const double l : unit_losses) loss += l;
  return loss;
}

double ReconstructionLoss(const RoundingProblem& problem, std::span<const int32_t> codes) {
  return TotalLoss(SoftRoundingObjective(problem).UnitLosses(codes));
}

bool KeepLearned(std::span<const double> initial_losses, std::span<const double> learned_losses) {
  return TotalLoss(learned_losses) < TotalLoss(initial_losses);
}

RoundingCandidates LearnRoundingCandidates(const RoundingProblem& problem, const AdaRoundOptions& options) {
  SoftRoundingObjective objective(problem);
  RoundingCandidates candidates;
  candidates.initial_losses = objective.UnitLosses(problem.initial->codes);
  if (options.iters <= 0) {
    candidates.learned = problem.initial->codes;
    candidates.learned_losses = candidates.initial_losses;
    return candidates;
  }
  std::vector<float> v = objective.InitialVariables();
  const int64_t n = static_cast<int64_t>(v.size());
  std::vector<float> grad(n), adam_m(n, 0.0f), adam_v(n, 0.0f);
  const float lambda = static_cast<float>(options.lambda);
  const float learning_rate = static_cast<float>(options.learning_rate);
  for (int it = 0; it < options.iters; ++it) {
    const bool regularize = it >= options.warmup * options.iters;
    objective.Gradient(v, regularize ? lambda : 0.0f, Beta(it, options), grad);
    AdamUpdate(grad.data(), n, learning_rate, it + 1, v.data(), adam_m.data(), adam_v.data());
  }
  candidates.learned = objective.Codes(v);
  candidates.learned_losses = objective.UnitLosses(candidates.learned);
  return candidates;
}

RoundingResult LearnRounding(const RoundingProblem& problem, const AdaRoundOptions& options) {
  RoundingCandidates candidates = LearnRoundingCandidates(problem, options);
  RoundingResult result;
  result.initial_loss = result.loss = TotalLoss(candidates.initial_losses);
  result.learned = KeepLearned(candidates.initial_losses, candidates.learned_losses);
  if (result.learned) {
    result.codes = std::move(candidates.learned);
    result.loss = TotalLoss(candidates.learned_losses);
  } else {
    result.codes = problem.initial->codes;
  }
  return result;
}

}  // namespace qshard
