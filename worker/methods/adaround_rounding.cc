#include "worker/methods/adaround_rounding.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/blas.h"
#include "worker/quant/quant_grid.h"

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

// The reconstruction term and its gradient with respect to the quantized weights.
class Reconstruction {
 public:
  explicit Reconstruction(const RoundingProblem& p)
      : out_(p.weight->dim(0)), in_(p.weight->dim(1)), block_rows_(out_ / static_cast<int64_t>(p.hessians.size())),
        product_(out_ * in_) {
    for (const std::vector<double>* h : p.hessians) hessians_.emplace_back(h->begin(), h->end());
    for (const std::vector<double>* g : p.output_weightings) weightings_.emplace_back(g->begin(), g->end());
    if (!weightings_.empty()) {
      head_rows_ = out_ / static_cast<int64_t>(weightings_.size());
      weighted_.resize(head_rows_ * in_);
    }
  }

  // Σ_blocks tr(E H Eᵀ), or Σ_heads tr(G E_h H E_hᵀ); writes dL/dE (both H and G symmetric).
  double Evaluate(const float* e, float* grad) {
    for (size_t b = 0; b < hessians_.size(); ++b) {
      const int64_t offset = static_cast<int64_t>(b) * block_rows_ * in_;
      kernels::Gemm(block_rows_, in_, in_, e + offset, hessians_[b].data(), false, product_.data() + offset);
    }
    double loss = 0.0;
    if (weightings_.empty()) {
      loss = Accumulate(e, product_.data(), out_ * in_, grad);
    } else {
      for (size_t h = 0; h < weightings_.size(); ++h) {
        const int64_t offset = static_cast<int64_t>(h) * head_rows_ * in_;
        kernels::Gemm(head_rows_, in_, head_rows_, weightings_[h].data(), product_.data() + offset, false,
                      weighted_.data());
        loss += Accumulate(e + offset, weighted_.data(), head_rows_ * in_, grad == nullptr ? nullptr : grad + offset);
      }
    }
    return loss;
  }

 private:
  static double Accumulate(const float* e, const float* product, int64_t n, float* grad) {
    double loss = 0.0;
    for (int64_t i = 0; i < n; ++i) loss += static_cast<double>(product[i]) * e[i];
    if (grad != nullptr)
      for (int64_t i = 0; i < n; ++i) grad[i] = 2.0f * product[i];
    return loss;
  }

  int64_t out_, in_, block_rows_, head_rows_ = 0;
  std::vector<std::vector<float>> hessians_, weightings_;
  std::vector<float> product_, weighted_;
};

// The rectified sigmoid is inside [0, 1] exactly when |v| ≤ ln((ζ − γ)/−γ − 1) = ln 11;
// beyond, h is 0 or 1 and passes no gradient. Once the regularizer has pushed most weights
// there (~80% after a third of the iterations), they cost neither exp nor pow.
const float kSaturation = std::log((kZeta - kGamma) / -kGamma - 1.0f);

// sigmoid(v) where v is inside the live range (libm's expf, scalar), 0 elsewhere.
void LiveSigmoids(const float* v, int64_t n, float* sigmoid) {
  for (int64_t i = 0; i < n; ++i) sigmoid[i] = std::fabs(v[i]) > kSaturation ? 0.0f : 1.0f / (1.0f + std::exp(-v[i]));
}

// The soft weights' errors e = s·clamp(level) − (s·z + w), h, dh/dv, and the step where the
// level's clamp passes the gradient (bounds included, as torch's clamp), else 0.
void SoftErrors(const float* v, const float* sigmoid, const float* floor_level, const float* step, const float* offset,
                float max_code, int64_t n, float* h, float* dh_dv, float* step_in_range, float* e) {
  for (int64_t i = 0; i < n; ++i) {
    const bool saturated = std::fabs(v[i]) > kSaturation;
    const float s = sigmoid[i];
    const float soft = std::min(std::max(s * (kZeta - kGamma) + kGamma, 0.0f), 1.0f);
    h[i] = saturated ? (v[i] > 0.0f ? 1.0f : 0.0f) : soft;
    dh_dv[i] = saturated ? 0.0f : (kZeta - kGamma) * s * (1.0f - s);
    const float level = floor_level[i] + h[i];
    step_in_range[i] = level >= 0.0f && level <= max_code ? step[i] : 0.0f;
    e[i] = step[i] * std::min(std::max(level, 0.0f), max_code) - offset[i];
  }
}

// sign(t)·|t|^(β−1) for t = 2h − 1 where h passes a gradient (libm's powf, scalar), 0
// elsewhere: d/dh (1 − |t|^β) = −2β·that. Returns the regularizer Σ(1 − |t|^β) (saturated
// weights have |t| = 1 and add nothing).
double RegularizerPowers(const float* h, const float* dh_dv, float beta, int64_t n, float* power) {
  double regularizer = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    power[i] = 0.0f;
    if (dh_dv[i] == 0.0f) continue;
    const float t = 2.0f * h[i] - 1.0f;
    const float p = std::pow(std::fabs(t), beta - 1.0f);
    power[i] = std::copysign(p, t);
    regularizer += 1.0 - static_cast<double>(p) * std::fabs(t);
  }
  return regularizer;
}

