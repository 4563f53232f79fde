// FLOP counts of the work `qshard bench gptq` and `qshard bench quantize` time, and this
// machine's sgemm rate measured in the same run, so each row can say how far it is from the
// machine's limit (docs/benchmarks.md, docs/performance.md).
#pragma once

#include <cstdint>

namespace qshard::cli {

// One GPTQ solve (worker/solvers/inverse_hessian.h): the factorization, one float64 Cholesky
// of the cols × cols Hessian (cols³/3); the sweep's updates, each column's shift applied to
// every later column of its rows (2·rows·(cols − j) for column j: rows·cols² in all), and for
// dynamic groups one triangular solve of rows × g² per group (rows·cols·g). Grid fits and
// rounding are O(rows·cols) and not counted.
double GptqFactorFlops(int64_t cols);
double GptqSweepFlops(int64_t rows, int64_t cols, int group_size);

// sgemm FLOP/s at the BLAS thread count already set: the best of `repeats` products of two
// n×n matrices, n = 2048 (48 MiB, beyond the last-level cache), after one warm-up product.
double MeasureSgemmRate(int repeats);

}  // namespace qshard::cli
