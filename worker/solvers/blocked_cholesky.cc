#include "worker/solvers/blocked_cholesky.h"

#include <algorithm>
#include <functional>
#include <utility>
#include <vector>

#include "core/large_buffers.h"
#include "core/thread_pool.h"
#include "kernels/cpu/blas.h"

namespace qshard {
namespace {

// Wide enough that a single-threaded dgemm on a tile runs near the core's rate, narrow enough
// that a 2048-wide factor still has tiles for every thread.
constexpr int64_t kTile = 256;

void RunTiles(ThreadPool* pool, int64_t count, const std::function<void(int64_t)>& tile) {
  if (pool != nullptr) {
    pool->ParallelFor(count, tile);
  } else {
    for (int64_t t = 0; t < count; ++t) tile(t);
  }
}

// Factors the diagonal block at (k0, k0), kb wide, in place (its upper part becomes zeros).
bool FactorDiagonalBlock(int64_t n, int64_t k0, int64_t kb, double* a) {
  std::vector<double> block(kb * kb);
  for (int64_t i = 0; i < kb; ++i) std::copy_n(a + (k0 + i) * n + k0, kb, block.data() + i * kb);
  if (!kernels::CholeskyF64(kb, block.data(), /*upper=*/false)) return false;
  for (int64_t i = 0; i < kb; ++i) std::copy_n(block.data() + i * kb, kb, a + (k0 + i) * n + k0);
  return true;
}

}  // namespace

bool BlockedCholeskyF64(int64_t n, double* a, ThreadPool* pool) {
  const kernels::SingleThreadedBlas one_thread_per_call;
  std::vector<std::pair<int64_t, int64_t>> trailing;  // (row tile, column tile), column ≤ row
  std::vector<float> panel;                           // this step's columns of L below its block
  for (int64_t k0 = 0; k0 < n; k0 += kTile) {
    const int64_t kb = std::min(kTile, n - k0);
    if (!FactorDiagonalBlock(n, k0, kb, a)) return false;
    const int64_t next = k0 + kb;
    const int64_t tiles = (n - next + kTile - 1) / kTile;
    const double* diagonal = a + k0 * n + k0;
    RunTiles(pool, tiles, [&](int64_t t) {
      const int64_t i0 = next + t * kTile;
      kernels::SolveLowerTransposedRightF64(std::min(kTile, n - i0), kb, diagonal, n, a + i0 * n + k0, n);
    });
    // The trailing update's products in float32, at the sgemm rate, subtracted from the
    // float64 matrix: each step's error stays at float32's relative precision of that step's
    // terms, and the sums over steps stay float64.
    panel.resize((n - next) * kb);
    for (int64_t i = next; i < n; ++i)
      std::copy_n(a + i * n + k0, kb, panel.begin() + (i - next) * kb);
    trailing.clear();
    for (int64_t ti = 0; ti < tiles; ++ti)
      for (int64_t tj = 0; tj <= ti; ++tj) trailing.emplace_back(ti, tj);
    RunTiles(pool, static_cast<int64_t>(trailing.size()), [&](int64_t t) {
      const int64_t i0 = next + trailing[t].first * kTile, j0 = next + trailing[t].second * kTile;
      const int64_t rows = std::min(kTile, n - i0), cols = std::min(kTile, n - j0);
      UninitializedVector<float> product(rows * cols);  // written whole (beta 0): no zeroing
      kernels::Gemm(rows, cols, kb, panel.data() + (i0 - next) * kb, panel.data() + (j0 - next) * kb,
                    /*b_transposed=*/true, product.data());
      for (int64_t r = 0; r < rows; ++r) {
        double* row = a + (i0 + r) * n + j0;
        for (int64_t c = 0; c < cols; ++c) row[c] -= product[r * cols + c];
      }
    });
  }
  for (int64_t i = 0; i < n; ++i) std::fill(a + i * n + i + 1, a + (i + 1) * n, 0.0);
  return true;
}

}  // namespace qshard
