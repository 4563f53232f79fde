// cuBLASLt in the host emulation of CUDA (emulated_blaslt.h). Each rule checked here quotes the
// cuBLAS documentation (CUDA 13, section "cuBLASLt API": cublasLtMatmul(), the descriptor
// attribute enums, cublasLtMatmulAlgoGetHeuristic()); the comments in cublasLt.h say the same.
// Only the documented int8 IMMA product on the regular orderings is computed (compute type
// CUBLAS_COMPUTE_32I, scale CUDA_R_32I, A/B CUDA_R_8I, C/D CUDA_R_32I); any other combination is
// refused with CUBLAS_STATUS_NOT_SUPPORTED and a message, never computed approximately.
#include "kernels/cuda/emulation/emulated_blaslt.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/emulation/emulated_state.h"

struct cublasLtContext {
  int unused = 0;
};

namespace {

using qshard_emu::CheckDeviceMatrix;
using qshard_emu::ReportInvalidCall;

constexpr const char* kOperandNames[4] = {"A", "B", "C", "D"};

// Marks a descriptor an *Init call wrote, so that one used uninitialized (the library's
// behaviour is undefined) is reported instead.
constexpr uint64_t kLayoutMagic = 0x4c54'4c61'796f'7574, kDescMagic = 0x4c54'4465'7363'7231,
                   kPreferenceMagic = 0x4c54'5072'6566'7231, kAlgoMagic = 0x4c54'416c'676f'7231;
// "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES ... uint32_t, default: 256" (likewise B, C, D).
constexpr uint32_t kDefaultMinAlignment = 256;
// The workspace the emulated algorithm asks for (at most what the preference allows): a real
// split-K algorithm uses some, so cublasLtMatmul's workspace checks have something to check.
// Its contents are overwritten on every call, as such an algorithm would.
constexpr uint64_t kAlgoWorkspaceBytes = uint64_t{1} << 20;

// Each attribute's field has the attribute's documented type.
struct LayoutState {
  uint64_t magic;
  uint32_t type;
  int32_t order;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch_count;
  int64_t batch_stride;
};
struct DescState {
  uint64_t magic;
  int32_t compute, scale, pointer_mode, transa, transb, transc;
};
struct PreferenceState {
  uint64_t magic;
  uint64_t max_workspace;
  uint32_t search_mode;
  uint32_t min_alignment[4];  // A, B, C, D
};
struct AlgoState {
  uint64_t magic;
  uint64_t workspace;
  uint32_t min_alignment[4];  // what the heuristic was told the pointers would have
  int32_t compute, scale, ab_type, cd_type;
};
static_assert(sizeof(LayoutState) <= sizeof(cublasLtMatrixLayoutOpaque_t));
static_assert(sizeof(DescState) <= sizeof(cublasLtMatmulDescOpaque_t));
static_assert(sizeof(PreferenceState) <= sizeof(cublasLtMatmulPreferenceOpaque_t));
static_assert(sizeof(AlgoState) <= sizeof(cublasLtMatmulAlgo_t));

// The state lives in the caller's struct; copied in and out, so no aliasing games.
template <typename State, typename Opaque>
State Load(const Opaque* opaque) {
  State state;
  std::memcpy(&state, opaque, sizeof(State));
  return state;
}
template <typename State, typename Opaque>
void Store(const State& state, Opaque* opaque) {
  std::memset(opaque, 0, sizeof(Opaque));
  std::memcpy(opaque, &state, sizeof(State));
}

cublasStatus_t Refuse(const char* f, cublasStatus_t status, const std::string& why) {
  ReportInvalidCall(f, why.c_str());
  return status;
}

// Where an attribute lives in a descriptor's state: the field, of the attribute's documented
// type ("uint32_t", "int64_t", ...), so a value is copied in byte for byte.
struct Slot {
  int attribute;
  const char* name;
  size_t offset, bytes;
};
#define QSHARD_LT_SLOT(State, attribute, field) Slot{attribute, #attribute, offsetof(State, field), sizeof(State::field)}
// The attributes emulated; setting any other is refused (NOT_SUPPORTED), naming it, rather
// than silently ignored.
constexpr Slot kDescSlots[] = {
    QSHARD_LT_SLOT(DescState, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, compute),
    QSHARD_LT_SLOT(DescState, CUBLASLT_MATMUL_DESC_SCALE_TYPE, scale),
    QSHARD_LT_SLOT(DescState, CUBLASLT_MATMUL_DESC_POINTER_MODE, pointer_mode),
    QSHARD_LT_SLOT(DescState, CUBLASLT_MATMUL_DESC_TRANSA, transa),
    QSHARD_LT_SLOT(DescState, CUBLASLT_MATMUL_DESC_TRANSB, transb),
    QSHARD_LT_SLOT(DescState, CUBLASLT_MATMUL_DESC_TRANSC, transc),
};
constexpr Slot kLayoutSlots[] = {
    QSHARD_LT_SLOT(LayoutState, CUBLASLT_MATRIX_LAYOUT_TYPE, type),
    QSHARD_LT_SLOT(LayoutState, CUBLASLT_MATRIX_LAYOUT_ORDER, order),
    QSHARD_LT_SLOT(LayoutState, CUBLASLT_MATRIX_LAYOUT_ROWS, rows),
    QSHARD_LT_SLOT(LayoutState, CUBLASLT_MATRIX_LAYOUT_COLS, cols),
    QSHARD_LT_SLOT(LayoutState, CUBLASLT_MATRIX_LAYOUT_LD, ld),
    QSHARD_LT_SLOT(LayoutState, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, batch_count),
    QSHARD_LT_SLOT(LayoutState, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, batch_stride),
};
constexpr Slot kPreferenceSlots[] = {
    QSHARD_LT_SLOT(PreferenceState, CUBLASLT_MATMUL_PREF_SEARCH_MODE, search_mode),
    QSHARD_LT_SLOT(PreferenceState, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, max_workspace),
    QSHARD_LT_SLOT(PreferenceState, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, min_alignment[0]),
    QSHARD_LT_SLOT(PreferenceState, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, min_alignment[1]),
    QSHARD_LT_SLOT(PreferenceState, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, min_alignment[2]),
    QSHARD_LT_SLOT(PreferenceState, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, min_alignment[3]),
};
#undef QSHARD_LT_SLOT

// What every *SetAttribute does: the descriptor's state loaded, the value copied into the
// attribute's slot, `check` run on the result, the state stored back. "CUBLAS_STATUS_INVALID_VALUE
// if buf is NULL or sizeInBytes doesn't match size of internal storage for selected attribute".
template <typename State, typename Opaque, size_t kSlots, typename Check>
cublasStatus_t SetAttribute(const char* f, Opaque* opaque, uint64_t magic, const Slot (&slots)[kSlots], int attribute,
                            const void* buffer, size_t bytes, Check check) {
  if (opaque == nullptr) return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "NULL descriptor");
  State state = Load<State>(opaque);
  if (state.magic != magic) return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "descriptor not initialized by its *Init");
  const Slot* slot = std::find_if(slots, slots + kSlots, [&](const Slot& s) { return s.attribute == attribute; });
  if (slot == slots + kSlots) {
    return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED, "attribute " + std::to_string(attribute) + ": not emulated");
  }
  if (buffer == nullptr || bytes != slot->bytes) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE,
                  std::string(slot->name) + ": a value of " + std::to_string(slot->bytes) + " bytes is expected, got " +
                      std::to_string(bytes) + (buffer == nullptr ? " at NULL" : ""));
  }
  std::memcpy(reinterpret_cast<char*>(&state) + slot->offset, buffer, bytes);
  if (const cublasStatus_t status = check(state); status != CUBLAS_STATUS_SUCCESS) return status;
  Store(state, opaque);
  return CUBLAS_STATUS_SUCCESS;
}

