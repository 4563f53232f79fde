#include "kernels/cpu/gptq_reference.h"

#include <algorithm>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/int8_activations.h"

namespace qshard::kernels {
namespace {

float Scale(const layout::GptqPackedView& w, int64_t group, int64_t o) {
  return HalfToFloat(w.ScaleBits(group, o));
}

// y[t, o] = token scale · Σ_g scale[g, o] · Σ_{i in g} (q − zero) · a_i, exact integer sums, with
// quantize_row(x_t, n, a) → token scale turning each token into int8 codes.
template <class QuantizeRow>
void IntegerActivationGemm(const layout::GptqPackedView& w, const float* x, int64_t tokens, float* y,
                           const QuantizeRow& quantize_row) {
  std::vector<int8_t> a(w.in_features);
  std::vector<int64_t> sums(w.groups);
  for (int64_t t = 0; t < tokens; ++t) {
    const float token_scale = quantize_row(x + t * w.in_features, w.in_features, a.data());
    for (int64_t o = 0; o < w.out_features; ++o) {
      std::fill(sums.begin(), sums.end(), 0);
      for (int64_t i = 0; i < w.in_features; ++i) {
        const int64_t g = w.g_idx[i];
        sums[g] += (static_cast<int32_t>(w.Code(i, o)) - w.Zero(g, o)) * static_cast<int64_t>(a[i]);
      }
      float sum = 0.0f;
      for (int64_t g = 0; g < w.groups; ++g) sum += Scale(w, g, o) * static_cast<float>(sums[g]);
      y[t * w.out_features + o] = token_scale * sum;
    }
  }
}

}  // namespace

void ReferenceGptqGemm(const layout::GptqPackedView& w, const float* x, int64_t tokens, float* y) {
  std::vector<float> column(w.in_features);
  for (int64_t o = 0; o < w.out_features; ++o) {
    for (int64_t i = 0; i < w.in_features; ++i) {
      const int64_t g = w.g_idx[i];
      column[i] = Scale(w, g, o) * static_cast<float>(static_cast<int32_t>(w.Code(i, o)) - w.Zero(g, o));
    }
    for (int64_t t = 0; t < tokens; ++t) {
      float sum = 0.0f;
      for (int64_t i = 0; i < w.in_features; ++i) sum += x[t * w.in_features + i] * column[i];
      y[t * w.out_features + o] = sum;
    }
  }
}

void ReferenceGptqGemmInt8(const layout::GptqPackedView& w, const float* x, int64_t tokens, float* y) {
  IntegerActivationGemm(w, x, tokens, y, [](const float* row, int64_t n, int8_t* a) { return QuantizeRowInt8(row, n, a); });
}

void ReferenceGptqGemmStatic(const layout::GptqPackedView& w, const float* x, int64_t tokens,
                             const StaticActivationQuant& quant, float* y) {
  IntegerActivationGemm(w, x, tokens, y, [&](const float* row, int64_t n, int8_t* a) {
    QuantizeRowStatic(row, n, quant, a);
    return quant.scale;
  });
}

}  // namespace qshard::kernels
