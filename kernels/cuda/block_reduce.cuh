// Block-wide sum and maximum in a fixed order (warp shuffles, then the warps' results in warp
// order), so that a row reduced by one block gives the same bits on every run: the norms' and
// the softmax's statistics depend on nothing but their inputs. Internal to kernels/cuda.
#pragma once

namespace qshard::gpu {

inline constexpr int kReduceMaxWarps = 32;

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// Every thread of the block passes its partial value and gets the block's result. blockDim.x
// must be a multiple of 32 (at most 1024); `shared` holds kReduceMaxWarps values. Every thread
// of the block must call it (it synchronizes).
template <typename T, typename Op>
__device__ T BlockReduce(T value, Op op, T* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_down_sync(0xffffffffu, value, offset));
  __syncthreads();  // `shared` may still be read from a previous call
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  T result = shared[0];
  for (int w = 1; w < warps; ++w) result = op(result, shared[w]);
  return result;
}

}  // namespace qshard::gpu