bool IsOperation(int32_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }
// For real types cuBLAS reads CUBLAS_OP_C as CUBLAS_OP_T.
bool Transposed(int32_t op) { return op != CUBLAS_OP_N; }

std::string Describe(const char* name, const LayoutState& l) {
  return std::string("matrix ") + name + " (" + std::to_string(l.rows) + " × " + std::to_string(l.cols) + ", ld " +
         std::to_string(l.ld) + (l.order == CUBLASLT_ORDER_ROW ? ", row-major)" : ", column-major)");
}

// The smallest ld that keeps the elements of one matrix apart: "must be large enough so that
// matrix memory locations are not overlapping (e.g. greater or equal to
// CUBLASLT_MATRIX_LAYOUT_ROWS in case of CUBLASLT_ORDER_COL)" (CUBLASLT_MATRIX_LAYOUT_LD).
int64_t MinLd(const LayoutState& l) {
  return static_cast<int64_t>(std::max<uint64_t>(1, l.order == CUBLASLT_ORDER_ROW ? l.cols : l.rows));
}

bool SameLayout(const LayoutState& x, const LayoutState& y) {
  return x.type == y.type && x.order == y.order && x.rows == y.rows && x.cols == y.cols && x.ld == y.ld &&
         x.batch_count == y.batch_count && x.batch_stride == y.batch_stride;
}

