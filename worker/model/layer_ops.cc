#include "worker/model/layer_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/blas.h"
#include "worker/model/vector_exp.h"

namespace qshard {

namespace {

// One row of LayerNorm: two passes, since outlier channels make E[x²] − mean² cancel badly.
void LayerNormRow(const float* in, int64_t n, const float* w, const float* b, double eps, float* o) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += in[i];
  const double mean = sum / n;
  double sum_squares = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_squares += (in[i] - mean) * (in[i] - mean);
  const float inv_std = static_cast<float>(1.0 / std::sqrt(sum_squares / n + eps));
  const float mean_f = static_cast<float>(mean);
  for (int64_t i = 0; i < n; ++i) o[i] = (in[i] - mean_f) * inv_std * w[i] + b[i];
}

}  // namespace

Tensor RmsNorm(const Tensor& x, const Tensor& weight, double eps, ThreadPool* pool) {
  Tensor out(x.shape());
  const int64_t n = x.cols();
  const float* w = weight.data();
  ForChunks(x.rows(), pool, [&](int64_t first, int64_t end) {
    for (int64_t r = first; r < end; ++r) {
      const float* in = x.row(r);
      double sum_squares = 0.0;
      for (int64_t i = 0; i < n; ++i) sum_squares += static_cast<double>(in[i]) * in[i];
      const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_squares / n + eps));
      float* o = out.row(r);
      for (int64_t i = 0; i < n; ++i) o[i] = w[i] * (in[i] * inv_rms);
    }
  });
  return out;
}

Tensor LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, ThreadPool* pool) {
  Tensor out(x.shape());
  const int64_t n = x.cols();
  const float* w = weight.data();
  const float* b = bias.data();
  ForChunks(x.rows(), pool, [&](int64_t first, int64_t end) {
    for (int64_t r = first; r < end; ++r) LayerNormRow(x.row(r), n, w, b, eps, out.row(r));
  });
  return out;
}

Tensor ApplyLinear(const Tensor& x, const Linear& linear) {
  const int64_t tokens = x.rows();
  if (linear.kernel == nullptr && tokens > 1) {
    const int64_t out_features = linear.weight.dim(0);
    Tensor out({tokens, out_features});
    float beta = 0.0f;
    if (linear.has_bias()) {  // start from the bias and let the GEMM accumulate onto it
      for (int64_t r = 0; r < tokens; ++r)
        std::memcpy(out.row(r), linear.bias.data(), sizeof(float) * out_features);
      beta = 1.0f;
    }
    kernels::Gemm(tokens, out_features, x.cols(), x.data(), linear.weight.data(), /*b_transposed=*/true,
                  out.data(), 1.0f, beta);
    return out;
  }
  Tensor out;
  if (linear.kernel) {
    out = linear.kernel->Apply(x);
  } else {  // one token (a decoding step): OpenBLAS's sgemm would pack the whole weight for one row
    out = Tensor({1, linear.weight.dim(0)});
    kernels::Gemv(linear.weight.dim(0), x.cols(), linear.weight.data(), x.data(), out.data());
  }
  if (linear.has_bias()) {
    const int64_t n = out.cols();
    for (int64_t r = 0; r < tokens; ++r)
      for (int64_t o = 0; o < n; ++o) out.row(r)[o] += linear.bias.data()[o];
  }
  return out;
}

void SiluMultiplyInPlace(Tensor& gate, const Tensor& up, ThreadPool* pool) {
  float* g = gate.data();
  const float* u = up.data();
  constexpr int64_t kChunk = 256;  // exp(-g) goes through a small buffer for the vectorized exp
  ForChunks((gate.size() + kChunk - 1) / kChunk, pool, [&](int64_t first, int64_t end) {
    float exp_neg[kChunk];
    for (int64_t c = first; c < end; ++c) {
      const int64_t begin = c * kChunk, n = std::min(kChunk, gate.size() - begin);
      for (int64_t i = 0; i < n; ++i) exp_neg[i] = -g[begin + i];
      ExpInPlace(exp_neg, n);
      for (int64_t i = 0; i < n; ++i) g[begin + i] = g[begin + i] / (1.0f + exp_neg[i]) * u[begin + i];
    }
  });
}

void ReluInPlace(Tensor& x) {
  for (float& v : x.values()) v = std::max(v, 0.0f);
}

void AddInPlace(Tensor& acc, const Tensor& x) {
  float* a = acc.data();
  const float* b = x.data();
  for (int64_t i = 0; i < acc.size(); ++i) a[i] += b[i];
}

}  // namespace qshard
