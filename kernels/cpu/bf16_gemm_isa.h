// MultiplyBf16's per-ISA paths (bf16_gemm.h), each in its own unit built with its ISA's flags
// and called only where the CPU has them.
#pragma once

#include <cstdint>

namespace qshard::kernels {

class Bf16Matrix;

// On vdpbf16ps (AVX-512 BF16).
void MultiplyBf16Avx512(int64_t m, const float* a, int64_t lda, const Bf16Matrix& b, float* c);
// The definition's steps with AVX2 FMAs (each exact product added with one rounding).
void MultiplyBf16Avx2(int64_t m, const float* a, int64_t lda, const Bf16Matrix& b, float* c);

}  // namespace qshard::kernels
