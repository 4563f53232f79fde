#include "worker/calibration/hessian.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/blas.h"

namespace qshard {

namespace {

// The float32 product's upper triangle into the float64 sum's (contiguous, vectorized walks).
void AddUpperTriangle(const float* upper, int64_t n, double* sum, ThreadPool* pool) {
  ForChunks(n, pool, [&](int64_t first, int64_t end) {
    for (int64_t i = first; i < end; ++i) {
      const float* from = upper + i * n;
      double* to = sum + i * n;
      for (int64_t j = i; j < n; ++j) to[j] += from[j];
    }
  });
}

// Copies the upper triangle onto the lower one, in 32×32 tiles transposed through a local
// buffer so both the reads and the writes run along rows. A row of tiles writes only its own
// columns of the lower triangle, so rows of tiles run in parallel.
void MirrorUpperTriangle(int64_t n, double* sum, ThreadPool* pool) {
  constexpr int64_t kTile = 32;
  ForChunks((n + kTile - 1) / kTile, pool, [&](int64_t first_tile, int64_t end_tile) {
    double tile[kTile * kTile];
    for (int64_t i0 = first_tile * kTile; i0 < std::min(n, end_tile * kTile); i0 += kTile) {
      const int64_t i1 = std::min(i0 + kTile, n);
      for (int64_t j0 = i0; j0 < n; j0 += kTile) {
        const int64_t j1 = std::min(j0 + kTile, n);
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) tile[(j - j0) * kTile + (i - i0)] = sum[i * n + j];
        for (int64_t j = j0; j < j1; ++j)
          for (int64_t i = i0; i < std::min(i1, j); ++i) sum[j * n + i] = tile[(j - j0) * kTile + (i - i0)];
      }
    }
  });
}

}  // namespace

void HessianSum::AddWindows(const float* x, int64_t rows, int64_t window) {
  HessianWorkspace workspace;
  AddWindowsToUpper(x, rows, window, workspace);
  MirrorUpper();
}

void HessianSum::AddWindowsToUpper(const float* x, int64_t rows, int64_t window, HessianWorkspace& workspace) {
  // Only the upper triangle is read, and ssyrk with beta 0 overwrites it for every window.
  if (workspace.product.size() < static_cast<size_t>(dim * dim)) workspace.product.resize(dim * dim);
  for (int64_t start = 0; start < rows; start += window) {
    const int64_t n = std::min(window, rows - start);
    kernels::SyrkUpperTransA(dim, n, x + start * dim, workspace.product.data());
    AddUpperTriangle(workspace.product.data(), dim, sum.data(), workspace.pool);
  }
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t c = 0; c < dim; ++c) abs_max[c] = std::max(abs_max[c], std::fabs(x[t * dim + c]));
  tokens += rows;
}

void HessianSum::MirrorUpper(ThreadPool* pool) { MirrorUpperTriangle(dim, sum.data(), pool); }

absl::Status HessianSum::Merge(const HessianSum& other, ThreadPool* pool, bool upper_only) {
  if (other.dim != dim)
    return absl::InvalidArgumentError(absl::StrCat("cannot merge Hessian sums of dims ", dim, " and ", other.dim));
  ForChunks(dim, pool, [&](int64_t first, int64_t end) {
    for (int64_t i = first; i < end; ++i)
      for (int64_t j = upper_only ? i : 0; j < dim; ++j) sum[i * dim + j] += other.sum[i * dim + j];
  });
  for (int64_t c = 0; c < dim; ++c) abs_max[c] = std::max(abs_max[c], other.abs_max[c]);
  tokens += other.tokens;
  return absl::OkStatus();
}

HessianSum HessianWorkspace::NewSum(int64_t dim) {
  HessianSum sum;
  sum.dim = dim;
  const auto spare = std::find_if(spare_sums.begin(), spare_sums.end(), [&](const UninitializedVector<double>& buffer) {
    return buffer.size() == size_t(dim * dim);
  });
  const bool fresh = spare == spare_sums.end();
  if (!fresh) {
    sum.sum = std::move(*spare);
    spare_sums.erase(spare);
  } else {
    sum.sum.resize(dim * dim);  // no page touched yet
  }
  ForChunks(dim, pool, [&](int64_t first, int64_t end) {
    for (int64_t i = first; i < end; ++i) {
      // A spare's upper-triangle pages are mapped already: one system call a row saved.
      if (fresh) PopulatePages(sum.sum.data() + i * dim + i, (dim - i) * sizeof(double));
      std::fill(sum.sum.begin() + i * dim + i, sum.sum.begin() + (i + 1) * dim, 0.0);
    }
  });
  sum.abs_max.assign(dim, 0.0f);
  return sum;
}

void HessianWorkspace::Recycle(HessianSum&& sum) {
  if (!sum.sum.empty()) spare_sums.push_back(std::move(sum.sum));
  sum = HessianSum();
}

std::vector<double> HessianSum::Normalized() const {
  std::vector<double> h(sum.size());
  const double scale = tokens > 0 ? 2.0 / static_cast<double>(tokens) : 0.0;
  for (size_t i = 0; i < sum.size(); ++i) h[i] = sum[i] * scale;
  return h;
}

}  // namespace qshard
