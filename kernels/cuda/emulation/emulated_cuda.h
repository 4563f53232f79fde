// The host emulation of CUDA (docs/cuda.md, "Running the CUDA code on the host"): the part of the
// CUDA runtime API and of the device language that qshard's kernels use, so that the same .cu
// sources, compiled by the host compiler (launches rewritten by rewrite_cu.py), run on a CPU.
// Each block runs its threads as fibers on the launching thread, switching at __syncthreads and
// at warp operations; device memory is host memory that the runtime tracks, poisons and checks.
// It is a test harness: it proves indexing, synchronization structure and the library calls'
// arguments, not speed, and not what only real concurrency shows (races, memory ordering).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>
#include <utility>

#include "kernels/cuda/emulation/emulated_half.h"
#include "kernels/cuda/emulation/emulated_vector_types.h"

// ---- The device language -------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__  // a code-size hint; as an attribute it would clash with headers that spell __attribute__((__noinline__))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Blocks run one at a time and all launches are serialized, so a function-local static is
// exactly one block's shared memory. They all live in one section, which the launcher fills with
// a NaN pattern before each block: a thread reading shared memory no thread of its block wrote
// reads garbage here as on a device, not the zeros of a static or the last block's values.
#define __shared__ static __attribute__((section("qshard_emu_shared")))

namespace qshard_emu {

struct ThreadIds {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};

const ThreadIds& CurrentIds();
void BlockBarrier();
void WarpBarrier();
void* DynamicShared();
// A warp exchange: every lane writes its slot in the bank NextExchangeBank gives (the banks
// alternate, the same for every lane since warp operations are warp-uniform), passes one warp
// barrier and reads. The next exchange writes the other bank, and the one after can overwrite
// this bank only past the next barrier, when every lane has read it: one barrier per exchange.
inline constexpr size_t kWarpSlotBytes = 32;
int NextExchangeBank();
void* WarpSlot(int bank, int lane);
int LaneId();

template <typename T>
T ShuffleFrom(T value, int source_lane, bool in_range) {
  static_assert(sizeof(T) <= kWarpSlotBytes && std::is_trivially_copyable_v<T>);
  const int bank = NextExchangeBank();
  std::memcpy(WarpSlot(bank, LaneId()), &value, sizeof(T));
  WarpBarrier();
  T result = value;
  if (in_range) std::memcpy(&result, WarpSlot(bank, source_lane), sizeof(T));
  return result;
}

}  // namespace qshard_emu

#define threadIdx (::qshard_emu::CurrentIds().thread_idx)
#define blockIdx (::qshard_emu::CurrentIds().block_idx)
#define blockDim (::qshard_emu::CurrentIds().block_dim)
#define gridDim (::qshard_emu::CurrentIds().grid_dim)
inline constexpr int warpSize = 32;

inline void __syncthreads() { qshard_emu::BlockBarrier(); }
inline void __threadfence() {}
// cp.async's shared-window address; the emulated copy takes the generic pointer itself.
inline size_t __cvta_generic_to_shared(const void* pointer) { return reinterpret_cast<size_t>(pointer); }
inline void __nanosleep(unsigned) {}

template <typename T>
T __shfl_down_sync(unsigned, T value, unsigned delta, int width = 32) {
  const int lane = qshard_emu::LaneId(), in_segment = lane % width;
  return qshard_emu::ShuffleFrom(value, lane + static_cast<int>(delta), in_segment + static_cast<int>(delta) < width);
}

template <typename T>
T __ldg(const T* address) {
  return *address;
}