// grad = dh/dv · (dL/de · de/dh − coefficient·power), zero where h passes no gradient. With
// coefficient and power 0 (no regularizer) the subtraction leaves dh's bits as they are.
void ChainToVariables(const float* dloss_de, const float* step_in_range, const float* dh_dv, const float* power,
                      float coefficient, int64_t n, float* grad) {
  for (int64_t i = 0; i < n; ++i) {
    const float dh = dloss_de[i] * step_in_range[i];
    grad[i] = dh_dv[i] != 0.0f ? (dh - coefficient * power[i]) * dh_dv[i] : 0.0f;
  }
}

// Adam (Kingma & Ba) step t ≥ 1: one sqrt and one division per weight, vectorized.
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

  explicit State(const RoundingProblem& p) : problem(p), grids(*p.initial), reconstruction(p) {
    const int64_t n = static_cast<int64_t>(grids.step.size());
    for (std::vector<float>* buffer : {&floor_level, &offset, &sigmoid, &h, &dh_dv, &step_in_range, &e, &dloss_de, &power})
      buffer->resize(n);
    for (int64_t i = 0; i < n; ++i) {
      floor_level[i] = std::floor((*p.unrounded)[i] / grids.step[i]) + grids.zero[i];
      offset[i] = grids.step[i] * grids.zero[i] + (*p.weight)[i];
    }
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
  State& s = *state_;
  const int64_t n = static_cast<int64_t>(v.size());
  LiveSigmoids(v.data(), n, s.sigmoid.data());
  SoftErrors(v.data(), s.sigmoid.data(), s.floor_level.data(), s.grids.step.data(), s.offset.data(),
             static_cast<float>(s.grids.max_code), n, s.h.data(), s.dh_dv.data(), s.step_in_range.data(), s.e.data());
  double objective = s.reconstruction.Evaluate(s.e.data(), s.dloss_de.data());
  if (lambda != 0.0f)
    objective += lambda * RegularizerPowers(s.h.data(), s.dh_dv.data(), beta, n, s.power.data());
  else
    std::fill(s.power.begin(), s.power.end(), 0.0f);
  ChainToVariables(s.dloss_de.data(), s.step_in_range.data(), s.dh_dv.data(), s.power.data(), lambda * 2.0f * beta, n,
                   grad.data());
  return objective;
}

std::vector<int32_t> SoftRoundingObjective::Codes(std::span<const float> v) const {
  const State& s = *state_;
  const float max_code = static_cast<float>(s.grids.max_code);
  std::vector<int32_t> codes(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    codes[i] = static_cast<int32_t>(std::clamp(s.floor_level[i] + (v[i] >= 0.0f ? 1.0f : 0.0f), 0.0f, max_code));
  return codes;
}

double SoftRoundingObjective::LossOfCodes(std::span<const int32_t> codes) {
  State& s = *state_;
  for (size_t i = 0; i < codes.size(); ++i)
    s.e[i] = DequantizeCode(codes[i], s.grids.step[i], static_cast<int32_t>(s.grids.zero[i])) - (*s.problem.weight)[i];
  return s.reconstruction.Evaluate(s.e.data(), nullptr);
}

double ReconstructionLoss(const RoundingProblem& problem, std::span<const int32_t> codes) {
  return SoftRoundingObjective(problem).LossOfCodes(codes);
}

RoundingResult LearnRounding(const RoundingProblem& problem, const AdaRoundOptions& options) {
  SoftRoundingObjective objective(problem);
  RoundingResult result;
  result.codes = problem.initial->codes;
  result.initial_loss = result.loss = objective.LossOfCodes(result.codes);
  if (options.iters <= 0) return result;

  std::vector<float> v = objective.InitialVariables();
  const int64_t n = static_cast<int64_t>(v.size());
  std::vector<float> grad(n), adam_m(n, 0.0f), adam_v(n, 0.0f);
  const float lambda = static_cast<float>(options.lambda);
  const float learning_rate = static_cast<float>(options.learning_rate);
  for (int it = 0; it < options.iters; ++it) {
    const bool regularize = it >= options.warmup * options.iters;
    objective.Evaluate(v, regularize ? lambda : 0.0f, Beta(it, options), grad);
    AdamUpdate(grad.data(), n, learning_rate, it + 1, v.data(), adam_m.data(), adam_v.data());
  }

  std::vector<int32_t> learned = objective.Codes(v);
  const double loss = objective.LossOfCodes(learned);
  if (loss < result.loss) {
    result.codes = std::move(learned);
    result.loss = loss;
    result.learned = true;
  }
  return result;
}

}  // namespace qshard
