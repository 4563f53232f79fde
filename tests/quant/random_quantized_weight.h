// Random but valid quantized weights for the packing and kernel tests: fp16 scales, zero points
// in 1..2^bits (what the GPTQ v1 layout can store), and with act_order the groups dealt to the
// inputs in a shuffled order, as GPTQ's act-order produces.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>

#include "core/dtype.h"
#include "worker/quant/quant_grid.h"
#include "worker/quant/quantized_weight.h"

namespace qshard::testing_support {

inline QuantizedWeight RandomQuantizedWeight(int bits, int64_t rows, int64_t cols, int64_t group_size,
                                             bool act_order, uint32_t seed) {
  std::mt19937 rng(seed);
  QuantizedWeight w;
  w.bits = bits;
  w.rows = rows;
  w.cols = cols;
  const int64_t groups = (cols + group_size - 1) / group_size;
  std::uniform_int_distribution<int32_t> code(0, MaxCode(bits)), zero(1, MaxCode(bits) + 1);
  std::uniform_real_distribution<float> scale(1e-4f, 2.0f);
  for (int64_t i = 0; i < rows * cols; ++i) w.codes.push_back(code(rng));
  w.scales = Tensor({groups, rows});
  for (int64_t i = 0; i < groups * rows; ++i) {
    w.scales[i] = HalfToFloat(FloatToHalf(scale(rng)));
    w.zeros.push_back(zero(rng));
  }
  for (int64_t c = 0; c < cols; ++c) w.g_idx.push_back(static_cast<int32_t>(c / group_size));
  if (act_order) std::shuffle(w.g_idx.begin(), w.g_idx.end(), rng);
  return w;
}

}  // namespace qshard::testing_support
