#include "worker/model/vector_exp.h"

#include <algorithm>

#include "core/vector_clones.h"
#include "worker/model/vector_math.h"

namespace qshard {

// Cloned per vector width and built with -ffp-contract=off (worker/CMakeLists.txt): every clone
// computes the same operations element by element, so all round alike.
QSHARD_VECTOR_CLONES void ExpInPlace(float* x, int64_t n) {
  // Clamping in its own pass: in the same loop GCC threads the constant clamp values through
  // the polynomial, and the resulting branches block vectorization.
  for (int64_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i], -87.3f), 88.3f);
  for (int64_t i = 0; i < n; ++i) x[i] = ExpOfClamped(x[i]);
}

}  // namespace qshard
