// The float64 reference layer of layer_forward_reference.h: one function per operation, plain
// loops over row-major vectors, nothing shared with the device code or worker/model.
#include "kernels/cuda/layer_forward_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qshard::gpu {
namespace {

using Matrix = std::vector<double>;  // row-major, the column count passed alongside

std::vector<float> Uniform(int64_t count, double half_width, double center, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-half_width, half_width);
  std::vector<float> values(count);
  for (float& value : values) value = static_cast<float>(center + u(rng));
  return values;
}

HostLinear RandomLinear(int64_t out, int64_t in, bool bias, double gain, std::mt19937_64& rng) {
  HostLinear linear;
  linear.weight = Uniform(out * in, gain * std::sqrt(3.0 / in), 0.0, rng);
  if (bias) linear.bias = Uniform(out, 0.1, 0.0, rng);
  return linear;
}

Matrix Widen(const std::vector<float>& x) { return Matrix(x.begin(), x.end()); }

Matrix LayerNorm(const Matrix& x, int64_t cols, const std::vector<float>& weight, const std::vector<float>& bias,
                 double eps) {
  Matrix out(x.size());
  for (size_t r = 0; r < x.size() / cols; ++r) {
    const double* in = x.data() + r * cols;
    double mean = 0.0, variance = 0.0;
    for (int64_t i = 0; i < cols; ++i) mean += in[i];
    mean /= cols;
    for (int64_t i = 0; i < cols; ++i) variance += (in[i] - mean) * (in[i] - mean);
    variance /= cols;
    for (int64_t i = 0; i < cols; ++i)
      out[r * cols + i] = (in[i] - mean) / std::sqrt(variance + eps) * weight[i] + bias[i];
  }
  return out;
}

Matrix RmsNorm(const Matrix& x, int64_t cols, const std::vector<float>& weight, double eps) {
  Matrix out(x.size());
  for (size_t r = 0; r < x.size() / cols; ++r) {
    const double* in = x.data() + r * cols;
    double mean_square = 0.0;
    for (int64_t i = 0; i < cols; ++i) mean_square += in[i] * in[i];
    mean_square /= cols;
    for (int64_t i = 0; i < cols; ++i) out[r * cols + i] = weight[i] * in[i] / std::sqrt(mean_square + eps);
  }
  return out;
}

// x [tokens, in] · Wᵀ + b.
Matrix Linear(const Matrix& x, int64_t in, const HostLinear& linear) {
  const int64_t out_features = static_cast<int64_t>(linear.weight.size()) / in;
  const int64_t tokens = static_cast<int64_t>(x.size()) / in;
  Matrix y(tokens * out_features);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t o = 0; o < out_features; ++o) {
      double sum = linear.bias.empty() ? 0.0 : linear.bias[o];
      for (int64_t i = 0; i < in; ++i) sum += x[t * in + i] * linear.weight[o * in + i];
      y[t * out_features + o] = sum;
    }
  }
  return y;
}

// Rotates x [tokens, heads · head_dim] in place (rotate_half layout).
void Rope(Matrix& x, int64_t heads, const LayerArchitecture& a) {
  const int64_t half = a.head_dim / 2, width = heads * a.head_dim;
  for (int64_t i = 0; i < half; ++i) {
    // HF's float32 inverse frequency: 1 / theta^(2i/d), the power rounded to float32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(a.head_dim);
    const float power = static_cast<float>(std::pow(static_cast<double>(static_cast<float>(a.rope_theta)),
                                                    static_cast<double>(exponent)));
    const float inv_freq = 1.0f / power;
    for (int64_t t = 0; t < static_cast<int64_t>(x.size()) / width; ++t) {
      const double angle = static_cast<float>(t) * inv_freq;
      const double c = std::cos(angle), s = std::sin(angle);
      for (int64_t h = 0; h < heads; ++h) {
        double* lo = x.data() + t * width + h * a.head_dim + i;
        const double first = lo[0], second = lo[half];
        lo[0] = first * c - second * s;
        lo[half] = second * c + first * s;
      }
    }
  }
}

