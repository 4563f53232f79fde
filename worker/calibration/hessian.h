// Second-moment statistics of a linear layer's inputs, H = Σ_t x_t x_tᵀ, kept as an
// un-normalized float64 sum plus a token count, so partial sums from different shards or
// workers add exactly; normalization (2·sum/tokens) happens once, in the solver. Beside it, the
// largest |x| seen in each input channel (FlattenQuant's channel splitting reads it): a maximum
// is exact in any order, so it reduces across shards like the sums, at O(dim) per token against
// the sum's O(dim²).
//
// Accumulation order is fixed by the conventions: each window's product is computed in
// float32 by a symmetric rank-k update (BLAS ssyrk), then added in window order into the
// float64 total. The bytes of the result therefore do not depend on batching or threads.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "core/thread_pool.h"
#include "core/large_buffers.h"

namespace qshard {

struct HessianWorkspace;

struct HessianSum {
  int64_t dim = 0;
  int64_t tokens = 0;
  UninitializedVector<double> sum;  // [dim, dim], symmetric, full square
  std::vector<float> abs_max;  // [dim]: max_t |x_t[c]| (0 before any token)

  HessianSum() = default;
  explicit HessianSum(int64_t d)
      : dim(d), sum(ZeroedVector<double, UninitializedAllocator<double>>(d * d)), abs_max(d, 0.0f) {}

  // Adds one window's inputs x [rows, dim] (row-major, one token per row).
  void AddWindow(const float* x, int64_t rows) { AddWindows(x, rows, rows); }
  // Adds consecutive windows of `window` rows each (the last may be shorter), one product per
  // window in order: the same sum as AddWindow on each, with one scratch product for all.
  void AddWindows(const float* x, int64_t rows, int64_t window);
  // The same into the upper triangle (j ≥ i) only, leaving the lower one stale until
  // MirrorUpper(): for a worker that adds many windows and partials before the sum is read.
  // Both triangles end up with the same sums of the same floats in the same order either way.
  void AddWindowsToUpper(const float* x, int64_t rows, int64_t window, HessianWorkspace& workspace);
  // Copies the upper triangle onto the lower one.
  void MirrorUpper(ThreadPool* pool = nullptr);
  // Adds another partial sum (same dim) — the reduction across shards. `upper_only`: both hold
  // current upper triangles only (AddWindowsToUpper), and only those are added.
  absl::Status Merge(const HessianSum& other, ThreadPool* pool = nullptr, bool upper_only = false);
  // H = 2·sum/tokens, the proxy Hessian of GPTQ (anchors.md §1.1), in float64.
  std::vector<double> Normalized() const;
};

// What a worker lends the sums it accumulates: threads for their element-wise passes (adds,
// mirrors, merges, zeroing: each element computed alone, so the bytes do not depend on them), one
// window-product scratch reused across windows and shards, and the buffers of partial sums
// already added into others, for the next shards' sums. A fresh dim² buffer is page-faulted in
// (one fault per 4 KiB page, about 0.45 s for fc2's 537 MB on this machine) by one thread.
struct HessianWorkspace {
  ThreadPool* pool = nullptr;  // null: the calling thread alone
  UninitializedVector<float> product;  // grown to dim² on first use; ssyrk writes its upper triangle
  std::vector<UninitializedVector<double>> spare_sums;  // given back by Recycle, contents stale

  // An empty sum of `dim` (no tokens) for AddWindowsToUpper: its upper triangle zeroed on the
  // pool's threads, its lower one left as it was until MirrorUpper (so the pages that hold only
  // lower-triangle entries, nearly half, are never touched). On a spare buffer of dim² elements
  // when one is kept, else on a fresh one.
  HessianSum NewSum(int64_t dim);
  // Keeps the buffer of a sum that is no longer needed (added into another) for NewSum.
  void Recycle(HessianSum&& sum);
};

}  // namespace qshard
