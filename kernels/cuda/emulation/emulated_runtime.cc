// The runtime API of the host emulation of CUDA: one device, whose memory is host memory that
// is tracked (every copy and library call is checked against the live allocations), poisoned
// when allocated (a NaN pattern, as a device's memory is not zeroed) and bounded by
// QSHARD_EMULATED_DEVICE_GB (default 80). Streams and events are synchronous.
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "kernels/cuda/emulation/emulated_schedule.h"
#include "kernels/cuda/emulation/emulated_state.h"

struct CUstream_st {};
struct CUevent_st {
  std::chrono::steady_clock::time_point when;
};

namespace qshard_emu {
namespace {

struct DeviceMemory {
  std::mutex mutex;
  std::map<uintptr_t, size_t> allocations;  // start → bytes
  size_t allocated = 0;
  size_t capacity = 0;
};

DeviceMemory& Memory() {
  static DeviceMemory* memory = [] {
    auto* m = new DeviceMemory;
    const char* gb = std::getenv("QSHARD_EMULATED_DEVICE_GB");
    m->capacity = static_cast<size_t>((gb != nullptr ? std::atof(gb) : 80.0) * 1e9);
    return m;
  }();
  return *memory;
}

thread_local cudaError_t last_error = cudaSuccess;

// The allocation that starts at or before `start` and is closest to it, if any; m.mutex held.
std::map<uintptr_t, size_t>::const_iterator AllocationAtOrBefore(const DeviceMemory& m, uintptr_t start) {
  auto it = m.allocations.upper_bound(start);
  return it == m.allocations.begin() ? m.allocations.end() : std::prev(it);
}

bool IsDevice(const void* pointer, size_t bytes) {
  DeviceMemory& m = Memory();
  std::lock_guard lock(m.mutex);
  const auto start = reinterpret_cast<uintptr_t>(pointer);
  const auto it = AllocationAtOrBefore(m, start);
  return it != m.allocations.end() && start + bytes <= it->first + it->second;
}

// A copy's two sides must be where its kind says; cudaMemcpyDefault accepts either.
cudaError_t CheckCopy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  const bool dst_device = IsDevice(dst, bytes), src_device = IsDevice(src, bytes);
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToDevice: ok = dst_device && !src_device; break;
    case cudaMemcpyDeviceToHost: ok = !dst_device && src_device; break;
    case cudaMemcpyDeviceToDevice: ok = dst_device && src_device; break;
    case cudaMemcpyHostToHost: ok = !dst_device && !src_device; break;
    case cudaMemcpyDefault: break;
  }
  if (!ok) {
    std::fprintf(stderr, "cuda emulation: cudaMemcpy of %zu bytes, kind %d: destination %s device memory, source %s\n",
                 bytes, static_cast<int>(kind), dst_device ? "in" : "not in", src_device ? "in" : "not in");
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

}  // namespace

void SetLastError(cudaError_t error) { last_error = error; }

bool IsDeviceRange(const void* pointer, size_t bytes) { return IsDevice(pointer, bytes); }

std::vector<std::pair<uintptr_t, size_t>> DeviceAllocations() {
  DeviceMemory& m = Memory();
  std::lock_guard lock(m.mutex);
  return {m.allocations.begin(), m.allocations.end()};
}

std::pair<uintptr_t, size_t> DeviceAllocationOf(const void* pointer) {
  DeviceMemory& m = Memory();
  std::lock_guard lock(m.mutex);
  const auto start = reinterpret_cast<uintptr_t>(pointer);
  const auto it = AllocationAtOrBefore(m, start);
  if (it == m.allocations.end() || start >= it->first + it->second) return {0, 0};
  return *it;
}

void ReportInvalidCall(const char* function, const char* why) {
  std::fprintf(stderr, "cuda emulation: %s: %s\n", function, why);
}

bool CheckDeviceMatrix(const char* function, const char* name, const void* pointer, int64_t rows, int64_t cols,
                       int64_t ld, size_t element) {
  if (rows == 0 || cols == 0) return true;
  const std::string what = std::string("matrix ") + name;
  if (ld < std::max<int64_t>(1, rows)) {
    ReportInvalidCall(function, (what + ": leading dimension " + std::to_string(ld) + " < rows " +
                                 std::to_string(rows)).c_str());
    return false;
  }
  const size_t bytes = static_cast<size_t>((cols - 1) * ld + rows) * element;
  if (!IsDevice(pointer, bytes)) {
    ReportInvalidCall(function, (what + " (" + std::to_string(rows) + " × " + std::to_string(cols) + ", ld " +
                                 std::to_string(ld) + ") is not inside one device allocation").c_str());
    return false;
  }
  return true;
}

}  // namespace qshard_emu