// Causal softmax attention; query head h reads key/value head h / (heads / kv_heads).
Matrix Attention(const Matrix& q, const Matrix& k, const Matrix& v, int64_t tokens, const LayerArchitecture& a) {
  const int64_t d = a.head_dim, q_width = a.q_width(), kv_width = a.kv_width();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  Matrix out(tokens * q_width, 0.0);
  std::vector<double> probabilities(tokens);
  for (int64_t h = 0; h < a.heads; ++h) {
    const int64_t kv = h / (a.heads / a.kv_heads);
    for (int64_t i = 0; i < tokens; ++i) {
      CausalProbabilitiesRow(q.data() + i * q_width + h * d, k.data() + kv * d, kv_width, d, i, scale,
                             probabilities.data());
      for (int64_t j = 0; j <= i; ++j)
        for (int64_t c = 0; c < d; ++c) out[i * q_width + h * d + c] += probabilities[j] * v[j * kv_width + kv * d + c];
    }
  }
  return out;
}

void AddInto(Matrix& acc, const Matrix& x) {
  for (size_t e = 0; e < acc.size(); ++e) acc[e] += x[e];
}

// The norm in front of block `index` (0 attention, 1 MLP); OPT post-LN has none.
Matrix NormInput(const HostLayer& l, int index, const Matrix& residual) {
  const LayerArchitecture& a = l.arch;
  const std::vector<float>& weight = index == 0 ? l.norm1_weight : l.norm2_weight;
  if (a.llama()) return RmsNorm(residual, a.hidden, weight, a.norm_eps);
  if (!a.norm_before) return residual;
  return LayerNorm(residual, a.hidden, weight, index == 0 ? l.norm1_bias : l.norm2_bias, a.norm_eps);
}

// OPT post-LN: the residual sum normalized after block `index`.
void PostNorm(const HostLayer& l, int index, Matrix& residual) {
  if (l.arch.llama() || l.arch.norm_before) return;
  residual = LayerNorm(residual, l.arch.hidden, index == 0 ? l.norm1_weight : l.norm2_weight,
                       index == 0 ? l.norm1_bias : l.norm2_bias, l.arch.norm_eps);
}

LayerArchitecture Opt(int64_t hidden, int64_t ffn, int64_t heads, bool norm_before, bool bias) {
  LayerArchitecture a;
  a.kind = LayerKind::kOpt;
  a.hidden = hidden;
  a.ffn = ffn;
  a.heads = a.kv_heads = heads;
  a.head_dim = hidden / heads;
  a.norm_eps = 1e-5;
  a.norm_before = norm_before;
  a.attention_bias = a.mlp_bias = bias;
  return a;
}

LayerArchitecture Llama(int64_t hidden, int64_t ffn, int64_t heads, int64_t kv_heads, int64_t head_dim, double theta,
                        bool bias) {
  LayerArchitecture a;
  a.kind = LayerKind::kLlama;
  a.hidden = hidden;
  a.ffn = ffn;
  a.heads = heads;
  a.kv_heads = kv_heads;
  a.head_dim = head_dim;
  a.norm_eps = 1e-6;
  a.rope_theta = theta;
  a.attention_bias = a.mlp_bias = bias;
  return a;
}

}  // namespace

void CausalProbabilitiesRow(const double* q_row, const double* k, int64_t k_ld, int64_t head_dim, int64_t i,
                            double scale, double* probabilities) {
  double largest = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j <= i; ++j) {
    double dot = 0.0;
    for (int64_t c = 0; c < head_dim; ++c) dot += q_row[c] * k[j * k_ld + c];
    probabilities[j] = dot * scale;
    largest = std::max(largest, probabilities[j]);
  }
  double sum = 0.0;
  for (int64_t j = 0; j <= i; ++j) sum += probabilities[j] = std::exp(probabilities[j] - largest);
  for (int64_t j = 0; j <= i; ++j) probabilities[j] /= sum;
}

std::vector<ForwardCase> ForwardCheckCases() {
  const std::vector<int64_t> lengths = {1, 7, 129};
  return {
      {"opt pre-LN, 5 heads", Opt(200, 333, 5, true, true), lengths},
      {"opt post-LN, 3 heads", Opt(108, 410, 3, false, true), lengths},
      {"opt without biases, 5 heads", Opt(90, 250, 5, true, false), lengths},
      {"llama 7 heads, q width 210 over hidden 200", Llama(200, 300, 7, 7, 30, 10000.0, false), lengths},
      {"llama GQA 2:1, 6 heads", Llama(204, 550, 6, 3, 34, 10000.0, false), lengths},
      {"llama GQA 4:1, 12 heads, biases, theta 5e5", Llama(180, 470, 12, 3, 16, 500000.0, true), {1, 7, 129, 300}},
      {"llama-sized GQA 2:1, 8 heads of 64", Llama(512, 1376, 8, 4, 64, 10000.0, false), {640}},
  };
}

