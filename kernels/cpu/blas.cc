#include "kernels/cpu/blas.h"

#include <cstdlib>
#include <mutex>

#include <cblas.h>

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
// Not in cblas.h, but exported by OpenBLAS (driver/others): re-read OPENBLAS_* variables, and
// stop the library's threads (its next parallel call starts them again, with what was read).
int openblas_read_env(void);
int blas_thread_shutdown_(void);
}

namespace qshard::kernels {

void Gemm(int64_t m, int64_t n, int64_t k, const float* a, const float* b, bool b_transposed,
          float* c, float alpha, float beta) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, b_transposed ? CblasTrans : CblasNoTrans, m, n, k,
              alpha, a, k, b, b_transposed ? k : n, beta, c, n);
}

void GemmBlock(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, float* c) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, lda, b, n, 0.0f, c, n);
}

void Gemv(int64_t n, int64_t k, const float* w, const float* x, float* y) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w, k, x, 1, 0.0f, y, 1);
}

void GemmTransA(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c,
                float alpha, float beta) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, alpha, a, m, b, n, beta, c, n);
}

void GemmF64(int64_t m, int64_t n, int64_t k, const double* a, bool a_transposed, const double* b,
             bool b_transposed, double* c, double alpha, double beta) {
  cblas_dgemm(CblasRowMajor, a_transposed ? CblasTrans : CblasNoTrans,
              b_transposed ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, a_transposed ? m : k, b,
              b_transposed ? k : n, beta, c, n);
}

void UnitUpperTransposedSolve(int64_t m, int64_t n, const float* a, int64_t lda, float* b) {
  cblas_strsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasUnit, m, n, 1.0f, a, lda, b, n);
}

void SyrkUpperTransA(int64_t n, int64_t k, const float* x, float* c) {
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, 1.0f, x, n, 0.0f, c, n);
}

// LAPACK is column-major: a row-major matrix is its transpose, so "upper" in row-major is
// "L" for LAPACK and vice versa.
bool CholeskyF64(int64_t n, double* a, bool upper) {
  const char uplo = upper ? 'L' : 'U';
  const int nn = static_cast<int>(n);
  int info = 0;
  dpotrf_(&uplo, &nn, a, &nn, &info);
  if (info != 0) return false;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      if (upper ? j < i : j > i) a[i * n + j] = 0.0;
  return true;
}

void SubtractProductF64(int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b, int64_t ldb,
                        double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, -1.0, a, lda, b, ldb, 1.0, c, ldc);
}

void SolveLowerTransposedRightF64(int64_t m, int64_t n, const double* l, int64_t ldl, double* b, int64_t ldb) {
  cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, m, n, 1.0, l, ldl, b, ldb);
}

bool CholeskyInverseF64(int64_t n, double* lower_factor) {
  const char uplo = 'U';  // row-major lower == column-major upper
  const int nn = static_cast<int>(n);
  int info = 0;
  dpotri_(&uplo, &nn, lower_factor, &nn, &info);
  if (info != 0) return false;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) lower_factor[i * n + j] = lower_factor[j * n + i];
  return true;
}

void SetBlasThreads(int threads) {
  if (threads > 0) openblas_set_num_threads(threads);
}

namespace {

// OpenBLAS's idle threads spin in sched_yield for 2^28 cycles (about 0.1 s) after each parallel
// call before they sleep, on the cores the worker's pool needs between its GEMMs: 14 % of
// aespa's samples on TinyStories-656K (docs/performance.md). At 2^4 cycles they sleep at once,
// and a parallel call wakes them: microseconds against its milliseconds. The threads read the
// timeout when they start, so they are restarted here, while the program loads and no thread of
// its own can be inside a BLAS call. A timeout set in the environment is kept; ours is taken
// out of it once read, so that child processes (the benchmarks' reference code, whose PyTorch
// may use the same OpenBLAS) run with the library's default.
const struct ShortBlasSpin {
  ShortBlasSpin() {
    if (std::getenv("OPENBLAS_THREAD_TIMEOUT") != nullptr) return;
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", /*overwrite=*/0);
    openblas_read_env();
    unsetenv("OPENBLAS_THREAD_TIMEOUT");
    blas_thread_shutdown_();
  }
} short_blas_spin;

}  // namespace

namespace {
std::mutex single_threaded_mutex;
int single_threaded_scopes = 0;  // guarded by single_threaded_mutex
int threads_before_scopes = 0;   // the library's count when the first open scope began
}  // namespace

SingleThreadedBlas::SingleThreadedBlas() {
  std::lock_guard<std::mutex> lock(single_threaded_mutex);
  if (single_threaded_scopes++ == 0) {
    threads_before_scopes = openblas_get_num_threads();
    openblas_set_num_threads(1);
  }
}

SingleThreadedBlas::~SingleThreadedBlas() {
  std::lock_guard<std::mutex> lock(single_threaded_mutex);
  if (--single_threaded_scopes == 0) openblas_set_num_threads(threads_before_scopes);
}

}  // namespace qshard::kernels
