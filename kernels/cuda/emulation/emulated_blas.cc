// cuBLAS and cuSOLVER in the host emulation of CUDA (emulated_blas.h): argument checks as the
// libraries make them, then OpenBLAS / LAPACK on the same column-major operands. Products of
// fp16/bf16 operands convert them to float first (the libraries' 32F compute type); int8 products
// accumulate exactly in 32-bit integers.
#include "kernels/cuda/emulation/emulated_blas.h"

#include <cblas.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cuda/emulation/emulated_state.h"

extern "C" void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);

// Streams are synchronous in the emulation: a handle keeps nothing.
struct cublasContext {};
struct cusolverDnContext {};
struct cusolverDnParams {};

namespace {

using qshard_emu::CheckDeviceMatrix;
using qshard_emu::ReportInvalidCall;

CBLAS_TRANSPOSE Blas(cublasOperation_t op) { return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; }
CBLAS_UPLO Blas(cublasFillMode_t uplo) { return uplo == CUBLAS_FILL_MODE_UPPER ? CblasUpper : CblasLower; }
CBLAS_SIDE Blas(cublasSideMode_t side) { return side == CUBLAS_SIDE_LEFT ? CblasLeft : CblasRight; }
CBLAS_DIAG Blas(cublasDiagType_t diag) { return diag == CUBLAS_DIAG_UNIT ? CblasUnit : CblasNonUnit; }

size_t ElementBytes(cudaDataType_t type) {
  switch (type) {
    case CUDA_R_64F: return 8;
    case CUDA_R_32F:
    case CUDA_R_32I: return 4;
    case CUDA_R_16F:
    case CUDA_R_16BF: return 2;
    case CUDA_R_8I: return 1;
  }
  return 0;
}

// The stored rows × cols of op(X) = rows_op × cols_op.
void Stored(cublasOperation_t op, int64_t rows_op, int64_t cols_op, int64_t& rows, int64_t& cols) {
  rows = op == CUBLAS_OP_N ? rows_op : cols_op;
  cols = op == CUBLAS_OP_N ? cols_op : rows_op;
}

// gemm's operands: op(A) m × k, op(B) k × n, C m × n.
bool CheckGemm(const char* f, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void* a, int lda,
               const void* b, int ldb, const void* c, int ldc, size_t a_bytes, size_t b_bytes, size_t c_bytes) {
  if (m < 0 || n < 0 || k < 0) {
    ReportInvalidCall(f, "negative dimension");
    return false;
  }
  int64_t ar, ac, br, bc;
  Stored(ta, m, k, ar, ac);
  Stored(tb, k, n, br, bc);
  // cuBLAS requires the leading dimensions even where a dimension is empty.
  if (lda < std::max<int64_t>(1, ar) || ldb < std::max<int64_t>(1, br) || ldc < std::max(1, m)) {
    ReportInvalidCall(f, ("leading dimension too small: lda " + std::to_string(lda) + " for " + std::to_string(ar) +
                          " rows, ldb " + std::to_string(ldb) + " for " + std::to_string(br) + ", ldc " +
                          std::to_string(ldc) + " for " + std::to_string(m))
                             .c_str());
    return false;
  }
  return (k == 0 || (CheckDeviceMatrix(f, "A", a, ar, ac, lda, a_bytes) && CheckDeviceMatrix(f, "B", b, br, bc, ldb, b_bytes))) &&
         CheckDeviceMatrix(f, "C", c, m, n, ldc, c_bytes);
}

std::vector<float> ToFloat(const void* x, cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(ld * cols));
  for (int64_t j = 0; j < cols; ++j) {
    for (int64_t i = 0; i < rows; ++i) {
      const size_t e = static_cast<size_t>(j * ld + i);
      switch (type) {
        case CUDA_R_32F: out[e] = static_cast<const float*>(x)[e]; break;
        case CUDA_R_16F: out[e] = float(static_cast<const __half*>(x)[e]); break;
        case CUDA_R_16BF: out[e] = float(static_cast<const __nv_bfloat16*>(x)[e]); break;
        default: out[e] = 0.0f;
      }
    }
  }
  return out;
}

void FromFloat(const std::vector<float>& x, cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, void* out) {
  for (int64_t j = 0; j < cols; ++j) {
    for (int64_t i = 0; i < rows; ++i) {
      const size_t e = static_cast<size_t>(j * ld + i);
      switch (type) {
        case CUDA_R_32F: static_cast<float*>(out)[e] = x[e]; break;
        case CUDA_R_16F: static_cast<__half*>(out)[e] = __half(x[e]); break;
        case CUDA_R_16BF: static_cast<__nv_bfloat16*>(out)[e] = __nv_bfloat16(x[e]); break;
        default: break;
      }
    }
  }
}

