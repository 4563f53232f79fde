// Quantization of activations for the integer kernels, into int8 lanes:
//   per token (the int8 path): one scale per token, max |x| / 127, values in [−127, 127];
//   per tensor (FlattenQuant's W8A8 / W4A4): one scale fixed at calibration for every token,
//   values clamped to ±(2^(bits−1) − 1), so 4-bit activations are int4 values held in int8.
// The rounding rule (shared with the CUDA W8A8 path) is kernels/layout/int8_symmetric.h's.
#pragma once

#include <cstdint>

namespace qshard::kernels {

// q[i] = round(x[i] / scale); returns scale (1 for an all-zero row, whose q is all 0).
float QuantizeRowInt8(const float* x, int64_t n, int8_t* q);

struct StaticActivationQuant {
  int bits = 8;        // 4 or 8
  float scale = 1.0f;  // > 0: x ≈ scale · q
};

// 2^(bits−1) − 1: the largest code of a symmetric signed grid (7 for 4 bits, 127 for 8).
int32_t ActivationMaxCode(int bits);
// q[i] = clamp(round(x[i] / quant.scale), −max, max).
void QuantizeRowStatic(const float* x, int64_t n, const StaticActivationQuant& quant, int8_t* q);

}  // namespace qshard::kernels
