// fp16 and bfloat16 for the host emulation of CUDA (docs/cuda.md, "Running the CUDA code on the
// host"): the types and conversions of cuda_fp16.h / cuda_bf16.h that qshard's kernels use,
// rounding to nearest even exactly as the device does (float → fp16 through GCC's _Float16).
#pragma once

#include <bit>
#include <cstdint>

#include "kernels/cuda/emulation/emulated_vector_types.h"

struct __half_raw {
  unsigned short x;
};

struct __half {
  unsigned short bits = 0;
  __half() = default;
  __half(float value) : bits(std::bit_cast<unsigned short>(static_cast<_Float16>(value))) {}  // NOLINT
  __half(__half_raw raw) : bits(raw.x) {}  // NOLINT
  operator float() const { return static_cast<float>(std::bit_cast<_Float16>(bits)); }  // NOLINT
};

struct alignas(4) __half2 {
  __half x, y;
};

inline __half __float2half_rn(float value) { return __half(value); }
inline __half __float2half(float value) { return __half(value); }
inline float __half2float(__half value) { return static_cast<float>(value); }
inline unsigned short __half_as_ushort(__half value) { return value.bits; }
inline __half __ushort_as_half(unsigned short bits) { return __half(__half_raw{bits}); }
inline __half2 __halves2half2(__half x, __half y) { return {x, y}; }
inline __half2 __float2half2_rn(float value) { return {__half(value), __half(value)}; }

inline float2 __half22float2(__half2 value) { return {float(value.x), float(value.y)}; }

// The fused operations round once: the exact product and sum are formed in double (at most
// 22 + 11 significant bits apart by the exponent range of fp16), then rounded to fp16.
inline __half HalfFma(__half a, __half b, __half c) {
  return __half(static_cast<float>(static_cast<double>(float(a)) * float(b) + float(c)));
}
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) { return {HalfFma(a.x, b.x, c.x), HalfFma(a.y, b.y, c.y)}; }
inline __half2 __hsub2(__half2 a, __half2 b) {
  return {__half(static_cast<float>(double(float(a.x)) - float(b.x))),
          __half(static_cast<float>(double(float(a.y)) - float(b.y)))};
}

struct __nv_bfloat16 {
  unsigned short bits = 0;
  __nv_bfloat16() = default;
  explicit __nv_bfloat16(float value) {
    const uint32_t u = std::bit_cast<uint32_t>(value);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = static_cast<unsigned short>((u >> 16) | 0x40u);  // a quiet NaN
    } else {
      bits = static_cast<unsigned short>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // to nearest even
    }
  }
  operator float() const { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }  // NOLINT
};

inline __nv_bfloat16 __float2bfloat16_rn(float value) { return __nv_bfloat16(value); }