// Fibers of one launch run on one host thread: a read-modify-write cannot be interleaved.
namespace qshard_emu {
template <typename T, typename Update>
T AtomicUpdate(T* address, Update update) {
  const T old = *address;
  *address = update(old);
  return old;
}
}  // namespace qshard_emu
template <typename T>
T atomicAdd(T* address, T value) {
  return qshard_emu::AtomicUpdate(address, [value](T old) { return old + value; });
}
template <typename T>
T atomicMax(T* address, T value) {
  return qshard_emu::AtomicUpdate(address, [value](T old) { return std::max(old, value); });
}
template <typename T>
T atomicMin(T* address, T value) {
  return qshard_emu::AtomicUpdate(address, [value](T old) { return std::min(old, value); });
}
template <typename T>
T atomicExch(T* address, T value) {
  return qshard_emu::AtomicUpdate(address, [value](T) { return value; });
}

inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float cospif(float x) { return static_cast<float>(std::cos(M_PI * static_cast<double>(x))); }
// PRMT in its default mode: byte i of the result is byte selector[4i..4i+3] of {y, x}.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned selector) {
  const uint64_t bytes = (static_cast<uint64_t>(y) << 32) | x;
  unsigned result = 0;
  for (int i = 0; i < 4; ++i) result |= static_cast<unsigned>((bytes >> (8 * ((selector >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return result;
}

// CUDA's min and max overloads for mixed integer widths, as device code calls them unqualified.
template <typename A, typename B>
  requires std::is_arithmetic_v<A> && std::is_arithmetic_v<B>
constexpr std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <typename A, typename B>
  requires std::is_arithmetic_v<A> && std::is_arithmetic_v<B>
constexpr std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}

// ---- The runtime API ------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
inline constexpr int cudaSharedmemCarveoutMaxShared = 100;

struct CUstream_st;
using cudaStream_t = CUstream_st*;
struct CUevent_st;
using cudaEvent_t = CUevent_st*;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int major;
  int minor;
  int multiProcessorCount;
  int l2CacheSize;
  int maxThreadsPerBlock;
  int warpSize;
};

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* properties, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t error);
const char* cudaGetErrorString(cudaError_t error);

cudaError_t cudaMalloc(void** pointer, size_t bytes);
template <typename T>
cudaError_t cudaMalloc(T** pointer, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(pointer), bytes);
}
cudaError_t cudaFree(void* pointer);
cudaError_t cudaMemGetInfo(size_t* free, size_t* total);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* pointer, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* pointer, int value, size_t bytes, cudaStream_t stream = nullptr);

cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* milliseconds, cudaEvent_t start, cudaEvent_t end);

namespace qshard_emu {

cudaError_t SetFunctionMaxDynamicShared(const void* function, int bytes);
int OccupancyBlocks(const void* function, int block_threads, size_t dynamic_shared);

struct LaunchConfig {
  dim3 grid, block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
  LaunchConfig(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr) : grid(g), block(b), shared_bytes(s), stream(st) {}
};

// `kernel<<<config>>>(args)` as rewrite_cu.py writes it: runs body once per thread of every
// block (blocks in order, a block's threads as fibers). `kernel` is the kernel's address, for
// the shared-memory limit cudaFuncSetAttribute raised, or nullptr; `name` is its expression in
// the source, for messages. Configuration errors become the sticky error cudaGetLastError
// reports, as on a device.
void Launch(const LaunchConfig& config, const void* kernel, const char* name, const std::function<void()>& body);

// Whether [pointer, pointer + bytes) lies inside one live device allocation; the cuBLAS and
// cuSOLVER emulations check every matrix they touch with it.
bool IsDeviceRange(const void* pointer, size_t bytes);

}  // namespace qshard_emu

template <typename F>
cudaError_t cudaFuncSetAttribute(F* function, cudaFuncAttribute attribute, int value) {
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
  return qshard_emu::SetFunctionMaxDynamicShared(reinterpret_cast<const void*>(function), value);
}
template <typename F>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, F* function, int block_threads,
                                                          size_t dynamic_shared) {
  *blocks = qshard_emu::OccupancyBlocks(reinterpret_cast<const void*>(function), block_threads, dynamic_shared);
  return cudaSuccess;
}
