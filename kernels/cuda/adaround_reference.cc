#include "kernels/cuda/adaround_reference.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <random>

namespace qshard::gpu {
namespace {

constexpr float kGamma = -0.1f, kZeta = 1.1f;
constexpr float kAdamBeta1 = 0.9f, kAdamBeta2 = 0.999f, kAdamEpsilon = 1e-8f;

// Rounded to bfloat16 as the device and the CPU round (finite inputs): to nearest even, a float32
// subnormal to a zero of its sign.
float Bf16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if ((bits & 0x7fffffffu) < 0x00800000u) return std::bit_cast<float>(bits & 0x80000000u);
  return std::bit_cast<float>((bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u);
}

// Symmetric positive definite [n, n]: AᵀA/m over m = 2n random rows (with column scales 0.2–3, so
// the diagonal spreads) plus `damp`·I.
std::vector<double> RandomGram(int64_t n, double damp, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> scale(0.2, 3.0);
  std::vector<double> column(n);
  for (double& c : column) c = scale(rng);
  const int64_t m = 2 * n;
  std::vector<double> a(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) a[i * n + j] = normal(rng) * column[j];
  std::vector<double> g(n * n, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < n; ++k) g[j * n + k] += a[i * n + j] * a[i * n + k] / m;
  for (int64_t j = 0; j < n; ++j) g[j * n + j] += damp;
  return g;
}

// out[r, :] = Σ_k a[r, k]·b[k, :] in float64 for r in [0, rows), a [rows, k], b [k, cols].
void Multiply(const float* a, const float* b, int64_t rows, int64_t k, int64_t cols, float* out) {
  std::vector<double> row(cols);
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(row.begin(), row.end(), 0.0);
    for (int64_t j = 0; j < k; ++j) {
      const double x = a[r * k + j];
      if (x == 0.0) continue;
      for (int64_t c = 0; c < cols; ++c) row[c] += x * b[j * cols + c];
    }
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = static_cast<float>(row[c]);
  }
}

// Half the gradient's product (or the loss's): E·H per block, then G·(E·H) per head.
std::vector<float> Product(const AdaRoundCaseData& d, const std::vector<float>& e,
                           const std::vector<std::vector<float>>& hessians) {
  const int64_t rows = d.shape.rows, cols = d.shape.cols, block_rows = rows / d.shape.blocks;
  std::vector<float> product(rows * cols);
  for (int b = 0; b < d.shape.blocks; ++b)
    Multiply(e.data() + b * block_rows * cols, hessians[b].data(), block_rows, cols, cols,
             product.data() + b * block_rows * cols);
  if (d.shape.heads == 0) return product;
  const int64_t head_rows = rows / d.shape.heads;
  std::vector<float> weighted(rows * cols);
  for (int h = 0; h < d.shape.heads; ++h)
    Multiply(d.weightings32[h].data(), product.data() + h * head_rows * cols, head_rows, head_rows, cols,
             weighted.data() + h * head_rows * cols);
  return weighted;
}

std::vector<double> UnitLosses(const AdaRoundCaseData& d, const std::vector<int32_t>& codes) {
  const int64_t n = d.shape.rows * d.shape.cols;
  std::vector<float> e(n);
  for (int64_t i = 0; i < n; ++i)
    e[i] = d.step[i] * static_cast<float>(codes[i] - static_cast<int32_t>(d.zero[i])) - d.weight[i];
  const std::vector<float> product = Product(d, e, d.hessians32);
  const int64_t unit_rows = d.shape.rows / (d.shape.heads > 0 ? d.shape.heads : d.shape.blocks);
  std::vector<double> losses(d.shape.rows / unit_rows, 0.0);
  for (int64_t i = 0; i < n; ++i)
    losses[i / d.shape.cols / unit_rows] += static_cast<double>(product[i]) * static_cast<double>(e[i]);
  return losses;
}

}  // namespace

std::vector<AdaRoundCase> AdaRoundCheckCases() {
  return {
      {"one Hessian, 3 bits", 45, 70, 3, 24, 1, 0, 300},
      {"per-head Hessians (v_proj), 4 bits", 48, 52, 4, 17, 3, 0, 300},
      {"output weightings (q/k_proj), 2 bits", 60, 66, 2, 66, 1, 5, 300},
      {"output weightings in per-head Hessians, 4 bits", 36, 41, 4, 41, 3, 3, 200},
  };
}

AdaRoundDeviceOptions AdaRoundCaseOptions(const AdaRoundCase& shape) {
  AdaRoundDeviceOptions options;
  options.iters = shape.iters;
  options.lambda = shape.heads > 0 || shape.blocks > 1 ? 1.5 : 1.0;
  return options;
}