// The descriptors of one product, checked against each other and the documentation.
struct Problem {
  DescState desc;
  LayoutState a, b, c, d;
  int64_t m = 0, n = 0, k = 0;
};

cublasStatus_t LoadLayout(const char* f, const char* name, cublasLtMatrixLayout_t layout, LayoutState& state) {
  if (layout == nullptr) return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, std::string("NULL layout for ") + name);
  state = Load<LayoutState>(layout);
  if (state.magic != kLayoutMagic) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE,
                  std::string("the layout of ") + name + " was not initialized by cublasLtMatrixLayoutInit");
  }
  return CUBLAS_STATUS_SUCCESS;
}

// The checks cublasLtMatmulAlgoGetHeuristic and cublasLtMatmul share: everything but pointers.
cublasStatus_t CheckProblem(const char* f, cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                            cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                            cublasLtMatrixLayout_t d, Problem& p) {
  // "CUBLAS_STATUS_NOT_INITIALIZED: If cuBLASLt handle has not been initialized."
  if (handle == nullptr) return Refuse(f, CUBLAS_STATUS_NOT_INITIALIZED, "NULL handle");
  if (desc == nullptr) return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "NULL matmul descriptor");
  p.desc = Load<DescState>(desc);
  if (p.desc.magic != kDescMagic) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "the matmul descriptor was not initialized by cublasLtMatmulDescInit");
  }
  // "If Cdesc is omitted, this function assumes it to be equal to Ddesc."
  if (c == nullptr) c = d;
  const cublasLtMatrixLayout_t layouts[4] = {a, b, c, d};
  LayoutState* states[4] = {&p.a, &p.b, &p.c, &p.d};
  for (int i = 0; i < 4; ++i) {
    if (const cublasStatus_t status = LoadLayout(f, kOperandNames[i], layouts[i], *states[i]);
        status != CUBLAS_STATUS_SUCCESS) {
      return status;
    }
  }

  // "Datatypes Supported": of the table's rows, the emulation computes
  // CUBLAS_COMPUTE_32I | CUDA_R_32I | CUDA_R_8I | CUDA_R_32I (computeType, scaleType,
  // Atype/Btype, Ctype); the table has one type for A and B, and out of place "both matrices
  // [C and D] must have the same data type".
  if (p.desc.compute != CUBLAS_COMPUTE_32I || p.desc.scale != CUDA_R_32I || p.a.type != CUDA_R_8I ||
      p.b.type != CUDA_R_8I || p.c.type != CUDA_R_32I || p.d.type != CUDA_R_32I) {
    return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED,
                  "compute type " + std::to_string(p.desc.compute) + ", scale type " + std::to_string(p.desc.scale) +
                      ", A/B/C/D types " + std::to_string(p.a.type) + "/" + std::to_string(p.b.type) + "/" +
                      std::to_string(p.c.type) + "/" + std::to_string(p.d.type) +
                      ": not emulated (only CUBLAS_COMPUTE_32I, CUDA_R_32I scale, int8 A and B, int32 C and D)");
  }
  // "CUBLASLT_MATMUL_DESC_TRANSC ... Currently only CUBLAS_OP_N is supported."
  if (p.desc.transc != CUBLAS_OP_N) return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED, "TRANSC must be CUBLAS_OP_N");
  // The IMMA-specific orderings (COL32, COL4_4R2_8C, COL32_2R_4R4) are documented for
  // "Ampere ... or Turing ... (but not Hopper, compute capability 9.0, or later)", and the
  // emulated device is sm_90: only the regular orderings remain.
  for (int i = 0; i < 4; ++i) {
    if (states[i]->order != CUBLASLT_ORDER_COL && states[i]->order != CUBLASLT_ORDER_ROW) {
      return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED,
                    std::string("matrix ") + kOperandNames[i] + ": order " + std::to_string(states[i]->order) +
                        " is an IMMA-specific ordering, not available on compute capability 9.0");
    }
  }

  // D = alpha·op(A)·op(B) + beta·C: op(A) m × k, op(B) k × n, C and D m × n.
  const bool ta = Transposed(p.desc.transa), tb = Transposed(p.desc.transb);
  p.m = static_cast<int64_t>(ta ? p.a.cols : p.a.rows);
  p.k = static_cast<int64_t>(ta ? p.a.rows : p.a.cols);
  const int64_t kb = static_cast<int64_t>(tb ? p.b.cols : p.b.rows);
  p.n = static_cast<int64_t>(tb ? p.b.rows : p.b.cols);
  const auto same_shape = [&](const LayoutState& l) {
    return static_cast<int64_t>(l.rows) == p.m && static_cast<int64_t>(l.cols) == p.n;
  };
  // "CUBLAS_STATUS_INVALID_VALUE: If the parameters are ... in conflict or in an impossible
  // configuration."
  if (kb != p.k || !same_shape(p.c) || !same_shape(p.d)) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE,
                  "shapes in conflict: op(A) " + std::to_string(p.m) + " × " + std::to_string(p.k) + ", op(B) " +
                      std::to_string(kb) + " × " + std::to_string(p.n) + ", " + Describe("C", p.c) + ", " +
                      Describe("D", p.d));
  }
  // Out of place, C and D must have "the same data type, number of rows, number of columns,
  // batch size, and memory order".
  if (p.c.order != p.d.order || p.c.batch_count != p.d.batch_count || p.a.batch_count != p.d.batch_count ||
      p.b.batch_count != p.d.batch_count) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "C and D differ in memory order, or the batch counts differ");
  }
  for (int i : {0, 1, 3}) {
    if (states[i]->ld < MinLd(*states[i])) {
      return Refuse(f, CUBLAS_STATUS_INVALID_VALUE,
                    Describe(kOperandNames[i], *states[i]) + ": the leading dimension overlaps elements");
    }
  }
  // "the leading dimension of C can be 0 to achieve row or column broadcast" (out of place).
  if (p.c.ld != 0 && p.c.ld < MinLd(p.c)) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, Describe("C", p.c) + ": the leading dimension overlaps elements");
  }

  // "To use IMMA kernels, ... 1. Using a regular data ordering: ... Leading dimensions of
  // matrices A, B, C must be multiples of 4. Only the "TN" format is supported - A must be
  // transposed and B non-transposed. Pointer mode can be CUBLASLT_POINTER_MODE_HOST,
  // CUBLASLT_POINTER_MODE_DEVICE or CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST. ...
  // Dimensions m and k must be multiples of 4." (The pointers' 4-byte alignment is checked by
  // cublasLtMatmul.) With no int8 kernel left, the library has nothing to run.
  if (!ta || tb) {
    return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED,
                  "int8 IMMA kernels on a regular ordering take only the \"TN\" format (A transposed, B not)");
  }
  if (p.a.ld % 4 != 0 || p.b.ld % 4 != 0 || p.c.ld % 4 != 0) {
    return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED,
                  "int8 IMMA kernels need the leading dimensions of A, B and C to be multiples of 4 (lda " +
                      std::to_string(p.a.ld) + ", ldb " + std::to_string(p.b.ld) + ", ldc " + std::to_string(p.c.ld) + ")");
  }
  if (p.m % 4 != 0 || p.k % 4 != 0) {
    return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED,
                  "int8 IMMA kernels need m and k to be multiples of 4 (m " + std::to_string(p.m) + ", k " +
                      std::to_string(p.k) + ")");
  }
  if (p.desc.pointer_mode == CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST) {
    return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED, "pointer mode ALPHA_DEVICE_VECTOR_BETA_HOST: not emulated");
  }
  if (p.desc.pointer_mode != CUBLASLT_POINTER_MODE_HOST && p.desc.pointer_mode != CUBLASLT_POINTER_MODE_DEVICE) {
    return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED,
                  "int8 IMMA kernels on a regular ordering take pointer mode HOST, DEVICE or "
                  "ALPHA_DEVICE_VECTOR_BETA_HOST, not " + std::to_string(p.desc.pointer_mode));
  }
  return CUBLAS_STATUS_SUCCESS;
}

