// qshard_emulated_blaslt_check: the emulated cuBLASLt (emulated_blaslt.h) against a plain
// integer product on small awkward shapes (padded leading dimensions, beta ≠ 0 out of place,
// row-major C and D, a strided batch), and its refusals of what the cuBLAS documentation rules
// out, so that the harness the W8A8 check relies on is itself seen to fail where it should.
// Exit status: 0 all passed, 1 a check failed.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

// One cublasLtMatmul call in the W8A8 form (A transposed, k × m stored; B k × n; C, D m × n),
// valid as given; each refusal case changes one field.
struct Gemm {
  int m = 12, n = 5, k = 20;
  int64_t lda = 24, ldb = 20, ldc = 16, ldd = 16;
  int32_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  int32_t cd_order = CUBLASLT_ORDER_COL;
  int32_t batch = 1;
  int32_t alpha = 1, beta = 0;
  bool in_place = true;             // C is D (and ldc is ldd)
  cublasComputeType_t compute = CUBLAS_COMPUTE_32I;
  size_t a_offset = 0;              // bytes from A's allocation to A
  size_t a_bytes_short = 0;         // bytes A's allocation lacks
  uint32_t pref_alignment_a = 0;    // 0: the preference's default
  bool pass_workspace = true;
  bool init_b_layout = true;
  size_t transa_bytes = sizeof(int32_t);
};

size_t Extent(int64_t rows, int64_t cols, int64_t ld, int32_t order) {
  return static_cast<size_t>(order == CUBLASLT_ORDER_ROW ? (rows - 1) * ld + cols : (cols - 1) * ld + rows);
}

struct Outcome {
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  bool matches = false;  // D equals the host's product (only looked at on success)
};

