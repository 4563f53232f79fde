// State shared by the host emulation's runtime, launcher and library files (not for kernels).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/cuda/emulation/emulated_cuda.h"

namespace qshard_emu {

// The sticky error the next cudaGetLastError returns (a failed launch).
void SetLastError(cudaError_t error);

// Reports a library call whose arguments a device library would reject, naming what was wrong;
// the caller returns the library's INVALID_VALUE status.
void ReportInvalidCall(const char* function, const char* why);

// Whether a column-major rows × cols matrix with leading dimension ld, elements of `element`
// bytes, lies in device memory; reports the call when it does not.
bool CheckDeviceMatrix(const char* function, const char* name, const void* pointer, int64_t rows, int64_t cols,
                       int64_t ld, size_t element);

// The live device allocations as (start, bytes), in address order.
std::vector<std::pair<uintptr_t, size_t>> DeviceAllocations();
// The live device allocation holding `pointer`, as (start, bytes); (0, 0) when none does.
std::pair<uintptr_t, size_t> DeviceAllocationOf(const void* pointer);

}  // namespace qshard_emu