// Element (row, col) of one batch instance of a matrix in either regular ordering.
template <typename T>
T At(const LayoutState& l, const T* base, int64_t row, int64_t col) {
  return l.order == CUBLASLT_ORDER_ROW ? base[row * l.ld + col] : base[col * l.ld + row];
}

// Whether every element of every batch instance lies in one device allocation, as the
// library's kernels would read or write it.
bool CheckOperand(const char* f, const char* name, const LayoutState& l, const void* pointer, size_t element) {
  const bool row_major = l.order == CUBLASLT_ORDER_ROW;
  const int64_t rows = static_cast<int64_t>(row_major ? l.cols : l.rows);  // as column-major
  const int64_t cols = static_cast<int64_t>(row_major ? l.rows : l.cols);
  // A broadcast C (ld 0) reads one column (row-major: one row) again and again.
  const int64_t ld = l.ld == 0 ? std::max<int64_t>(1, rows) : l.ld;
  for (int32_t i = 0; i < l.batch_count; ++i) {
    const auto* instance = static_cast<const char*>(pointer) + i * l.batch_stride * static_cast<int64_t>(element);
    if (!CheckDeviceMatrix(f, name, instance, rows, l.ld == 0 ? std::min<int64_t>(cols, 1) : cols, ld, element)) {
      return false;
    }
  }
  return true;
}