Outcome Run(const Gemm& g, std::mt19937& rng) {
  Outcome out;
  const auto fail = [&](cublasStatus_t status) {
    out.status = status;
    return status != CUBLAS_STATUS_SUCCESS;
  };
  const int64_t ldc = g.in_place ? g.ldd : g.ldc;
  const size_t a_stride = Extent(g.k, g.m, g.lda, CUBLASLT_ORDER_COL), b_stride = Extent(g.k, g.n, g.ldb, CUBLASLT_ORDER_COL);
  const size_t c_stride = Extent(g.m, g.n, ldc, g.cd_order), d_stride = Extent(g.m, g.n, g.ldd, g.cd_order);
  std::uniform_int_distribution<int> value(-128, 127);
  std::vector<int8_t> a(a_stride * g.batch), b(b_stride * g.batch);
  std::vector<int32_t> c(c_stride * g.batch), d(d_stride * g.batch, 0);
  for (auto& x : a) x = static_cast<int8_t>(value(rng));
  for (auto& x : b) x = static_cast<int8_t>(value(rng));
  for (auto& x : c) x = value(rng) * 1000;

  void *da = nullptr, *db = nullptr, *dc = nullptr, *dd = nullptr, *workspace = nullptr;
  cudaMalloc(&da, g.a_offset + a.size() - g.a_bytes_short);
  cudaMalloc(&db, b.size());
  cudaMalloc(&dd, d.size() * 4);
  dc = g.in_place ? dd : nullptr;
  if (!g.in_place) cudaMalloc(&dc, c.size() * 4);
  cudaMalloc(&workspace, size_t{1} << 22);
  char* a_at = static_cast<char*>(da) + g.a_offset;
  cudaMemcpy(a_at, a.data(), a.size() - g.a_bytes_short, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice);
  if (g.in_place) c.assign(d.size(), 0);  // D is poisoned and beta is 0 in these cases

  cublasLtHandle_t handle = nullptr;
  cublasLtCreate(&handle);
  cublasLtMatmulDescOpaque_t desc{};
  cublasLtMatrixLayoutOpaque_t la{}, lb{}, lc{}, ld{};
  cublasLtMatmulPreferenceOpaque_t preference{};
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const uint64_t max_workspace = size_t{1} << 22;
  const int64_t a_stride_elements = static_cast<int64_t>(a_stride), b_stride_elements = static_cast<int64_t>(b_stride);
  const int64_t c_stride_elements = static_cast<int64_t>(c_stride), d_stride_elements = static_cast<int64_t>(d_stride);
  const bool ta = g.transa != CUBLAS_OP_N, tb = g.transb != CUBLAS_OP_N;
  if (!fail(cublasLtMatmulDescInit(&desc, g.compute, CUDA_R_32I)) &&
      !fail(cublasLtMatmulDescSetAttribute(&desc, CUBLASLT_MATMUL_DESC_TRANSA, &g.transa, g.transa_bytes)) &&
      !fail(cublasLtMatmulDescSetAttribute(&desc, CUBLASLT_MATMUL_DESC_TRANSB, &g.transb, sizeof(g.transb))) &&
      !fail(cublasLtMatrixLayoutInit(&la, CUDA_R_8I, ta ? g.k : g.m, ta ? g.m : g.k, g.lda)) &&
      !fail(g.init_b_layout ? cublasLtMatrixLayoutInit(&lb, CUDA_R_8I, tb ? g.n : g.k, tb ? g.k : g.n, g.ldb)
                            : CUBLAS_STATUS_SUCCESS) &&
      !fail(cublasLtMatrixLayoutInit(&lc, CUDA_R_32I, g.m, g.n, ldc)) &&
      !fail(cublasLtMatrixLayoutInit(&ld, CUDA_R_32I, g.m, g.n, g.ldd)) &&
      !fail(cublasLtMatrixLayoutSetAttribute(&lc, CUBLASLT_MATRIX_LAYOUT_ORDER, &g.cd_order, sizeof(int32_t))) &&
      !fail(cublasLtMatrixLayoutSetAttribute(&ld, CUBLASLT_MATRIX_LAYOUT_ORDER, &g.cd_order, sizeof(int32_t)))) {
    cublasLtMatrixLayoutOpaque_t* layouts[4] = {&la, &lb, &lc, &ld};
    const int64_t strides[4] = {a_stride_elements, b_stride_elements, c_stride_elements, d_stride_elements};
    for (int i = 0; i < 4 && g.batch > 1; ++i) {
      if (fail(cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &g.batch,
                                                sizeof(int32_t))) ||
          fail(cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &strides[i],
                                                sizeof(int64_t)))) {
        break;
      }
    }
  }
  if (out.status == CUBLAS_STATUS_SUCCESS && !fail(cublasLtMatmulPreferenceInit(&preference)) &&
      !fail(cublasLtMatmulPreferenceSetAttribute(&preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_workspace,
                                                 sizeof(max_workspace))) &&
      !fail(g.pref_alignment_a == 0
                ? CUBLAS_STATUS_SUCCESS
                : cublasLtMatmulPreferenceSetAttribute(&preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                       &g.pref_alignment_a, sizeof(uint32_t))) &&
      !fail(cublasLtMatmulAlgoGetHeuristic(handle, &desc, &la, &lb, &lc, &ld, &preference, 1, &result, &found))) {
    fail(cublasLtMatmul(handle, &desc, &g.alpha, a_at, &la, db, &lb, &g.beta, dc, &lc, dd, &ld, &result.algo,
                        g.pass_workspace ? workspace : nullptr, g.pass_workspace ? max_workspace : 0, nullptr));
  }
  if (out.status == CUBLAS_STATUS_SUCCESS) {
    cudaMemcpy(d.data(), dd, d.size() * 4, cudaMemcpyDeviceToHost);
    out.matches = true;
    for (int t = 0; t < g.batch; ++t) {
      for (int i = 0; i < g.m; ++i) {
        for (int j = 0; j < g.n; ++j) {
          int64_t sum = 0;
          for (int q = 0; q < g.k; ++q) sum += int64_t{a[t * a_stride + i * g.lda + q]} * b[t * b_stride + j * g.ldb + q];
          const auto at = [&](int64_t ld_, size_t stride) {
            return t * stride + static_cast<size_t>(g.cd_order == CUBLASLT_ORDER_ROW ? i * ld_ + j : j * ld_ + i);
          };
          out.matches &= d[at(g.ldd, d_stride)] == g.alpha * sum + int64_t{g.beta} * c[at(ldc, c_stride)];
        }
      }
    }
  }
  cublasLtDestroy(handle);
  for (void* p : {da, db, dd, workspace}) cudaFree(p);
  if (!g.in_place) cudaFree(dc);
  return out;
}

