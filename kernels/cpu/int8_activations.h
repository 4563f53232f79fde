// Per-token int8 quantization of activations for the int8-activation kernels: one scale per
// token, max |x| / 127, values rounded to nearest (ties to even) in [−127, 127].
#pragma once

#include <cstdint>

namespace qshard::kernels {

// q[i] = round(x[i] / scale); returns scale (1 for an all-zero row, whose q is all 0).
float QuantizeRowInt8(const float* x, int64_t n, int8_t* q);

}  // namespace qshard::kernels