// Reads alpha or beta in the descriptor's pointer mode.
bool ReadScalar(const char* f, const char* name, int32_t pointer_mode, const void* pointer, int32_t& value) {
  if (pointer == nullptr) {
    ReportInvalidCall(f, (std::string(name) + " is NULL").c_str());
    return false;
  }
  // Host and device memory are one here, so a scalar on the wrong side would read fine: refuse
  // it, as on a GPU it would fault or read garbage.
  const bool on_device = qshard_emu::IsDeviceRange(pointer, sizeof(int32_t));
  if (on_device != (pointer_mode == CUBLASLT_POINTER_MODE_DEVICE)) {
    ReportInvalidCall(f, (std::string(name) + (on_device ? " is in device memory, but pointer mode is HOST"
                                                         : " is not in device memory, but pointer mode is DEVICE"))
                             .c_str());
    return false;
  }
  std::memcpy(&value, pointer, sizeof(int32_t));
  return true;
}

// D = alpha·op(A)·op(B) + beta·C for one batch instance. The products are summed in 32 bits,
// the compute type's width (wrapping modulo 2^32 where a sum would overflow); op(A)'s rows and
// op(B)'s columns are gathered first so that the inner loop is a contiguous int8 dot product.
void Multiply(const Problem& p, int32_t alpha, const int8_t* a, const int8_t* b, int32_t beta, const int32_t* c,
              int32_t* d) {
  const int64_t m = p.m, n = p.n, k = p.k;
  const bool ta = Transposed(p.desc.transa), tb = Transposed(p.desc.transb);
  std::vector<int8_t> rows_of_a(static_cast<size_t>(m * k)), cols_of_b(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t q = 0; q < k; ++q) rows_of_a[i * k + q] = ta ? At(p.a, a, q, i) : At(p.a, a, i, q);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t q = 0; q < k; ++q) cols_of_b[j * k + q] = tb ? At(p.b, b, j, q) : At(p.b, b, q, j);
  for (int64_t i = 0; i < m; ++i) {
    const int8_t* x = rows_of_a.data() + i * k;
    for (int64_t j = 0; j < n; ++j) {
      const int8_t* y = cols_of_b.data() + j * k;
      uint32_t sum = 0;
      for (int64_t q = 0; q < k; ++q) sum += static_cast<uint32_t>(int32_t{x[q]} * int32_t{y[q]});
      // beta = 0: C is not read (it may be uninitialized), as in BLAS. A broadcast C (ld 0)
      // needs nothing special: At() then reads the same column (row-major: row) for every j.
      const uint32_t old = beta == 0 ? 0 : static_cast<uint32_t>(At(p.c, c, i, j));
      const uint32_t result = static_cast<uint32_t>(alpha) * sum + static_cast<uint32_t>(beta) * old;
      int32_t* out = p.d.order == CUBLASLT_ORDER_ROW ? d + i * p.d.ld + j : d + j * p.d.ld + i;
      *out = static_cast<int32_t>(result);
    }
  }
}

}  // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescInit_internal(cublasLtMatmulDesc_t desc, size_t size, cublasComputeType_t compute,
                                               cudaDataType_t scale) {
  if (desc == nullptr || size < sizeof(cublasLtMatmulDescOpaque_t)) return CUBLAS_STATUS_ALLOC_FAILED;
  // Defaults: "CUBLASLT_MATMUL_DESC_POINTER_MODE ... default: CUBLASLT_POINTER_MODE_HOST",
  // "CUBLASLT_MATMUL_DESC_TRANSA ... default: CUBLAS_OP_N" (likewise TRANSB, TRANSC).
  Store(DescState{kDescMagic, static_cast<int32_t>(compute), static_cast<int32_t>(scale), CUBLASLT_POINTER_MODE_HOST,
                  CUBLAS_OP_N, CUBLAS_OP_N, CUBLAS_OP_N},
        desc);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute,
                                              const void* buffer, size_t bytes) {
  const char* f = "cublasLtMatmulDescSetAttribute";
  return SetAttribute<DescState>(f, desc, kDescMagic, kDescSlots, attribute, buffer, bytes, [&](const DescState& s) {
    if (IsOperation(s.transa) && IsOperation(s.transb) && IsOperation(s.transc)) return CUBLAS_STATUS_SUCCESS;
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "a transpose that is not a cublasOperation_t");
  });
}

