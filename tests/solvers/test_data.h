// Inputs for the solver tests: random weights, GPT-2's real projection matrices, correlated
// synthetic activations with outlier channels, and the output error ‖(W − Ŵ) X‖² they define.
#pragma once

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/cpu/blas.h"
#include "worker/calibration/hessian.h"

namespace qshard::testing {

// Full 768-column layers in optimized builds; 256-column slices where sanitizers or -O0 make
// the float64 reference slow.
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
inline constexpr int64_t kRealMatrixSize = 768;
#else
inline constexpr int64_t kRealMatrixSize = 256;
#endif

inline Tensor RandomWeight(int64_t out, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  Tensor w({out, in});
  for (float& v : w.values()) v = normal(rng);
  return w;
}

// A GPT-2 124M c_proj weight (raw little-endian float32 [in, out]) as [out, in], cut to the
// leading `size` rows and columns. Empty tensor (and a message naming the file) when missing.
inline Tensor LoadGpt2Matrix(const std::string& block, int64_t size, std::string* error) {
  const std::string path = "../shared/data/gpt2-real-matrices/blocks_" + block + "_attn_c_proj_w";
  constexpr int64_t kDim = 768;
  std::vector<float> raw(kDim * kDim);
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr || std::fread(raw.data(), sizeof(float), raw.size(), file) != raw.size()) {
    if (file != nullptr) std::fclose(file);
    *error = "cannot read " + path + " (the real-data test needs it)";
    return Tensor();
  }
  std::fclose(file);
  Tensor w({size, size});
  for (int64_t o = 0; o < size; ++o)
    for (int64_t i = 0; i < size; ++i) w.at(o, i) = raw[i * kDim + o];
  return w;
}

// Calibration inputs X [tokens, dim] = Z · A with a random mixing matrix A (so features are
// correlated, like real activations), plus `outliers` channels scaled by `outlier_scale`.
inline std::vector<float> CorrelatedActivations(int64_t tokens, int64_t dim, int outliers, float outlier_scale,
                                                uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> z(tokens * dim), a(dim * dim), x(tokens * dim);
  for (float& v : z) v = normal(rng);
  for (float& v : a) v = normal(rng) / std::sqrt(static_cast<float>(dim));
  for (int64_t i = 0; i < dim; ++i) a[i * dim + i] += 0.5f;  // keep X well conditioned
  kernels::Gemm(tokens, dim, dim, z.data(), a.data(), /*b_transposed=*/false, x.data());
  std::uniform_int_distribution<int64_t> channel(0, dim - 1);
  for (int k = 0; k < outliers; ++k) {
    const int64_t c = channel(rng);
    for (int64_t t = 0; t < tokens; ++t) x[t * dim + c] *= outlier_scale;
  }
  return x;
}

inline HessianSum HessianOf(const std::vector<float>& x, int64_t tokens, int64_t dim) {
  HessianSum h(dim);
  h.AddWindow(x.data(), tokens);
  return h;
}

// Σ_t ‖(W − Ŵ) x_t‖², computed from the activations themselves (not through H).
inline double OutputError(const Tensor& w, const Tensor& w_hat, const std::vector<float>& x, int64_t tokens) {
  const int64_t out = w.dim(0), in = w.dim(1);
  Tensor delta({out, in});
  for (int64_t i = 0; i < w.size(); ++i) delta[i] = w[i] - w_hat[i];
  std::vector<float> y(tokens * out);
  kernels::Gemm(tokens, out, in, x.data(), delta.data(), /*b_transposed=*/true, y.data());
  double total = 0.0;
  for (float v : y) total += static_cast<double>(v) * v;
  return total;
}

inline double OutputEnergy(const Tensor& w, const std::vector<float>& x, int64_t tokens) {
  return OutputError(w, Tensor(w.shape()), x, tokens);
}

}  // namespace qshard::testing
