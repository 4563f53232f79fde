// Fused dequantize-GEMM for GPTQ-packed weights and fp16 activations (w4a16, w8a16): the
// weights are read once, in their packed form, and unpacked in registers, never written out
// dequantized. Built for decoding: one token (GEMV) up to a few dozen tokens.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/gptq_layout.h"

namespace qshard::gpu {

// Most tokens one launch handles; GptqMatmul runs longer inputs in slices of this many (each
// slice reads the weights again, so prefill-sized inputs belong to a dequantize + GEMM path).
inline constexpr int kGptqMaxTokensPerLaunch = 16;

// How one launch divides the work: blocks of 128 output columns along x, and `k_splits` blocks
// along the input dimension whose partial sums meet in the workspace when k_splits > 1.
struct GptqLaunchPlan {
  bool tensor_cores = false;  // the mma.sync kernel; otherwise the CUDA-core kernel
  int token_tile = 0;         // tokens the kernel is compiled for (1, 4, 16; 8, 16 on tensor cores)
  int column_blocks = 0;
  int k_splits = 0;
  int rows_per_split = 0;     // qweight rows (32 / bits inputs each) per split
};

// Which kernel GptqMatmul runs. kAuto takes tensor cores where they apply and there are at
// least 2 tokens; the others force one kernel (benchmarks and checks compare them), and
// kTensorCores fails where it does not apply.
enum class GptqKernelChoice { kAuto, kCudaCores, kTensorCores };

// Whether the tensor-core kernel can serve `w` with activations `x`: inputs in multiples of 32
// and x 16-byte aligned.
bool GptqTensorCoresApply(const GptqMatrixView& w, const __half* x);

// The plan GptqMatmul uses for `tokens` (1..16) tokens of activations `x` on the current
// device: the kernel `choice` names, and the inputs split across enough blocks to fill the
// device in few, full waves, within what shared memory allows.
CudaStatus PlanGptqMatmul(const GptqMatrixView& w, const __half* x, int tokens,
                          GptqLaunchPlan& plan, GptqKernelChoice choice = GptqKernelChoice::kAuto);

// Scratch memory for split launches: fp32 partial sums [16, out] and one arrival counter per
// column block. It is zeroed when allocated and every launch leaves it zeroed again, so it can
// be reused call after call. Use one workspace per stream: two launches in flight at once on
// different streams must not share it.
class GptqWorkspace {
 public:
  GptqWorkspace() = default;
  ~GptqWorkspace();
  GptqWorkspace(const GptqWorkspace&) = delete;
  GptqWorkspace& operator=(const GptqWorkspace&) = delete;

  // Makes room for layers of up to `out_features` outputs; the zeroing is ordered on `stream`.
  CudaStatus Reserve(int out_features, cudaStream_t stream);
  int capacity() const { return capacity_; }  // output columns
  float* partial_sums() const { return partial_sums_; }
  unsigned* arrivals() const { return arrivals_; }

 private:
  void Release();

  int capacity_ = 0;
  float* partial_sums_ = nullptr;  // one allocation: the sums, then the counters
  unsigned* arrivals_ = nullptr;
};

// y[tokens, out] = x[tokens, in] · dequant(w)ᵀ with fp16 x and y (row-major) and fp32 sums.
// Numerics: the integer part q − zero is exact in either kernel and the scale is applied in
// fp32, once per group (tensor cores, and the CUDA-core kernel below 5 tokens) or per weight;
// the roundings left are the fp32 additions and the final conversion to fp16. One exception:
// on tensor cores, a 32-input step whose inputs belong to different groups (act-order g_idx)
// multiplies weights rounded to fp16, as an fp16 copy of the layer would. With k_splits > 1
// the partial sums are added atomically, so the last bits can differ from run to run. Grows
// `workspace` if it is too small. Everything is queued on `stream`; errors come back as a
// CudaStatus, none are thrown.
CudaStatus GptqMatmul(const GptqMatrixView& w, const __half* x, int tokens, __half* y,
                      GptqWorkspace& workspace, cudaStream_t stream,
                      GptqKernelChoice choice = GptqKernelChoice::kAuto);

}  // namespace qshard::gpu
