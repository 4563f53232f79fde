// Test helper: calibration statistics of synthetic activations mixed across neighbouring
// channels, with periodic outlier channels, as LLM activations have.
#pragma once

#include <random>
#include <vector>

#include "worker/calibration/hessian.h"

namespace qshard::testing {

struct MixedInputShape {
  int64_t shift_a;  // x_i = (z_i + weight_a·z_{i+shift_a} + weight_b·z_{i+shift_b}) · outlier scale
  float weight_a;
  int64_t shift_b;
  float weight_b;
  int64_t outlier_period;  // channels i with i % period == offset are scaled by outlier_scale
  int64_t outlier_offset;
  float outlier_scale;
};

inline HessianSum MixedInputs(int64_t dim, int64_t tokens, std::mt19937& rng, const MixedInputShape& s) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  HessianSum sum(dim);
  std::vector<float> x(tokens * dim), z(dim);
  for (int64_t t = 0; t < tokens; ++t) {
    for (float& v : z) v = normal(rng);
    for (int64_t i = 0; i < dim; ++i)
      x[t * dim + i] = (z[i] + s.weight_a * z[(i + s.shift_a) % dim] + s.weight_b * z[(i + s.shift_b) % dim]) *
                       (i % s.outlier_period == s.outlier_offset ? s.outlier_scale : 1.0f);
  }
  sum.AddWindow(x.data(), tokens);
  return sum;
}

}  // namespace qshard::testing