AdaRoundCaseData MakeAdaRoundCase(const AdaRoundCase& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  AdaRoundCaseData d;
  d.shape = shape;
  const int64_t rows = shape.rows, cols = shape.cols, n = rows * cols;
  const int32_t max_code = (1 << shape.bits) - 1;
  d.groups = (cols + shape.group_size - 1) / shape.group_size;
  d.weight.resize(n);
  for (int64_t i = 0; i < n; ++i) d.weight[i] = normal(rng) * (i % cols % 11 == 3 ? 4.0f : 1.0f);
  d.g_idx.resize(cols);
  for (int64_t c = 0; c < cols; ++c) d.g_idx[c] = static_cast<int32_t>(c / shape.group_size);
  d.scales.resize(d.groups * rows);
  d.zeros.resize(d.groups * rows);
  for (int64_t g = 0; g < d.groups; ++g)
    for (int64_t r = 0; r < rows; ++r) {
      float lo = 0.0f, hi = 0.0f;
      for (int64_t c = g * shape.group_size; c < std::min(cols, (g + 1) * shape.group_size); ++c) {
        lo = std::min(lo, d.weight[r * cols + c]);
        hi = std::max(hi, d.weight[r * cols + c]);
      }
      const float scale = std::max(hi - lo, 1e-3f) / static_cast<float>(max_code);
      d.scales[g * rows + r] = scale;
      d.zeros[g * rows + r] = std::clamp(static_cast<int32_t>(std::lround(-lo / scale)), 0, max_code);
    }
  for (std::vector<float>* a : {&d.unrounded, &d.step, &d.zero, &d.floor_level, &d.variables}) a->resize(n);
  d.initial_codes.resize(n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c, g = d.g_idx[c];
      const float s = d.scales[g * rows + r];
      const float z = static_cast<float>(d.zeros[g * rows + r]);
      d.step[i] = s;
      d.zero[i] = z;
      d.unrounded[i] = d.weight[i] + 0.3f * s * normal(rng);
      d.initial_codes[i] =
          std::clamp(static_cast<int32_t>(std::lround(d.unrounded[i] / s + z)), 0, max_code);
      const float scaled = d.unrounded[i] / s;
      d.floor_level[i] = std::floor(scaled) + z;
      const float rest = std::clamp(scaled - std::floor(scaled), 0.0f, 1.0f);
      d.variables[i] = -std::log((kZeta - kGamma) / (rest - kGamma) - 1.0f);
    }
  for (int b = 0; b < shape.blocks; ++b) d.hessians.push_back(RandomGram(cols, 0.01, rng));
  const int64_t head_rows = shape.heads > 0 ? rows / shape.heads : 0;
  for (int h = 0; h < shape.heads; ++h) d.weightings.push_back(RandomGram(head_rows, 0.1, rng));
  for (const std::vector<double>& h : d.hessians) d.hessians32.emplace_back(h.begin(), h.end());
  for (const std::vector<double>& g : d.weightings) d.weightings32.emplace_back(g.begin(), g.end());
  return d;
}

AdaRoundDeviceProblem AdaRoundCaseData::Problem() const {
  AdaRoundDeviceProblem p;
  p.rows = shape.rows;
  p.cols = shape.cols;
  p.max_code = (1 << shape.bits) - 1;
  p.step = step.data();
  p.zero = zero.data();
  p.floor_level = floor_level.data();
  p.variables = variables.data();
  p.weight = weight.data();
  p.initial_codes = initial_codes.data();
  for (const std::vector<float>& h : hessians32) p.hessians.push_back(h.data());
  for (const std::vector<float>& g : weightings32) p.weightings.push_back(g.data());
  return p;
}

