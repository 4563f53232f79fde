#include "kernels/cpu/int8_activations.h"

#include <algorithm>
#include <cmath>

namespace qshard::kernels {
namespace {

void RoundToCodes(const float* x, int64_t n, float scale, int32_t max_code, int8_t* q) {
  const float limit = static_cast<float>(max_code);
  for (int64_t i = 0; i < n; ++i) q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] / scale), -limit, limit));
}

}  // namespace

float QuantizeRowInt8(const float* x, int64_t n, int8_t* q) {
  float max_abs = 0.0f;
  for (int64_t i = 0; i < n; ++i) max_abs = std::max(max_abs, std::fabs(x[i]));
  if (max_abs == 0.0f) {
    std::fill(q, q + n, int8_t{0});
    return 1.0f;
  }
  const float scale = max_abs / 127.0f;
  RoundToCodes(x, n, scale, 127, q);
  return scale;
}

int32_t ActivationMaxCode(int bits) { return (1 << (bits - 1)) - 1; }

void QuantizeRowStatic(const float* x, int64_t n, const StaticActivationQuant& quant, int8_t* q) {
  RoundToCodes(x, n, quant.scale, ActivationMaxCode(quant.bits), q);
}

}  // namespace qshard::kernels
