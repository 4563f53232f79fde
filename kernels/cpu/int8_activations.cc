#include "kernels/cpu/int8_activations.h"

#include <algorithm>
#include <cmath>

namespace qshard::kernels {

float QuantizeRowInt8(const float* x, int64_t n, int8_t* q) {
  float max_abs = 0.0f;
  for (int64_t i = 0; i < n; ++i) max_abs = std::max(max_abs, std::fabs(x[i]));
  if (max_abs == 0.0f) {
    std::fill(q, q + n, int8_t{0});
    return 1.0f;
  }
  const float scale = max_abs / 127.0f;
  for (int64_t i = 0; i < n; ++i)
    q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] / scale), -127.0f, 127.0f));
  return scale;
}

}  // namespace qshard::kernels