// C = alpha·op(A)·op(B) + beta·C over int8 operands, exactly, in 32-bit integers.
void IntegerGemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int32_t alpha, const int8_t* a,
                 int lda, const int8_t* b, int ldb, int32_t beta, int32_t* c, int ldc) {
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      int32_t sum = 0;
      for (int p = 0; p < k; ++p) {
        const int32_t x = ta == CUBLAS_OP_N ? a[static_cast<size_t>(p) * lda + i] : a[static_cast<size_t>(i) * lda + p];
        const int32_t y = tb == CUBLAS_OP_N ? b[static_cast<size_t>(j) * ldb + p] : b[static_cast<size_t>(p) * ldb + j];
        sum += x * y;
      }
      int32_t& out = c[static_cast<size_t>(j) * ldc + i];
      out = alpha * sum + (beta == 0 ? 0 : beta * out);
    }
  }
}

}  // namespace

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void* workspace, size_t bytes) {
  if (bytes > 0 && !qshard_emu::IsDeviceRange(workspace, bytes)) return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* a, int lda, const float* b, int ldb, const float* beta,
                           float* c, int ldc) {
  if (!CheckGemm("cublasSgemm", ta, tb, m, n, k, a, lda, b, ldb, c, ldc, 4, 4, 4)) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  cblas_sgemm(CblasColMajor, Blas(ta), Blas(tb), m, n, k, *alpha, a, lda, b, ldb, *beta, c, ldc);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m,
                                         int n, int k, const float* alpha, const float* a, int lda, long long stride_a,
                                         const float* b, int ldb, long long stride_b, const float* beta, float* c,
                                         int ldc, long long stride_c, int batch) {
  if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  for (int i = 0; i < batch; ++i) {
    const cublasStatus_t status = cublasSgemm(handle, ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b,
                                              ldb, beta, c + i * stride_c, ldc);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSsyrk(cublasHandle_t, cublasFillMode_t uplo, cublasOperation_t trans, int n, int k,
                           const float* alpha, const float* a, int lda, const float* beta, float* c, int ldc) {
  const char* f = "cublasSsyrk";
  if (n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  int64_t ar, ac;
  Stored(trans, n, k, ar, ac);
  if (lda < std::max<int64_t>(1, ar) || ldc < std::max(1, n)) {
    ReportInvalidCall(f, "leading dimension too small");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if ((k > 0 && !CheckDeviceMatrix(f, "A", a, ar, ac, lda, 4)) || !CheckDeviceMatrix(f, "C", c, n, n, ldc, 4))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (n > 0) cblas_ssyrk(CblasColMajor, Blas(uplo), Blas(trans), n, k, *alpha, a, lda, *beta, c, ldc);
  return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS's trmm is out of place: C = alpha·op(A)·B or alpha·B·op(A), C and B m × n.
cublasStatus_t cublasStrmm(cublasHandle_t, cublasSideMode_t side, cublasFillMode_t uplo, cublasOperation_t trans,
                           cublasDiagType_t diag, int m, int n, const float* alpha, const float* a, int lda,
                           const float* b, int ldb, float* c, int ldc) {
  const char* f = "cublasStrmm";
  if (m < 0 || n < 0) return CUBLAS_STATUS_INVALID_VALUE;
  const int order = side == CUBLAS_SIDE_LEFT ? m : n;
  if (lda < std::max(1, order) || ldb < std::max(1, m) || ldc < std::max(1, m)) {
    ReportInvalidCall(f, "leading dimension too small");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!CheckDeviceMatrix(f, "A", a, order, order, lda, 4) || !CheckDeviceMatrix(f, "B", b, m, n, ldb, 4) ||
      !CheckDeviceMatrix(f, "C", c, m, n, ldc, 4))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (c != b) {
    for (int j = 0; j < n; ++j) std::copy_n(b + static_cast<size_t>(j) * ldb, m, c + static_cast<size_t>(j) * ldc);
  } else if (ldb != ldc) {
    ReportInvalidCall(f, "in place with ldb != ldc");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  cblas_strmm(CblasColMajor, Blas(side), Blas(uplo), Blas(trans), Blas(diag), m, n, *alpha, a, lda, c, ldc);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasStrsm(cublasHandle_t, cublasSideMode_t side, cublasFillMode_t uplo, cublasOperation_t trans,
                           cublasDiagType_t diag, int m, int n, const float* alpha, const float* a, int lda, float* b,
                           int ldb) {
  const char* f = "cublasStrsm";
  if (m < 0 || n < 0) return CUBLAS_STATUS_INVALID_VALUE;
  const int order = side == CUBLAS_SIDE_LEFT ? m : n;
  if (lda < std::max(1, order) || ldb < std::max(1, m)) {
    ReportInvalidCall(f, "leading dimension too small");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!CheckDeviceMatrix(f, "A", a, order, order, lda, 4) || !CheckDeviceMatrix(f, "B", b, m, n, ldb, 4))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  cblas_strsm(CblasColMajor, Blas(side), Blas(uplo), Blas(trans), Blas(diag), m, n, *alpha, a, lda, b, ldb);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* a, cudaDataType_t a_type, int lda, const void* b,
                            cudaDataType_t b_type, int ldb, const void* beta, void* c, cudaDataType_t c_type, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
  const char* f = "cublasGemmEx";
  if (!CheckGemm(f, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, ElementBytes(a_type), ElementBytes(b_type),
                 ElementBytes(c_type)))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (compute == CUBLAS_COMPUTE_32I) {
    if (a_type != CUDA_R_8I || b_type != CUDA_R_8I || c_type != CUDA_R_32I) return CUBLAS_STATUS_NOT_SUPPORTED;
    IntegerGemm(ta, tb, m, n, k, *static_cast<const int32_t*>(alpha), static_cast<const int8_t*>(a), lda,
                static_cast<const int8_t*>(b), ldb, *static_cast<const int32_t*>(beta), static_cast<int32_t*>(c), ldc);
    return CUBLAS_STATUS_SUCCESS;
  }
  const auto floating = [](cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; };
  if (compute != CUBLAS_COMPUTE_32F || !floating(a_type) || !floating(b_type) || !floating(c_type))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  int64_t ar, ac, br, bc;
  Stored(ta, m, k, ar, ac);
  Stored(tb, k, n, br, bc);
  const std::vector<float> af = ToFloat(a, a_type, ar, ac, lda), bf = ToFloat(b, b_type, br, bc, ldb);
  std::vector<float> cf = ToFloat(c, c_type, m, n, ldc);
  const float beta_value = *static_cast<const float*>(beta);
  if (beta_value == 0.0f) std::fill(cf.begin(), cf.end(), 0.0f);  // beta = 0 ignores C, NaNs included
  cblas_sgemm(CblasColMajor, Blas(ta), Blas(tb), m, n, k, *static_cast<const float*>(alpha), af.data(), lda, bf.data(),
              ldb, beta_value, cf.data(), ldc);
  FromFloat(cf, c_type, m, n, ldc, c);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m,
                                          int n, int k, const void* alpha, const void* a, cudaDataType_t a_type, int lda,
                                          long long stride_a, const void* b, cudaDataType_t b_type, int ldb,
                                          long long stride_b, const void* beta, void* c, cudaDataType_t c_type, int ldc,
                                          long long stride_c, int batch, cublasComputeType_t compute,
                                          cublasGemmAlgo_t algo) {
  if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  for (int i = 0; i < batch; ++i) {
    const cublasStatus_t status = cublasGemmEx(
        handle, ta, tb, m, n, k, alpha, static_cast<const char*>(a) + i * stride_a * ElementBytes(a_type), a_type, lda,
        static_cast<const char*>(b) + i * stride_b * ElementBytes(b_type), b_type, ldb, beta,
        static_cast<char*>(c) + i * stride_c * ElementBytes(c_type), c_type, ldc, compute, algo);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t* handle) {
  *handle = new cusolverDnContext;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t handle) {
  delete handle;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t, cudaStream_t) { return CUSOLVER_STATUS_SUCCESS; }
cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t* params) {
  *params = new cusolverDnParams;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t params) {
  delete params;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnXpotrf_bufferSize(cusolverDnHandle_t, cusolverDnParams_t, cublasFillMode_t, int64_t n,
                                             cudaDataType data_type, const void*, int64_t lda, cudaDataType compute_type,
                                             size_t* device_bytes, size_t* host_bytes) {
  if (n < 0 || lda < std::max<int64_t>(1, n)) return CUSOLVER_STATUS_INVALID_VALUE;
  if (data_type != CUDA_R_64F || compute_type != CUDA_R_64F) return CUSOLVER_STATUS_NOT_SUPPORTED;
  *device_bytes = static_cast<size_t>(n) * 8;
  *host_bytes = 0;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnXpotrf(cusolverDnHandle_t, cusolverDnParams_t, cublasFillMode_t uplo, int64_t n,
                                  cudaDataType data_type, void* a, int64_t lda, cudaDataType compute_type,
                                  void* device_workspace, size_t device_bytes, void*, size_t, int* info) {
  const char* f = "cusolverDnXpotrf";
  if (n < 0 || lda < std::max<int64_t>(1, n) || n > INT32_MAX) return CUSOLVER_STATUS_INVALID_VALUE;
  if (data_type != CUDA_R_64F || compute_type != CUDA_R_64F) return CUSOLVER_STATUS_NOT_SUPPORTED;
  if (!CheckDeviceMatrix(f, "A", a, n, n, lda, 8) || !qshard_emu::IsDeviceRange(info, sizeof(int)) ||
      (device_bytes > 0 && !qshard_emu::IsDeviceRange(device_workspace, device_bytes))) {
    ReportInvalidCall(f, "an operand is not in device memory");
    return CUSOLVER_STATUS_INVALID_VALUE;
  }
  const char triangle = uplo == CUBLAS_FILL_MODE_UPPER ? 'U' : 'L';
  const int order = static_cast<int>(n), ld = static_cast<int>(lda);
  dpotrf_(&triangle, &order, static_cast<double*>(a), &ld, info);
  return CUSOLVER_STATUS_SUCCESS;
}