cublasStatus_t cublasLtMatrixLayoutInit_internal(cublasLtMatrixLayout_t layout, size_t size, cudaDataType type,
                                                 uint64_t rows, uint64_t cols, int64_t ld) {
  if (layout == nullptr || size < sizeof(cublasLtMatrixLayoutOpaque_t)) return CUBLAS_STATUS_ALLOC_FAILED;
  // "CUBLASLT_MATRIX_LAYOUT_LD ... Currently only non-negative values are supported."
  if (ld < 0) return Refuse("cublasLtMatrixLayoutInit", CUBLAS_STATUS_INVALID_VALUE, "negative leading dimension");
  // Defaults: "ORDER ... default: CUBLASLT_ORDER_COL", "BATCH_COUNT ... default: 1",
  // "STRIDED_BATCH_OFFSET ... default: 0".
  Store(LayoutState{kLayoutMagic, static_cast<uint32_t>(type), CUBLASLT_ORDER_COL, rows, cols, ld, 1, 0}, layout);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attribute, const void* buffer,
                                                size_t bytes) {
  const char* f = "cublasLtMatrixLayoutSetAttribute";
  return SetAttribute<LayoutState>(f, layout, kLayoutMagic, kLayoutSlots, attribute, buffer, bytes,
                                   [&](const LayoutState& s) {
                                     if (s.ld >= 0 && s.batch_count >= 1) return CUBLAS_STATUS_SUCCESS;
                                     return Refuse(f, CUBLAS_STATUS_INVALID_VALUE,
                                                   "negative leading dimension or batch count below 1");
                                   });
}