AdaRoundDeviceResult ReferenceAdaRound(const AdaRoundCaseData& d, const AdaRoundDeviceOptions& o) {
  AdaRoundDeviceResult result;
  result.initial_losses = UnitLosses(d, d.initial_codes);
  const int64_t n = d.shape.rows * d.shape.cols;
  const float max_code = static_cast<float>((1 << d.shape.bits) - 1);
  const float saturation = std::log((kZeta - kGamma) / -kGamma - 1.0f);
  std::vector<std::vector<float>> hessians16;
  for (const std::vector<float>& h : d.hessians32) {
    std::vector<float>& rounded = hessians16.emplace_back(h.size());
    std::transform(h.begin(), h.end(), rounded.begin(), Bf16);
  }
  std::vector<float> v = d.variables, m(n, 0.0f), second(n, 0.0f), e(n), h(n), dh_dv(n), step_in_range(n);
  const float lambda = static_cast<float>(o.lambda), learning_rate = static_cast<float>(o.learning_rate);
  for (int it = 0; it < o.iters; ++it) {
    for (int64_t i = 0; i < n; ++i) {
      const float s = 1.0f / (1.0f + std::exp(std::min(std::max(-v[i], -87.3f), 88.3f)));
      const bool saturated = std::fabs(v[i]) > saturation;
      h[i] = saturated ? (v[i] > 0.0f ? 1.0f : 0.0f)
                       : std::min(std::max(s * (kZeta - kGamma) + kGamma, 0.0f), 1.0f);
      dh_dv[i] = saturated ? 0.0f : (kZeta - kGamma) * s * (1.0f - s);
      const float level = d.floor_level[i] + h[i];
      step_in_range[i] = level >= 0.0f && level <= max_code ? d.step[i] : 0.0f;
      e[i] = Bf16(d.step[i] * std::min(std::max(level, 0.0f), max_code) - (d.step[i] * d.zero[i] + d.weight[i]));
    }
    const std::vector<float> half = Product(d, e, hessians16);
    const float beta = AdaRoundBeta(it, o), t = static_cast<float>(it + 1);
    const float coefficient = it >= o.warmup * o.iters ? lambda * 2.0f * beta : 0.0f;
    const float step_size = learning_rate / (1.0f - std::pow(kAdamBeta1, t));
    const float inverse_sqrt_correction2 = 1.0f / std::sqrt(1.0f - std::pow(kAdamBeta2, t));
    for (int64_t i = 0; i < n; ++i) {
      float grad = 2.0f * half[i] * step_in_range[i];
      if (coefficient != 0.0f) {
        const float x = 2.0f * h[i] - 1.0f;
        const float power = std::exp(std::max((beta - 1.0f) * std::log(std::max(std::fabs(x), 7.8886091e-31f)), -87.3f));
        grad -= coefficient * std::copysign(power, x);
      }
      grad *= dh_dv[i];
      m[i] = kAdamBeta1 * m[i] + (1.0f - kAdamBeta1) * grad;
      second[i] = kAdamBeta2 * second[i] + (1.0f - kAdamBeta2) * grad * grad;
      v[i] -= step_size * m[i] / (std::sqrt(second[i]) * inverse_sqrt_correction2 + kAdamEpsilon);
    }
  }
  result.learned.resize(n);
  for (int64_t i = 0; i < n; ++i)
    result.learned[i] =
        static_cast<int32_t>(std::min(std::max(d.floor_level[i] + (v[i] >= 0.0f ? 1.0f : 0.0f), 0.0f), max_code));
  result.learned_losses = o.iters > 0 ? UnitLosses(d, result.learned) : result.initial_losses;
  if (o.iters <= 0) result.learned = d.initial_codes;
  return result;
}

std::string AdaRoundDeviation::ToString() const {
  char line[160];
  std::snprintf(line, sizeof(line), "codes agree %.4f, initial losses %.2e, learned loss %.2e of the initial",
                code_agreement, initial_loss_error, learned_loss_error);
  return line;
}

AdaRoundDeviation CompareAdaRound(const AdaRoundDeviceResult& got, const AdaRoundDeviceResult& want) {
  AdaRoundDeviation dev;
  if (got.learned.size() != want.learned.size() || got.initial_losses.size() != want.initial_losses.size() ||
      got.learned_losses.size() != want.learned_losses.size() || want.learned.empty())
    return dev;  // not passed
  int64_t same = 0;
  for (size_t i = 0; i < got.learned.size(); ++i) same += got.learned[i] == want.learned[i];
  dev.code_agreement = static_cast<double>(same) / static_cast<double>(want.learned.size());
  double initial = 0.0, got_learned = 0.0, want_learned = 0.0;
  for (size_t u = 0; u < want.initial_losses.size(); ++u) {
    dev.initial_loss_error = std::max(dev.initial_loss_error, std::fabs(got.initial_losses[u] - want.initial_losses[u]) /
                                                                  std::fabs(want.initial_losses[u]));
    initial += want.initial_losses[u];
    got_learned += got.learned_losses[u];
    want_learned += want.learned_losses[u];
  }
  dev.learned_loss_error = std::fabs(got_learned - want_learned) / initial;
  dev.passed = dev.code_agreement >= 0.99 && dev.initial_loss_error <= 1e-5 && dev.learned_loss_error <= 0.005;
  return dev;
}

}  // namespace qshard::gpu
