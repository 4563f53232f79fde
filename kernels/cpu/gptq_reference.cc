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
  std::vector<int8_t> a(w.in_features);
  std::vector<int64_t> sums(w.groups);
  for (int64_t t = 0; t < tokens; ++t) {
    const float token_scale = QuantizeRowInt8(x + t * w.in_features, w.in_features, a.data());
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

}  // namespace qshard::kernels
