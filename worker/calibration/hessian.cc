#include "worker/calibration/hessian.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/blas.h"

namespace qshard {

namespace {

// The float32 product's upper triangle into the float64 sum's (a contiguous, vectorized walk).
void AddUpperTriangle(const float* upper, int64_t n, double* sum) {
  for (int64_t i = 0; i < n; ++i) {
    const float* from = upper + i * n;
    double* to = sum + i * n;
    for (int64_t j = i; j < n; ++j) to[j] += from[j];
  }
}

// Copies the upper triangle onto the lower one, in 32×32 tiles transposed through a local
// buffer so both the reads and the writes run along rows.
void MirrorUpperTriangle(int64_t n, double* sum) {
  constexpr int64_t kTile = 32;
  double tile[kTile * kTile];
  for (int64_t i0 = 0; i0 < n; i0 += kTile) {
    const int64_t i1 = std::min(i0 + kTile, n);
    for (int64_t j0 = i0; j0 < n; j0 += kTile) {
      const int64_t j1 = std::min(j0 + kTile, n);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) tile[(j - j0) * kTile + (i - i0)] = sum[i * n + j];
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < std::min(i1, j); ++i) sum[j * n + i] = tile[(j - j0) * kTile + (i - i0)];
    }
  }
}

}  // namespace

void HessianSum::AddWindowsToUpper(const float* x, int64_t rows, int64_t window) {
  // Uninitialized on purpose: ssyrk with beta 0 overwrites the upper triangle, the only part read.
  std::unique_ptr<float[]> product(new float[dim * dim]);
  for (int64_t start = 0; start < rows; start += window) {
    const int64_t n = std::min(window, rows - start);
    kernels::SyrkUpperTransA(dim, n, x + start * dim, product.get());
    AddUpperTriangle(product.get(), dim, sum.data());
  }
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t c = 0; c < dim; ++c) abs_max[c] = std::max(abs_max[c], std::fabs(x[t * dim + c]));
  tokens += rows;
}

void HessianSum::MirrorUpper() { MirrorUpperTriangle(dim, sum.data()); }

absl::Status HessianSum::Merge(const HessianSum& other) {
  if (other.dim != dim)
    return absl::InvalidArgumentError(absl::StrCat("cannot merge Hessian sums of dims ", dim, " and ", other.dim));
  for (int64_t i = 0; i < dim * dim; ++i) sum[i] += other.sum[i];
  for (int64_t c = 0; c < dim; ++c) abs_max[c] = std::max(abs_max[c], other.abs_max[c]);
  tokens += other.tokens;
  return absl::OkStatus();
}

std::vector<double> HessianSum::Normalized() const {
  std::vector<double> h(sum.size());
  const double scale = tokens > 0 ? 2.0 / static_cast<double>(tokens) : 0.0;
  for (size_t i = 0; i < sum.size(); ++i) h[i] = sum[i] * scale;
  return h;
}

}  // namespace qshard
