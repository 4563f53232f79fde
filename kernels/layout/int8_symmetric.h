// The symmetric int8 grid of the integer kernels, and the one definition of its rounding rule:
// the CPU kernels' activations (per token, or per tensor for FlattenQuant), the CUDA W8A8
// path's activations (per token, on the device) and its weights (per output channel).
// Plain C++ with no dependencies, so that nvcc and the CUDA-only build include it as it is.
//
//   scale = max |x| / 127 (in float: one correctly rounded division), 1 for an all-zero row;
//   q     = clamp(round(x / scale), −max_code, max_code), x / scale one correctly rounded float
//           division and round() to nearest, ties to even (rint in the default rounding mode).
// The device computes both with IEEE division (nvcc's default -prec-div=true; no fast math in
// kernels/cuda), so the CPU and the GPU produce the same codes and scales bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define QSHARD_INT8_FN __host__ __device__ __forceinline__
#else
#define QSHARD_INT8_FN inline
#endif

namespace qshard::layout {

// The largest code of the per-token and per-channel grids: −127 … 127, so that negating a code
// never overflows (−128 is never produced).
inline constexpr int32_t kInt8MaxCode = 127;

QSHARD_INT8_FN float Int8ScaleOfMaxAbs(float max_abs) {
  return max_abs > 0.0f ? max_abs / static_cast<float>(kInt8MaxCode) : 1.0f;
}

#if !defined(__CUDA_ARCH__)
// nearbyint(v) in the default rounding mode (to nearest, ties to even), without the libm call
// that the portable build cannot inline and that kept the CPU's quantizing loops scalar: for
// |v| < 2^23, |v| + 2^23 lies where the floats are exactly the integers, so the addition rounds
// |v| as nearbyint does (2^23 is even: ties go to the same even integer) and the subtraction is
// exact; larger floats are integers already. Checked against std::nearbyint in
// int8_symmetric_test.cc.
inline float RoundHalfEven(float v) {
  constexpr float kTwoTo23 = 8388608.0f;
  const float magnitude = std::fabs(v);
  const float rounded = std::copysign((magnitude + kTwoTo23) - kTwoTo23, v);  // both sides computed: a select
  return magnitude < kTwoTo23 ? rounded : v;
}
#endif

QSHARD_INT8_FN int8_t Int8Code(float x, float scale, int32_t max_code) {
#if defined(__CUDA_ARCH__)
  const float rounded = rintf(x / scale);
#else
  const float rounded = RoundHalfEven(x / scale);
#endif
  const float limit = static_cast<float>(max_code);
  return static_cast<int8_t>(rounded < -limit ? -limit : (rounded > limit ? limit : rounded));
}

// One row quantized on its own max |x| (the per-token and the per-channel rule): q[i] for
// i < n, returns the scale. `value(i)` gives element i as float (fp16 callers convert exactly).
template <typename Value>
float QuantizeRowSymmetricInt8(Value value, int64_t n, int8_t* q) {
  float max_abs = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float magnitude = std::fabs(static_cast<float>(value(i)));
    max_abs = magnitude > max_abs ? magnitude : max_abs;  // fmax's result, as maxps: a NaN is skipped
  }
  const float scale = Int8ScaleOfMaxAbs(max_abs);
  for (int64_t i = 0; i < n; ++i) q[i] = Int8Code(static_cast<float>(value(i)), scale, kInt8MaxCode);
  return scale;
}

}  // namespace qshard::layout
