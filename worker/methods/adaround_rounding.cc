#include "worker/methods/adaround_rounding.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/blas.h"
#include "worker/quant/quant_grid.h"

namespace qshard {
namespace {

constexpr float kGamma = -0.1f;  // rectified sigmoid stretch (Louizos et al.)
constexpr float kZeta = 1.1f;

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

double LossOfCodes(const RoundingProblem& p, const ElementGrids& grids, std::span<const int32_t> codes,
                   Reconstruction& reconstruction) {
  std::vector<float> e(codes.size());
  for (size_t i = 0; i < codes.size(); ++i)
    e[i] = DequantizeCode(codes[i], grids.step[i], static_cast<int32_t>(grids.zero[i])) - (*p.weight)[i];
  return reconstruction.Evaluate(e.data(), nullptr);
}

// β of the rounding regularizer at iteration `it`: constant through the warm-up, then linear.
float Beta(int it, const AdaRoundOptions& o) {
  const double start = o.warmup * o.iters;
  if (it < start) return static_cast<float>(o.beta_start);
  const double progress = (it - start) / (o.iters - start);
  return static_cast<float>(o.beta_end + (o.beta_start - o.beta_end) * std::max(0.0, 1.0 - progress));
}

// Adam (Kingma & Ba) with PyTorch's defaults besides the learning rate; the update of one
// parameter is inlined into the backward pass.
struct AdamStep {
  static constexpr float kBeta1 = 0.9f, kBeta2 = 0.999f, kEpsilon = 1e-8f;
  float step_size, inverse_sqrt_correction2;  // lr / (1 − β1ᵗ), 1 / √(1 − β2ᵗ)

  AdamStep(float learning_rate, int t)
      : step_size(learning_rate / (1.0f - std::pow(kBeta1, static_cast<float>(t)))),
        inverse_sqrt_correction2(1.0f / std::sqrt(1.0f - std::pow(kBeta2, static_cast<float>(t)))) {}

  // One sqrt and one division per weight: they dominate AdaRound's element-wise cost.
  void Apply(float grad, float& param, float& m, float& v) const {
    m = kBeta1 * m + (1.0f - kBeta1) * grad;
    v = kBeta2 * v + (1.0f - kBeta2) * grad * grad;
    param -= step_size * m / (std::sqrt(v) * inverse_sqrt_correction2 + kEpsilon);
  }
};

}  // namespace

double ReconstructionLoss(const RoundingProblem& problem, std::span<const int32_t> codes) {
  Reconstruction reconstruction(problem);
  return LossOfCodes(problem, ElementGrids(*problem.initial), codes, reconstruction);
}

RoundingResult LearnRounding(const RoundingProblem& problem, const AdaRoundOptions& options) {
  const ElementGrids grids(*problem.initial);
  Reconstruction reconstruction(problem);
  RoundingResult result;
  result.codes = problem.initial->codes;
  result.initial_loss = result.loss = LossOfCodes(problem, grids, result.codes, reconstruction);
  if (options.iters <= 0) return result;

  const int64_t n = static_cast<int64_t>(grids.step.size());
  const float max_code = static_cast<float>(grids.max_code);
  // Per weight: v the learned variable, ⌊u/s⌋ + z the level below u, and s·z + w so that the
  // error is s·clamp(level) − (s·z + w).
  std::vector<float> v(n), floor_level(n), offset(n);
  for (int64_t i = 0; i < n; ++i) {
    const float scaled = (*problem.unrounded)[i] / grids.step[i];
    const float below = std::floor(scaled);
    floor_level[i] = below + grids.zero[i];
    offset[i] = grids.step[i] * grids.zero[i] + (*problem.weight)[i];
    const float rest = std::clamp(scaled - below, 0.0f, 1.0f);
    v[i] = -std::log((kZeta - kGamma) / (rest - kGamma) - 1.0f);  // h(v) = rest
  }

  // The rectified sigmoid is inside [0, 1] exactly when |v| ≤ ln((ζ − γ)/−γ − 1) = ln 11;
  // beyond, h is 0 or 1 and passes no gradient. Once the regularizer has pushed most weights
  // there (~80% after a third of the iterations), they cost neither exp nor pow.
  const float saturation = std::log((kZeta - kGamma) / -kGamma - 1.0f);
  std::vector<float> h(n), dh_dv(n), step_in_range(n), e(n), grad(n), adam_m(n, 0.0f), adam_v(n, 0.0f);
  const float lambda = static_cast<float>(options.lambda);
  for (int it = 0; it < options.iters; ++it) {
    for (int64_t i = 0; i < n; ++i) {
      if (std::fabs(v[i]) > saturation) {
        h[i] = v[i] > 0.0f ? 1.0f : 0.0f;
        dh_dv[i] = 0.0f;
      } else {
        const float sigmoid = 1.0f / (1.0f + std::exp(-v[i]));
        h[i] = std::clamp(sigmoid * (kZeta - kGamma) + kGamma, 0.0f, 1.0f);
        dh_dv[i] = (kZeta - kGamma) * sigmoid * (1.0f - sigmoid);
      }
      // The level's clamp passes the gradient only inside its range (bounds included, as torch).
      const float level = floor_level[i] + h[i];
      const bool in_range = level >= 0.0f && level <= max_code;
      step_in_range[i] = in_range ? grids.step[i] : 0.0f;
      e[i] = grids.step[i] * std::clamp(level, 0.0f, max_code) - offset[i];
    }
    reconstruction.Evaluate(e.data(), grad.data());
    const bool regularize = it >= options.warmup * options.iters;
    const float beta = Beta(it, options);
    const AdamStep adam(static_cast<float>(options.learning_rate), it + 1);
    for (int64_t i = 0; i < n; ++i) {
      float g = 0.0f;
      if (dh_dv[i] != 0.0f) {
        float dh = grad[i] * step_in_range[i];
        if (regularize) {
          const float t = 2.0f * h[i] - 1.0f;  // d/dh (1 − |t|^β) = −2β|t|^(β−1)·sign(t)
          dh -= lambda * 2.0f * beta * std::copysign(std::pow(std::fabs(t), beta - 1.0f), t);
        }
        g = dh * dh_dv[i];
      }
      adam.Apply(g, v[i], adam_m[i], adam_v[i]);
    }
  }

  std::vector<int32_t> learned(n);
  for (int64_t i = 0; i < n; ++i)
    learned[i] = static_cast<int32_t>(std::clamp(floor_level[i] + (v[i] >= 0.0f ? 1.0f : 0.0f), 0.0f, max_code));
  const double loss = LossOfCodes(problem, grids, learned, reconstruction);
  if (loss < result.loss) {
    result.codes = std::move(learned);
    result.loss = loss;
    result.learned = true;
  }
  return result;
}

}  // namespace qshard
