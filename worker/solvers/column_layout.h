// Moves a weight between the row-major [out, in] layout of tensors and the column-major
// working layout [in, out] the solvers sweep in (one input column contiguous over output rows,
// so per-column quantization and the lazy GEMM updates touch contiguous memory), undoing the
// sweep's column order on the way back.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

namespace qshard {

// Small tiles, contiguous writes: with power-of-two strides every line of a tile falls in the
// same cache set, so a tile must not need more lines than the cache's associativity (8).
inline constexpr int64_t kTransposeTile = 8;

// dst[c * rows + r] = src[r * cols + c]: a [rows, cols] row-major src into dst [cols, rows].
template <typename T>
void TransposeRows(const T* src, int64_t rows, int64_t cols, T* dst) {
  for (int64_t r0 = 0; r0 < rows; r0 += kTransposeTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTransposeTile)
      for (int64_t c = c0; c < std::min(c0 + kTransposeTile, cols); ++c)
        for (int64_t r = r0; r < std::min(r0 + kTransposeTile, rows); ++r) dst[c * rows + r] = src[r * cols + c];
}

// The way back from a sweep: src [cols, rows] holds original column c in row position[c];
// dst [rows, cols] (row-major) gets dst[r * cols + c] = src[position[c] * rows + r].
template <typename T>
void TransposeFromSweepOrder(const T* src, int64_t rows, int64_t cols, std::span<const int64_t> position, T* dst) {
  for (int64_t c0 = 0; c0 < cols; c0 += kTransposeTile)
    for (int64_t r0 = 0; r0 < rows; r0 += kTransposeTile)
      for (int64_t r = r0; r < std::min(r0 + kTransposeTile, rows); ++r)
        for (int64_t c = c0; c < std::min(c0 + kTransposeTile, cols); ++c)
          dst[r * cols + c] = src[position[c] * rows + r];
}

// position[order[j]] = j.
inline std::vector<int64_t> InversePermutation(std::span<const int64_t> order) {
  std::vector<int64_t> position(order.size());
  for (size_t j = 0; j < order.size(); ++j) position[order[j]] = static_cast<int64_t>(j);
  return position;
}

}  // namespace qshard
