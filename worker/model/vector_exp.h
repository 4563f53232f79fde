// exp() over float32 arrays, written so the compiler vectorizes it (glibc's expf is a scalar
// call per element, which dominated attention's softmax). Cephes' expf scheme: x = k·ln2 + r,
// a degree-6 polynomial for exp(r), 2^k from the exponent bits; within 1 ulp of expf.
#pragma once

#include <cstdint>

namespace qshard {

// x[i] = exp(x[i]) for i < n. Inputs are clamped to [-87.3, 88.3] (float's normal range), so
// exp of a very negative input is about 1e-38 rather than 0.
void ExpInPlace(float* x, int64_t n);

}  // namespace qshard
