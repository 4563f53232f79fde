// The GPTQ factor's Cholesky with bits that do not depend on the thread count. OpenBLAS's own
// potrf splits its work by the number of BLAS threads and rounds differently for each (1.65 M
// of 4.2 M float64 elements differ between 1 and 2 threads at n = 2048), while a job's bytes
// must depend on its spec and seed only (conventions.md, Determinism). Here every BLAS call
// runs on one thread, on a fixed tile of a right-looking blocked factorization, and tiles are
// spread over the worker's pool: the same calls on the same tiles whatever the pool.
// The diagonal blocks and the panels are float64. The trailing update, nearly all of the n³/3
// multiply-adds, multiplies float32 copies of the panel at the sgemm rate and subtracts the
// products from the float64 matrix, so each step's error is float32's relative precision of its
// own terms (docs/performance.md: codes, KL and time against the all-float64 factor).
#pragma once

#include <cstdint>

namespace qshard {

class ThreadPool;

// a [n, n] row-major symmetric (lower triangle read); on success its lower triangle holds L with
// A ≈ L Lᵀ (above) and its upper triangle zeros. False when A is not positive definite (a is then
// partly overwritten). pool == nullptr: on the calling thread.
bool BlockedCholeskyF64(int64_t n, double* a, ThreadPool* pool);

}  // namespace qshard