using qshard_emu::Memory;

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof(p->name), "qshard host emulation of CUDA");
  p->totalGlobalMem = Memory().capacity;
  p->sharedMemPerBlock = 48 << 10;
  p->sharedMemPerBlockOptin = 227 << 10;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  p->l2CacheSize = 50 << 20;
  p->maxThreadsPerBlock = 1024;
  p->warpSize = 32;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  cudaDeviceProp p;
  if (const cudaError_t error = cudaGetDeviceProperties(&p, device); error != cudaSuccess) return error;
  switch (attribute) {
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(p.sharedMemPerBlockOptin); return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
cudaError_t cudaDriverGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  const cudaError_t error = qshard_emu::last_error;
  qshard_emu::last_error = cudaSuccess;
  return error;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    default: return cudaGetErrorName(error);
  }
}

cudaError_t cudaMalloc(void** pointer, size_t bytes) {
  auto& m = Memory();
  std::lock_guard lock(m.mutex);
  *pointer = nullptr;
  if (m.allocated + bytes > m.capacity) return cudaErrorMemoryAllocation;
  // cudaMalloc's alignment, and exactly `bytes`, so that AddressSanitizer (an emulated build with
  // -fsanitize=address) sees a kernel reading past the size asked for; whole pages when launches
  // run in both orders, which protects them page by page (emulated_schedule.h).
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const bool whole_pages = qshard_emu::TheSchedule() == qshard_emu::Schedule::kCompare;
  const size_t reserved = whole_pages ? (std::max<size_t>(bytes, 1) + page - 1) / page * page : std::max<size_t>(bytes, 1);
  void* memory = nullptr;
  if (posix_memalign(&memory, whole_pages ? page : 256, reserved) != 0) return cudaErrorMemoryAllocation;
#if defined(__SANITIZE_ADDRESS__)
  ASAN_POISON_MEMORY_REGION(static_cast<unsigned char*>(memory) + bytes, reserved - bytes);
#endif
  std::memset(memory, 0xff, bytes);
  m.allocations[reinterpret_cast<uintptr_t>(memory)] = bytes;
  m.allocated += bytes;
  *pointer = memory;
  return cudaSuccess;
}
cudaError_t cudaFree(void* pointer) {
  if (pointer == nullptr) return cudaSuccess;
  auto& m = Memory();
  std::lock_guard lock(m.mutex);
  const auto it = m.allocations.find(reinterpret_cast<uintptr_t>(pointer));
  if (it == m.allocations.end()) {
    std::fprintf(stderr, "cuda emulation: cudaFree of %p, which cudaMalloc did not return\n", pointer);
    return cudaErrorInvalidValue;
  }
  m.allocated -= it->second;
  m.allocations.erase(it);
  std::free(pointer);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  auto& m = Memory();
  std::lock_guard lock(m.mutex);
  *total = m.capacity;
  *free = m.capacity - m.allocated;
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (const cudaError_t error = qshard_emu::CheckCopy(dst, src, bytes, kind); error != cudaSuccess) return error;
  if (bytes > 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t) {
  if (width > dpitch || width > spitch) return cudaErrorInvalidValue;
  for (size_t row = 0; row < height; ++row) {
    const cudaError_t error = cudaMemcpy(static_cast<char*>(dst) + row * dpitch,
                                         static_cast<const char*>(src) + row * spitch, width, kind);
    if (error != cudaSuccess) return error;
  }
  return cudaSuccess;
}
cudaError_t cudaMemset(void* pointer, int value, size_t bytes) {
  if (bytes > 0 && !qshard_emu::IsDevice(pointer, bytes)) {
    std::fprintf(stderr, "cuda emulation: cudaMemset of %zu bytes outside device memory\n", bytes);
    return cudaErrorInvalidValue;
  }
  std::memset(pointer, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* pointer, int value, size_t bytes, cudaStream_t) {
  return cudaMemset(pointer, value, bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  *stream = new CUstream_st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  event->when = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* milliseconds, cudaEvent_t start, cudaEvent_t end) {
  *milliseconds = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}