cublasStatus_t cublasLtMatmulPreferenceInit_internal(cublasLtMatmulPreference_t preference, size_t size) {
  if (preference == nullptr || size < sizeof(cublasLtMatmulPreferenceOpaque_t)) return CUBLAS_STATUS_ALLOC_FAILED;
  // "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES ... default: 0 - no workspace allowed".
  Store(PreferenceState{kPreferenceMagic, 0, CUBLASLT_SEARCH_BEST_FIT,
                        {kDefaultMinAlignment, kDefaultMinAlignment, kDefaultMinAlignment, kDefaultMinAlignment}},
        preference);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t preference,
                                                    cublasLtMatmulPreferenceAttributes_t attribute,
                                                    const void* buffer, size_t bytes) {
  const char* f = "cublasLtMatmulPreferenceSetAttribute";
  return SetAttribute<PreferenceState>(f, preference, kPreferenceMagic, kPreferenceSlots, attribute, buffer, bytes,
                                       [&](const PreferenceState& s) {
                                         if (s.search_mode == CUBLASLT_SEARCH_BEST_FIT) return CUBLAS_STATUS_SUCCESS;
                                         return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED,
                                                       "search modes other than BEST_FIT: not emulated");
                                       });
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t preference, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* returned) {
  const char* f = "cublasLtMatmulAlgoGetHeuristic";
  // "CUBLAS_STATUS_INVALID_VALUE if requestedAlgoCount is less or equal to zero".
  if (requested <= 0 || results == nullptr || returned == nullptr) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "requestedAlgoCount ≤ 0 or NULL results");
  }
  *returned = 0;
  if (preference == nullptr) return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "NULL preference");
  const PreferenceState pref = Load<PreferenceState>(preference);
  if (pref.magic != kPreferenceMagic) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "the preference was not initialized by cublasLtMatmulPreferenceInit");
  }
  Problem p;
  // "CUBLAS_STATUS_NOT_SUPPORTED if no heuristic function available for current configuration":
  // a problem no kernel takes finds no algorithm.
  if (const cublasStatus_t status = CheckProblem(f, handle, desc, a, b, c, d, p); status != CUBLAS_STATUS_SUCCESS) {
    return status;
  }
  AlgoState algo{kAlgoMagic, std::min(pref.max_workspace, kAlgoWorkspaceBytes) / 256 * 256, {}, p.desc.compute,
                 p.desc.scale, static_cast<int32_t>(p.a.type), static_cast<int32_t>(p.d.type)};
  std::copy_n(pref.min_alignment, 4, algo.min_alignment);
  results[0] = cublasLtMatmulHeuristicResult_t{};
  Store(algo, &results[0].algo);
  results[0].workspaceSize = algo.workspace;
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha, const void* a,
                              cublasLtMatrixLayout_t a_layout, const void* b, cublasLtMatrixLayout_t b_layout,
                              const void* beta, const void* c, cublasLtMatrixLayout_t c_layout, void* d,
                              cublasLtMatrixLayout_t d_layout, const cublasLtMatmulAlgo_t* algo, void* workspace,
                              size_t workspace_bytes, cudaStream_t) {
  const char* f = "cublasLtMatmul";
  Problem p;
  if (const cublasStatus_t status = CheckProblem(f, handle, desc, a_layout, b_layout, c_layout, d_layout, p);
      status != CUBLAS_STATUS_SUCCESS) {
    return status;
  }
  // "algo ... When NULL, an implicit heuristics query with default search preferences will be
  // performed": no workspace, 256-byte alignment assumed.
  AlgoState chosen{kAlgoMagic, 0, {kDefaultMinAlignment, kDefaultMinAlignment, kDefaultMinAlignment, kDefaultMinAlignment},
                   p.desc.compute, p.desc.scale, static_cast<int32_t>(p.a.type), static_cast<int32_t>(p.d.type)};
  if (algo != nullptr) {
    chosen = Load<AlgoState>(algo);
    // Stricter than the library: an algorithm must come from the heuristic,
    // for the same types (algorithm ids are per type combination, cublasLtMatmulAlgoInit()).
    if (chosen.magic != kAlgoMagic || chosen.compute != p.desc.compute || chosen.scale != p.desc.scale ||
        chosen.ab_type != static_cast<int32_t>(p.a.type) || chosen.cd_type != static_cast<int32_t>(p.d.type)) {
      return Refuse(f, CUBLAS_STATUS_INVALID_VALUE,
                    "algo was not returned by cublasLtMatmulAlgoGetHeuristic for these types");
    }
  }
  // "CUBLAS_STATUS_INVALID_VALUE ... For example, when workspaceSizeInBytes is less than
  // workspace required by the configured algo." "The workspace pointer must be aligned to at
  // least a multiple of 256 bytes."
  if (workspace_bytes < chosen.workspace) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE,
                  "workspace of " + std::to_string(workspace_bytes) + " bytes, the algorithm needs " +
                      std::to_string(chosen.workspace));
  }
  if (workspace_bytes > 0 &&
      (reinterpret_cast<uintptr_t>(workspace) % 256 != 0 || !qshard_emu::IsDeviceRange(workspace, workspace_bytes))) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "the workspace is not 256-byte aligned device memory of its size");
  }
  // In place "C == D and Cdesc == Ddesc" (the same layout, not only the same pointer).
  if (c == d && !SameLayout(p.c, p.d)) {
    return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "in place (C == D) with a C layout other than D's");
  }
  if (c == d && p.c.ld == 0) return Refuse(f, CUBLAS_STATUS_INVALID_VALUE, "a broadcast C (ld 0) in place");
  const void* pointers[4] = {a, b, c, d};
  for (int i = 0; i < 4; ++i) {
    const auto address = reinterpret_cast<uintptr_t>(pointers[i]);
    // IMMA, regular ordering: "All matrix pointers must be 4-byte aligned."
    if (address % 4 != 0) {
      return Refuse(f, CUBLAS_STATUS_NOT_SUPPORTED, std::string("int8 IMMA kernels need 4-byte aligned pointers; ") +
                                                        kOperandNames[i] + " is not");
    }
    // The heuristic chose among algorithms that may need the alignment the preference promised:
    // "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: Minimum buffer alignment for matrix A ...
    // Selecting a smaller value will exclude algorithms that can not work with matrix A that is
    // not as strictly aligned as they need" (default 256). A pointer less aligned than promised
    // may meet an algorithm that faults on it.
    if (chosen.min_alignment[i] > 0 && address % chosen.min_alignment[i] != 0) {
      return Refuse(f, CUBLAS_STATUS_INVALID_VALUE,
                    std::string("matrix ") + kOperandNames[i] + " is not " + std::to_string(chosen.min_alignment[i]) +
                        "-byte aligned, as the heuristic's preference (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_" +
                        kOperandNames[i] + "_BYTES, default 256) promised");
    }
  }
  int32_t alpha_value = 0, beta_value = 0;
  if (!ReadScalar(f, "alpha", p.desc.pointer_mode, alpha, alpha_value) ||
      !ReadScalar(f, "beta", p.desc.pointer_mode, beta, beta_value)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  // "A, B, and C: Device ... D: Device": every element inside one device allocation.
  if (!CheckOperand(f, "A", p.a, a, 1) || !CheckOperand(f, "B", p.b, b, 1) ||
      (beta_value != 0 && !CheckOperand(f, "C", p.c, c, 4)) || !CheckOperand(f, "D", p.d, d, 4)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (chosen.workspace > 0) std::memset(workspace, 0xA5, chosen.workspace);
  for (int32_t i = 0; i < p.d.batch_count; ++i) {
    Multiply(p, alpha_value, static_cast<const int8_t*>(a) + i * p.a.batch_stride,
             static_cast<const int8_t*>(b) + i * p.b.batch_stride, beta_value,
             static_cast<const int32_t*>(c) + i * p.c.batch_stride, static_cast<int32_t*>(d) + i * p.d.batch_stride);
  }
  return CUBLAS_STATUS_SUCCESS;
}
