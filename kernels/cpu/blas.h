// Thin, typed wrappers over the BLAS/LAPACK calls qshard uses (OpenBLAS on the CPU path),
// so callers name matrices by shape instead of passing Fortran-style leading dimensions.
// All matrices are row-major.
#pragma once

#include <cstdint>

namespace qshard::kernels {

// C[m,n] = alpha * A[m,k] * op(B) + beta * C, where op(B) = B[k,n] or, if b_transposed,
// B[n,k]ᵀ (the layout of a linear layer's weight [out, in]).
void Gemm(int64_t m, int64_t n, int64_t k, const float* a, const float* b, bool b_transposed,
          float* c, float alpha = 1.0f, float beta = 0.0f);
// y[n] = W[n,k] · x[k] (sgemv): one token through a linear layer's weight [out, in].
void Gemv(int64_t n, int64_t k, const float* w, const float* x, float* y);
// C[m,n] = A·B for A m rows of k columns inside a wider row-major matrix, its rows lda apart (a
// block of it), and B[k,n].
void GemmBlock(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, float* c);
// Same with A transposed: C[m,n] = alpha * A[k,m]ᵀ * B[k,n] + beta * C.
void GemmTransA(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c,
                float alpha = 1.0f, float beta = 0.0f);
// Float64 GEMM, row-major, optional transposes of A and B.
void GemmF64(int64_t m, int64_t n, int64_t k, const double* a, bool a_transposed, const double* b,
             bool b_transposed, double* c, double alpha = 1.0, double beta = 0.0);

// B[m,n] ← (Aᵀ)⁻¹ B, a forward substitution, for A[m,m] upper triangular with a unit diagonal
// (not read) stored with row stride lda.
void UnitUpperTransposedSolve(int64_t m, int64_t n, const float* a, int64_t lda, float* b);

// Symmetric rank-k update, upper triangle only and overwritten: C[i,j] = Σ_t X[t,i]·X[t,j] for
// j ≥ i and X[k,n] (tokens × features); ssyrk with beta 0, so C needs no zeroing, and the strict
// lower triangle is neither read nor written (callers mirror it when they need the square).
void SyrkUpperTransA(int64_t n, int64_t k, const float* x, float* c);

// In-place Cholesky factorization of a symmetric positive-definite matrix a[n,n] (float64).
// upper=true leaves U (A = UᵀU) in the upper triangle, otherwise L (A = LLᵀ) in the lower one;
// the other triangle is zeroed. Returns false when the matrix is not positive definite.
bool CholeskyF64(int64_t n, double* a, bool upper);

// C[m,n] (row stride ldc) −= A[m,k] (row stride lda) · B[n,k]ᵀ (row stride ldb), float64: a tile
// of a blocked factorization's trailing update.
void SubtractProductF64(int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b, int64_t ldb,
                        double* c, int64_t ldc);

// B[m,n] (row stride ldb) ← B · L⁻ᵀ for L [n,n] lower triangular (row stride ldl), float64: a
// tile of a blocked Cholesky's panel.
void SolveLowerTransposedRightF64(int64_t m, int64_t n, const double* l, int64_t ldl, double* b, int64_t ldb);
// Inverse of an SPD matrix from its lower Cholesky factor (LAPACK dpotri), full square out.
bool CholeskyInverseF64(int64_t n, double* lower_factor);

// Number of threads the BLAS library uses; 0 leaves the library default.
void SetBlasThreads(int threads);

// While one of these lives, BLAS calls run on their calling thread alone: for callers that run
// many small GEMMs on threads of their own, where the library's hand-offs to its threads would
// cost more than the products. The library's count is process-wide (OpenBLAS 0.3.21 has no
// per-thread one), so scopes may overlap, from any threads: the count returns when the last ends.
// Results are not always the same either way: OpenBLAS may split a product's k or pick other
// kernels by thread count (sgemm from about 129×130 up, potrf at any size measured), so
// callers that need fixed bits run every call of a computation single-threaded, in fixed
// tiles (AdaRound's E·H, the GPTQ factor in worker/solvers/blocked_cholesky).
// Changing the count while other threads are inside BLAS is safe with the pthread OpenBLAS that
// scripts/install-deps installs: a call reads the count once on entry, and a change only starts
// threads (under the library's lock) or stops handing work to them; their buffers stay. The
// OpenMP build (libopenblas0-openmp) frees its threads' buffers on every change, under calls in
// flight: do not link it.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};

}  // namespace qshard::kernels