// A change to the valid call, and the status it must bring.
struct Case {
  const char* what;
  void (*change)(Gemm&);
  cublasStatus_t expected;
};

constexpr Case kCases[] = {
    {"TN, padded leading dimensions", [](Gemm&) {}, CUBLAS_STATUS_SUCCESS},
    {"alpha 3, beta -2, C out of place with its own ld",
     [](Gemm& g) { g.in_place = false, g.ldc = 20, g.alpha = 3, g.beta = -2; }, CUBLAS_STATUS_SUCCESS},
    {"row-major C and D, a strided batch of 3",
     [](Gemm& g) { g.in_place = false, g.alpha = 3, g.beta = -2, g.cd_order = CUBLASLT_ORDER_ROW, g.ldc = 8, g.ldd = 12, g.batch = 3; },
     CUBLAS_STATUS_SUCCESS},
    {"A 16-byte aligned, as the preference says", [](Gemm& g) { g.a_offset = 16, g.pref_alignment_a = 16; },
     CUBLAS_STATUS_SUCCESS},
    {"refused: NN (int8 takes only TN)", [](Gemm& g) { g.transa = CUBLAS_OP_N, g.lda = 12; }, CUBLAS_STATUS_NOT_SUPPORTED},
    {"refused: lda not a multiple of 4", [](Gemm& g) { g.lda = 22; }, CUBLAS_STATUS_NOT_SUPPORTED},
    {"refused: m not a multiple of 4", [](Gemm& g) { g.m = 10, g.ldd = 12; }, CUBLAS_STATUS_NOT_SUPPORTED},
    {"refused: lda below k", [](Gemm& g) { g.lda = 16; }, CUBLAS_STATUS_INVALID_VALUE},
    {"refused: less workspace than the algorithm asked for", [](Gemm& g) { g.pass_workspace = false; },
     CUBLAS_STATUS_INVALID_VALUE},
    {"refused: A less aligned than the preference's default 256", [](Gemm& g) { g.a_offset = 16; },
     CUBLAS_STATUS_INVALID_VALUE},
    {"refused: A not 4-byte aligned", [](Gemm& g) { g.a_offset = 2, g.pref_alignment_a = 2; },
     CUBLAS_STATUS_NOT_SUPPORTED},
    {"refused: A's last element outside its allocation", [](Gemm& g) { g.a_bytes_short = 1; },
     CUBLAS_STATUS_INVALID_VALUE},
    {"refused: B's layout never initialized", [](Gemm& g) { g.init_b_layout = false; }, CUBLAS_STATUS_INVALID_VALUE},
    {"refused: TRANSA set with 8 bytes", [](Gemm& g) { g.transa_bytes = sizeof(int64_t); }, CUBLAS_STATUS_INVALID_VALUE},
    {"refused: compute type 32F with int8 operands and int32 scale", [](Gemm& g) { g.compute = CUBLAS_COMPUTE_32F; },
     CUBLAS_STATUS_NOT_SUPPORTED},
};

}  // namespace

int main() {
  std::mt19937 rng(20261206);
  bool passed = true;
  for (const Case& c : kCases) {
    Gemm g;
    c.change(g);
    const Outcome o = Run(g, rng);
    const bool ok = o.status == c.expected && (c.expected != CUBLAS_STATUS_SUCCESS || o.matches);
    std::printf("%s %s: %s%s\n", ok ? "PASS" : "FAIL", c.what, cublasGetStatusString(o.status),
                o.status == CUBLAS_STATUS_SUCCESS ? (o.matches ? ", product exact" : ", product WRONG") : "");
    passed &= ok;
  }
  std::printf("%s\n", passed ? "ALL PASSED" : "SOME FAILED");
  return passed ? 0 : 1;
}
