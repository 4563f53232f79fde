// The PTX instructions qshard's kernels issue, one wrapper each, so that inline assembly lives
// in one file and the host emulation of CUDA (QSHARD_CUDA_EMULATED) can give each its documented
// behaviour instead (kernels/cuda/emulation/emulated_ptx.h).
#pragma once

#include <cstdint>

#if defined(QSHARD_CUDA_EMULATED)
#include "kernels/cuda/emulation/emulated_ptx.h"
#else

namespace qshard::gpu::ptx {

// d += a · b for one 16×16 (A, row-major) by 16×8 (B, column-major) fp16 product, fp32
// accumulation; the fragments are the PTX ISA's for mma.m16n8k16 with .f16 inputs.
__device__ __forceinline__ void MmaM16N8K16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes global → shared without passing through registers; zero-fills when !valid. The copy
// is complete only after the CommitAsync group it belongs to is waited for.
__device__ __forceinline__ void CopyAsync16(void* shared, const void* global, bool valid) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CommitAsync() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most kPending of the committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void WaitAsync() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// The device's global nanosecond timer.
__device__ __forceinline__ uint64_t GlobalTimerNanoseconds() {
  uint64_t now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  return now;
}

}  // namespace qshard::gpu::ptx

#endif