HostLayer RandomHostLayer(const LayerArchitecture& a, std::mt19937_64& rng) {
  HostLayer l;
  l.arch = a;
  l.q = RandomLinear(a.q_width(), a.hidden, a.attention_bias, 1.5, rng);
  l.k = RandomLinear(a.kv_width(), a.hidden, a.attention_bias, 1.5, rng);
  l.v = RandomLinear(a.kv_width(), a.hidden, a.attention_bias, 1.0, rng);
  l.o = RandomLinear(a.hidden, a.q_width(), a.attention_bias, 1.0, rng);
  l.up = RandomLinear(a.ffn, a.hidden, a.mlp_bias, 1.0, rng);
  if (a.llama()) l.gate = RandomLinear(a.ffn, a.hidden, a.mlp_bias, 1.0, rng);
  l.down = RandomLinear(a.hidden, a.ffn, a.mlp_bias, 1.0, rng);
  l.norm1_weight = Uniform(a.hidden, 0.2, 1.0, rng);
  l.norm2_weight = Uniform(a.hidden, 0.2, 1.0, rng);
  if (!a.llama()) {
    l.norm1_bias = Uniform(a.hidden, 0.1, 0.0, rng);
    l.norm2_bias = Uniform(a.hidden, 0.1, 0.0, rng);
  }
  return l;
}

std::vector<float> RandomHidden(int64_t tokens, int64_t hidden, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<float> x(tokens * hidden);
  for (int64_t t = 0; t < tokens; ++t) {
    const double offset = normal(rng);
    for (int64_t i = 0; i < hidden; ++i) {
      const double scale = i % 37 == 5 ? 10.0 : 1.0;
      x[t * hidden + i] = static_cast<float>(offset + scale * normal(rng));
    }
  }
  return x;
}

ReferenceLayerResult ReferenceLayerForward(const HostLayer& l, const std::vector<float>& hidden, int64_t tokens) {
  const LayerArchitecture& a = l.arch;
  ReferenceLayerResult r;
  Matrix residual = Widen(hidden);
  r.group_inputs[0] = NormInput(l, 0, residual);
  const Matrix& x0 = r.group_inputs[0];
  Matrix q = Linear(x0, a.hidden, l.q), k = Linear(x0, a.hidden, l.k), v = Linear(x0, a.hidden, l.v);
  if (a.llama()) {
    Rope(q, a.heads, a);
    Rope(k, a.kv_heads, a);
  }
  r.group_inputs[1] = Attention(q, k, v, tokens, a);
  r.attention_q = q;
  r.attention_k = k;
  AddInto(residual, Linear(r.group_inputs[1], a.q_width(), l.o));
  PostNorm(l, 0, residual);

  r.group_inputs[2] = NormInput(l, 1, residual);
  Matrix inner = Linear(r.group_inputs[2], a.hidden, l.up);
  if (a.llama()) {
    const Matrix gate = Linear(r.group_inputs[2], a.hidden, l.gate);
    for (size_t e = 0; e < inner.size(); ++e) inner[e] *= gate[e] / (1.0 + std::exp(-gate[e]));
  } else {
    for (double& value : inner) value = std::max(value, 0.0);
  }
  r.group_inputs[3] = inner;
  AddInto(residual, Linear(r.group_inputs[3], a.ffn, l.down));
  PostNorm(l, 1, residual);
  r.out = residual;
  return r;
}

Deviation Compare(const std::vector<float>& result, const std::vector<double>& reference) {
  Deviation d;
  if (result.size() != reference.size() || reference.empty()) {
    d.max_over_rms = d.relative_frobenius = std::numeric_limits<double>::infinity();
    return d;
  }
  double reference_sq = 0.0, error_sq = 0.0, worst = 0.0;
  for (size_t e = 0; e < reference.size(); ++e) {
    const double error = std::isfinite(result[e]) ? std::fabs(result[e] - reference[e])
                                                  : std::numeric_limits<double>::infinity();
    reference_sq += reference[e] * reference[e];
    error_sq += error * error;
    worst = std::max(worst, error);
  }
  if (reference_sq == 0.0) {  // nothing to scale by: only an exact result passes
    d.max_over_rms = d.relative_frobenius = worst == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
    return d;
  }
  const double rms = std::sqrt(reference_sq / static_cast<double>(reference.size()));
  d.max_over_rms = worst / rms;
  d.relative_frobenius = std::sqrt(error_sq / reference_sq);
  return d;
}

}  // namespace qshard::gpu
