// exp() over float32 arrays, vectorized (glibc's expf is a scalar call per element, which
// dominated attention's softmax): worker/model/vector_math.h's ExpOfClamped after a clamp.
#pragma once

#include <cstdint>

namespace qshard {

// x[i] = exp(x[i]) for i < n. Inputs are clamped to [-87.3, 88.3] (float's normal range), so
// exp of a very negative input is about 1e-38 rather than 0.
void ExpInPlace(float* x, int64_t n);

}  // namespace qshard
