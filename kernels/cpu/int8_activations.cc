#include "kernels/cpu/int8_activations.h"

#include "kernels/layout/int8_symmetric.h"

namespace qshard::kernels {

float QuantizeRowInt8(const float* x, int64_t n, int8_t* q) {
  return layout::QuantizeRowSymmetricInt8([x](int64_t i) { return x[i]; }, n, q);
}

int32_t ActivationMaxCode(int bits) { return (1 << (bits - 1)) - 1; }

void QuantizeRowStatic(const float* x, int64_t n, const StaticActivationQuant& quant, int8_t* q) {
  const int32_t max_code = ActivationMaxCode(quant.bits);
  for (int64_t i = 0; i < n; ++i) q[i] = layout::Int8Code(x[i], quant.scale, max_code);
}

}  // namespace qshard::kernels
